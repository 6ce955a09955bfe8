"""Run Temporal workers for chosen task queues until stopped, as the pipelines' manifests declare them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from conveyor.errors import BadInput
from conveyor.logging import get_logger
from conveyor.records import RunBook
from conveyor.resources import WorkerResources, open_resources
from conveyor.settings import Settings
from conveyor.temporal import connect
from workers.interceptors import ConveyorInterceptor
from workers.pipelines import PIPELINES, all_queues, pipeline_of_queue

log = get_logger(__name__)

#: Time a stopping worker gives running activities to finish before cancelling them.
GRACEFUL_SHUTDOWN = timedelta(seconds=10)
#: Longest gap between heartbeats sent to the server. Temporal's default (0.8 x the heartbeat timeout, 16 s for
#: the video steps) would hold a cancellation back that long, since it reaches an activity only in the reply to
#: a heartbeat; the activities heartbeat every second, so FFmpeg and friends stop within about a second.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


def resolve_queues(requested: Sequence[str]) -> list[str]:
    """Validate queue names (a legacy name means its queue); none means every queue of every pipeline."""
    known = all_queues()
    legacy = {old: q.name for q in known.values() for old in q.legacy}
    unknown = [q for q in requested if q not in known and q not in legacy]
    if unknown:
        raise BadInput(f"unknown task queue(s): {', '.join(unknown)}; known: {', '.join(known)}", code="UNKNOWN_QUEUE")
    chosen = [legacy.get(q, q) for q in requested] or list(known)
    return list(dict.fromkeys(chosen))


def queues_of_groups(groups: Sequence[str]) -> list[str]:
    """Every queue of each named pipeline (``conveyor worker --group video``)."""
    names = [p.name for p in PIPELINES]
    unknown = [g for g in groups if g not in names]
    if unknown:
        known = ", ".join(names)
        raise BadInput(f"unknown worker group(s): {', '.join(unknown)}; known: {known}", code="UNKNOWN_GROUP")
    return [q.name for p in PIPELINES if p.name in groups for q in p.queues]


def queue_activities(resources: WorkerResources, name: str) -> list[Callable[..., Any]]:
    """What a worker on queue ``name`` registers: the pipeline's activities, and run bookkeeping with workflows."""
    pipeline = pipeline_of_queue(name)
    acts = pipeline.load_activities()(resources, name)
    if pipeline.queue(name).workflows:  # workflows record their runs through the kernel's bookkeeping activity
        pipeline.load_models()
        acts += RunBook(resources.sessions).activities(pipeline.legacy_bookkeeping)
    return acts


def executor_size(queues: Sequence[str]) -> int:
    """Threads for the workers' shared executor of sync activities: at least any one queue's concurrency."""
    known = all_queues()
    return max([32, *(known[name].concurrency for name in queues)])


def build_workers(
    client: Client, resources: WorkerResources, queues: Sequence[str], executor: concurrent.futures.Executor
) -> list[Worker]:
    """One worker per queue with the queue's activity concurrency (and one per legacy name, if served)."""
    workers = []
    known = all_queues()
    for name in queues:
        queue = known[name]
        workflows = queue.load_workflows()
        activities = queue_activities(resources, name)
        names = [name, *(queue.legacy if resources.settings.worker_legacy_queues else ())]
        for task_queue in names:
            workers.append(
                Worker(
                    client,
                    task_queue=task_queue,
                    workflows=workflows,
                    activities=activities,
                    activity_executor=executor,
                    max_concurrent_activities=queue.concurrency,
                    interceptors=[ConveyorInterceptor()],
                    graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                    max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                    default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                )
            )
    return workers


async def run_workers(settings: Settings, queues: Sequence[str], *, stop: asyncio.Event | None = None) -> None:
    """Serve ``queues`` until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully."""
    chosen = resolve_queues(queues)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings, attempts=60)
    async with open_resources(settings) as resources:
        with concurrent.futures.ThreadPoolExecutor(max_workers=executor_size(chosen)) as executor:
            workers = build_workers(client, resources, chosen, executor)
            log.info("workers started", queues=chosen, temporal=settings.temporal_address)
            runs = [asyncio.create_task(w.run()) for w in workers]
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([waiter, *runs], return_when=asyncio.FIRST_COMPLETED)
            await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
            for task in runs:
                if task in done and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            log.info("workers stopped", queues=chosen)
