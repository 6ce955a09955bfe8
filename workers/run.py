"""Run Temporal workers for chosen task queues until stopped."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.crawl.browser import BrowserPool
from conveyor.db import create_engine, session_factory
from conveyor.errors import BadInput
from conveyor.logging import get_logger
from conveyor.settings import Settings
from conveyor.storage import blob_store_from_url
from conveyor.temporal import connect
from workers.interceptors import ConveyorInterceptor
from workers.queues import QUEUES
from workers.registry import REGISTRY, Resources

log = get_logger(__name__)

#: Time a stopping worker gives running activities to finish before cancelling them.
GRACEFUL_SHUTDOWN = timedelta(seconds=10)
#: Longest gap between heartbeats sent to the server. Temporal's default (0.8 x the heartbeat timeout, 16 s for
#: the video steps) would hold a cancellation back that long, since it reaches an activity only in the reply to
#: a heartbeat; the activities heartbeat every 1-2 s, so FFmpeg and friends stop within about a second.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


def resolve_queues(requested: Sequence[str]) -> list[str]:
    """Validate queue names; none means every queue that has something registered."""
    unknown = [q for q in requested if q not in QUEUES]
    if unknown:
        raise BadInput(f"unknown task queue(s): {', '.join(unknown)}; known: {', '.join(QUEUES)}", code="UNKNOWN_QUEUE")
    chosen = list(requested) or list(REGISTRY)
    return [q for q in chosen if q in REGISTRY]


def queues_of_groups(groups: Sequence[str]) -> list[str]:
    """The served queues of each named group (the seeds' worker groups, e.g. ``video``)."""
    known = sorted({q.group for q in QUEUES.values()})
    unknown = [g for g in groups if g not in known]
    if unknown:
        raise BadInput(
            f"unknown worker group(s): {', '.join(unknown)}; known: {', '.join(known)}", code="UNKNOWN_GROUP"
        )
    return [name for name, q in QUEUES.items() if q.group in groups and name in REGISTRY]


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Open the DB engine and blob store a worker process shares between its activities."""
    engine = create_engine(settings.database_url_resolved)
    browser = BrowserPool(settings.chromium_path, settings.chromium_args, settings.crawl_user_agent)
    try:
        yield Resources(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            blobs=blob_store_from_url(settings.blob_url_resolved, s3_endpoint_url=settings.s3_endpoint_url),
            browser=browser,
        )
    finally:
        await browser.close()
        await engine.dispose()


def build_workers(
    client: Client, resources: Resources, queues: Sequence[str], executor: concurrent.futures.Executor
) -> list[Worker]:
    """One worker per queue, with the queue's activity concurrency."""
    workers = []
    for name in queues:
        reg = REGISTRY[name]
        workers.append(
            Worker(
                client,
                task_queue=name,
                workflows=list(reg.workflows),
                activities=reg.activities(resources),
                activity_executor=executor,
                max_concurrent_activities=QUEUES[name].max_concurrent_activities,
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
    if not chosen:
        raise BadInput("none of the chosen queues has anything to run yet", code="NOTHING_TO_RUN")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings, attempts=60)
    async with open_resources(settings) as resources:
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as executor:
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
