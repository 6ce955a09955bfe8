"""``GET /api/health``: the database, Temporal, and a poller on every served queue, probed at most once per TTL.

The answer is public (load balancers call it without a key), so it says what is up and never why something is
down: the error text of a failed check (DB URLs, server paths) is logged, and shown only to admins.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.deps import KeyOwnerDep, StateDep
from api.state import AppState
from conveyor.errors import ConveyorError
from conveyor.logging import get_logger
from conveyor.models import WorkerCheck
from workers.pipelines import all_queues

router = APIRouter(prefix="/api", tags=["health"])
log = get_logger(__name__)

#: At most this many task queues are described at once during a probe.
QUEUE_PROBE_CONCURRENCY = 4


class Check(BaseModel):
    """One dependency's state (``detail``: why it failed, shown to admins only)."""

    ok: bool
    latency_ms: float | None = None
    detail: str | None = None


class WorkerCheckOut(Check):
    """The latest result of a scheduled worker check (e.g. chat's 5-minute ``worker_health_check``)."""

    checked_at: datetime


class Health(BaseModel):
    """Overall and per-dependency health, as of ``checked_at``; ``workers``: what the workers' own scheduled checks
    found last (informational: an outside channel API being down does not make Conveyor degraded)."""

    status: str
    checked_at: datetime
    database: Check
    temporal: Check
    queues: dict[str, dict[str, Any]]
    workers: dict[str, WorkerCheckOut] = {}


def served_queues() -> dict[str, bool]:
    """Every pipeline's queues, each with whether workflows run there (and need workflow pollers)."""
    return {name: bool(queue.workflows) for name, queue in all_queues().items()}


@dataclass
class HealthCache:
    """The last probe, reused for ``ttl_s`` seconds; concurrent callers share one probe in flight."""

    ttl_s: float
    probes: int = 0
    _last: Health | None = None
    _at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def get(self, state: AppState) -> Health:
        """The cached answer, probing again once it is older than the TTL."""
        if self._fresh():
            assert self._last is not None
            return self._last
        async with self._lock:
            if not self._fresh():
                self._last = await _probe(state)
                self._at = time.monotonic()
                self.probes += 1
        assert self._last is not None
        return self._last

    def _fresh(self) -> bool:
        return self._last is not None and time.monotonic() - self._at < self.ttl_s


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request, state: StateDep, owner: KeyOwnerDep) -> JSONResponse:
    """200 when the DB answers, Temporal answers, and every served queue has workflow and activity pollers."""
    cache: HealthCache = request.app.state.health
    body = await cache.get(state)
    if owner is None or not owner.user.is_admin:
        body = body.model_copy(
            update={
                "database": body.database.model_copy(update={"detail": None}),
                "temporal": body.temporal.model_copy(update={"detail": None}),
                "workers": {name: c.model_copy(update={"detail": None}) for name, c in body.workers.items()},
            }
        )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503)


async def _probe(state: AppState) -> Health:
    """Check every dependency once."""
    database = await _check_db(state)
    temporal, queues = await _check_temporal(state)
    ok = database.ok and temporal.ok and all(q["ok"] for q in queues.values())
    return Health(
        status="ok" if ok else "degraded",
        checked_at=datetime.now(UTC),
        database=database,
        temporal=temporal,
        queues=queues,
        workers=await _worker_checks(state) if database.ok else {},
    )


async def _worker_checks(state: AppState) -> dict[str, WorkerCheckOut]:
    """The workers' latest scheduled checks, by name."""
    try:
        async with state.sessions() as session:
            rows = (await session.scalars(select(WorkerCheck).order_by(WorkerCheck.name))).all()
    except Exception as err:  # noqa: BLE001 - a missing table (an old database) is reported, not raised
        log.warning("health: worker checks unreadable", error=f"{type(err).__name__}: {err}")
        return {}
    return {
        row.name: WorkerCheckOut(
            ok=row.ok, latency_ms=row.latency_ms, detail=row.detail or None, checked_at=row.checked_at
        )
        for row in rows
    }


async def _check_db(state: AppState) -> Check:
    start = time.perf_counter()
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any DB failure is reported, not raised
        log.warning("health: database check failed", error=f"{type(err).__name__}: {err}")
        return Check(ok=False, detail=f"{type(err).__name__}: {err}")
    return Check(ok=True, latency_ms=round((time.perf_counter() - start) * 1000, 2))


async def _check_temporal(state: AppState) -> tuple[Check, dict[str, dict[str, Any]]]:
    start = time.perf_counter()
    try:
        client = await state.temporal()
        await client.service_client.check_health()
    except (ConveyorError, RuntimeError) as err:
        log.warning("health: Temporal check failed", error=str(err))
        return Check(ok=False, detail=str(err)), {}
    check = Check(ok=True, latency_ms=round((time.perf_counter() - start) * 1000, 2))
    served = served_queues()
    names = list(served)
    limit = asyncio.Semaphore(QUEUE_PROBE_CONCURRENCY)

    async def pollers(queue: str) -> tuple[int, int]:
        async with limit:
            return await _pollers(client, queue)

    counts = await asyncio.gather(*(pollers(q) for q in names))
    queues = {
        name: {"workflow_pollers": wf, "activity_pollers": act, "ok": (wf > 0 or not served[name]) and act > 0}
        for name, (wf, act) in zip(names, counts, strict=True)
    }
    return check, queues


async def _pollers(client: Any, queue: str) -> tuple[int, int]:
    result = []
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind)
        )
        result.append(len(resp.pollers))
    return result[0], result[1]
