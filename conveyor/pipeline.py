"""Pipeline manifests: each pipeline declares, once, what it runs where and what it offers.

A :class:`Pipeline` names its task queues (with the seeds' worker concurrency), the workflows each queue runs,
the factory of its activities, its schedules (the seeds' Beat entries), its HTTP router, its CLI commands and
its demo. Everything that iterates pipelines — workers, the API app, the CLI, the demo, ``/api/health``,
``conveyor worker --group``, the compose check — reads the manifests in ``workers/pipelines.py``.

A manifest lives in the pipeline's light contract, so it refers to the heavier modules (workflows, activities,
router, CLI) by ``"module:attribute"`` strings, imported only by whoever needs them: the API never imports a
worker's activities, a worker never imports the API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.client import ScheduleOverlapPolicy
from temporalio.common import WorkflowIDReusePolicy

if TYPE_CHECKING:
    from conveyor.resources import WorkerResources

ActivityFactory = Callable[["WorkerResources", str], list[Callable[..., Any]]]


def load(ref: str) -> Any:
    """The object a ``"module:attribute"`` string names."""
    module, _, attribute = ref.partition(":")
    if not attribute:
        raise ValueError(f"{ref!r} is not a 'module:attribute' reference")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Queue:
    """A task queue ``<pipeline>.<role>``: how many activities one worker runs at once, and its workflows."""

    name: str
    concurrency: int
    description: str
    workflows: tuple[str, ...] = ()
    """Each workflow class that runs on this queue: its name in ``workflows/<pipeline>.py``, or ``"module:Class"``."""
    legacy: tuple[str, ...] = ()
    """Names this queue had before queues were namespaced; workers also serve them, so runs started then finish."""

    @property
    def role(self) -> str:
        """The part after the pipeline's name (``render`` of ``video.render``)."""
        return self.name.partition(".")[2]

    @property
    def workflow_refs(self) -> list[str]:
        """``"module:Class"`` of each workflow that runs here."""
        module = f"workflows.{self.name.partition('.')[0]}"
        return [ref if ":" in ref else f"{module}:{ref}" for ref in self.workflows]

    def load_workflows(self) -> list[type]:
        """The workflow classes that run here."""
        return [load(ref) for ref in self.workflow_refs]


@dataclass(frozen=True)
class Launch:
    """How one of a pipeline's workflows is started: its type name, task queue, time limit and id reuse."""

    workflow: str
    queue: str
    execution_timeout: timedelta | None = None
    """Temporal's own backstop: the run is ended (and reconciled as ``TIMEOUT``) past it."""
    id_reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE

    @property
    def pipeline(self) -> str:
        """The pipeline the workflow belongs to (its queue's prefix)."""
        return self.queue.partition(".")[0]


@dataclass(frozen=True)
class Schedule:
    """A Temporal Schedule (a seed's Beat entry): which workflow with which input, when, on which queue."""

    id: str
    workflow: str
    arg: BaseModel
    queue: str
    cron: str
    description: str
    overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP
    execution_timeout: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Price:
    """What one unit of a pipeline's work costs: ``credits`` per ``unit`` (a page, a chunk, an output second)."""

    unit: str
    credits: int
    description: str

    def cost(self, units: int) -> int:
        """Credits for ``units`` units."""
        return max(0, units) * self.credits


@dataclass(frozen=True)
class Pipeline:
    """One pipeline, declared once.

    Its modules follow one naming convention, so a manifest names them only where it departs from it: the
    tables ``activities.<name>.models``, the activity factory ``activities.<name>.worker:activities``, the router
    ``api.routes.<name>:router``, the CLI commands ``cli.<name>:register`` and the demo's part ``cli.<name>:demo``.
    """

    name: str
    description: str
    queues: tuple[Queue, ...]
    schedules: tuple[Schedule, ...] = ()
    legacy_bookkeeping: tuple[str, ...] = ()
    """The pipeline's bookkeeping activity names from before the kernel's ``conveyor.record_run``."""
    activities: str = ""
    """``"module:function"`` of an :data:`ActivityFactory`: ``(resources, queue name) -> activities``."""
    router: str = ""
    """``"module:router"`` of the pipeline's FastAPI router."""
    cli: str = ""
    """``"module:function"`` that adds the pipeline's commands to the CLI (``register(app)``)."""
    demo: str = ""
    """``"module:function"`` of the pipeline's part of ``conveyor demo``."""
    models: str = ""
    """The module of the pipeline's tables (importing it registers its run tables with the kernel)."""
    prices: tuple[Price, ...] = ()
    """What its runs cost (``GET /api/pricing``); admission holds a run's most, its end captures what it delivered."""
    max_running: int | None = 5
    """Default per-user cap on its runs under way at once (``CONVEYOR_MAX_RUNNING_PER_USER`` overrides it); ``None``
    for a pipeline whose work is metered, not started as runs (chat's conversations: never capped by number)."""

    def __post_init__(self) -> None:
        conventional = {
            "activities": f"activities.{self.name}.worker:activities",
            "router": f"api.routes.{self.name}:router",
            "cli": f"cli.{self.name}:register",
            "demo": f"cli.{self.name}:demo",
            "models": f"activities.{self.name}.models",
        }
        for attribute, ref in conventional.items():
            if not getattr(self, attribute):
                object.__setattr__(self, attribute, ref)
        for queue in self.queues:
            if queue.name.partition(".")[0] != self.name or not queue.role:
                raise ValueError(f"queue {queue.name!r} of pipeline {self.name!r} must be named '{self.name}.<role>'")
        for schedule in self.schedules:
            if schedule.queue not in self.queue_names:
                raise ValueError(f"schedule {schedule.id!r} runs on {schedule.queue!r}, not a queue of {self.name!r}")

    def price(self, unit: str) -> Price:
        """The pipeline's price of ``unit``."""
        for price in self.prices:
            if price.unit == unit:
                return price
        raise KeyError(unit)

    @property
    def queue_names(self) -> list[str]:
        """The names of the pipeline's queues."""
        return [q.name for q in self.queues]

    def queue(self, name: str) -> Queue:
        """The pipeline's queue called ``name``."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

    def load_models(self) -> None:
        """Import the pipeline's tables, so the kernel's bookkeeping knows its run tables."""
        importlib.import_module(self.models)

    def load_activities(self) -> ActivityFactory:
        """The activity factory (imports the worker side)."""
        factory: ActivityFactory = load(self.activities)
        return factory
