"""The run lifecycle every pipeline shares: one status set, one end-of-run record, one way to end a run.

A *run* is anything a workflow carries out and a user watches: an analysis task, a crawl session, a persona's
ingestion and its jobs, a video and its jobs. Every run row has the same lifecycle columns
(:class:`conveyor.records.RunColumns`) and goes ``created → queued → running → completed | failed | cancelled``
(``created``: recorded, not yet asked to run), with a pipeline-specific ``stage`` word (``rendering``,
``ingesting``, an agent's name…) saying what it is doing.

Workflows change a run only through :func:`record`, which runs the kernel's one bookkeeping activity
(``conveyor.record_run``) as a local activity with a :class:`RunUpdate`. They end a run with :func:`guarded`,
which turns cancellation and failures into one idiom: wind down (record ``cancelled`` or ``failed`` with the
error's kind and code), then re-raise in the error taxonomy. This module is pure and safe inside the workflow
sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError, is_cancelled_exception

from conveyor.errors import FailureInfo, failure_info
from conveyor.steps import retries

T = TypeVar("T")


class RunStatus(StrEnum):
    """Where a run is in its life."""

    CREATED = "created"
    """Recorded, not yet asked to run (an analysis task before ``process``, a persona never ingested)."""
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Statuses a run never leaves.
TERMINAL: frozenset[RunStatus] = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
#: Statuses of a run a workflow is carrying out (the ones reconciled against Temporal).
ACTIVE: frozenset[RunStatus] = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})


class RunError(BaseModel):
    """Why a run failed: the taxonomy's kind, the business code and a readable message."""

    kind: str
    code: str
    message: str

    @classmethod
    def of(cls, info: FailureInfo) -> RunError:
        """The error of a failure read back from Temporal."""
        return cls(kind=info.kind.value, code=info.code, message=info.message)


class RunUpdate(BaseModel):
    """One change to a run's row: the kernel's end-of-run (and progress) record.

    ``table`` names the run's table, ``id`` its primary key. Unset fields are left as they are; ``fields``
    sets pipeline-specific columns of the same row (``truncated``, ``current_agent``…). A row that reached a
    terminal status ignores every later update: a run ends once (a rerun is queued by its service, not here).
    """

    table: str
    id: str
    status: RunStatus | None = None
    stage: str | None = None
    progress: float | None = None
    error: RunError | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        table: str,
        run_id: str,
        *,
        status: RunStatus | None = None,
        stage: str | None = None,
        progress: float | None = None,
        error: RunError | None = None,
        **fields: Any,
    ) -> RunUpdate:
        """An update of run ``run_id`` in ``table``; keyword arguments beyond the lifecycle set its own columns."""
        return cls(table=table, id=run_id, status=status, stage=stage, progress=progress, error=error, fields=fields)


#: The kernel's one bookkeeping activity (a local activity of every workflow).
RECORD_RUN = "conveyor.record_run"
#: Runs started before the kernel recorded runs used their pipeline's own bookkeeping activity; their
#: histories replay (and the runs carry on) with that name, new runs use :data:`RECORD_RUN`.
RECORD_RUN_PATCH = "conveyor-record-run"
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_RETRY = retries(5, most=timedelta(seconds=10))


async def record(update: RunUpdate, *, legacy: str | None = None) -> None:
    """Write ``update`` through the bookkeeping activity (workflow code only).

    ``legacy`` is the pipeline's bookkeeping activity name from before the kernel owned the lifecycle: runs
    whose history has no :data:`RECORD_RUN_PATCH` marker keep calling it (the worker serves it with the
    same implementation), so their histories stay deterministic.
    """
    name = RECORD_RUN if legacy is None or workflow.patched(RECORD_RUN_PATCH) else legacy
    await workflow.execute_local_activity(
        name, update, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
    )


class RunEnd(BaseModel):
    """How a run ended abnormally: cancelled, or failed with its error."""

    status: RunStatus
    error: RunError | None = None

    @property
    def message(self) -> str:
        """A readable reason."""
        return self.error.message if self.error is not None else "cancelled by request"


CANCELLED = RunEnd(status=RunStatus.CANCELLED)


def ending_of(err: BaseException) -> RunEnd:
    """The end a cancellation or failure caught in a workflow means."""
    if is_cancelled_exception(err):
        return CANCELLED
    return RunEnd(status=RunStatus.FAILED, error=RunError.of(failure_info(err)))


async def guarded(body: Awaitable[T], wind_down: Callable[[RunEnd], Awaitable[None]]) -> T:
    """Await a workflow's body; on cancellation or an activity/child failure, wind down, then re-raise.

    The one cancellation idiom: ``wind_down`` records the run ``cancelled`` (the cancellation then propagates,
    so Temporal shows the run cancelled) or ``failed`` with the error's kind and code (re-raised as a
    non-retryable ``ApplicationError`` of that kind and code).
    """
    try:
        return await body
    except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as err:
        end = ending_of(err)
        await wind_down(end)
        if end.error is None:
            raise
        raise failure_info(err).to_application_error() from err
