"""``GET /api/health``: the database, Temporal, and a poller on every served queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.deps import StateDep
from conveyor.errors import ConveyorError
from workers.pipelines import all_queues

router = APIRouter(prefix="/api", tags=["health"])


class Check(BaseModel):
    """One dependency's state."""

    ok: bool
    latency_ms: float | None = None
    detail: str | None = None


class Health(BaseModel):
    """Overall and per-dependency health."""

    status: str
    database: Check
    temporal: Check
    queues: dict[str, dict[str, Any]]


def served_queues() -> dict[str, bool]:
    """Every pipeline's queues, each with whether workflows run there (and need workflow pollers)."""
    return {name: bool(queue.workflows) for name, queue in all_queues().items()}


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(state: StateDep) -> JSONResponse:
    """200 when the DB answers, Temporal answers, and every served queue has workflow and activity pollers."""
    database = await _check_db(state)
    temporal, queues = await _check_temporal(state)
    ok = database.ok and temporal.ok and all(q["ok"] for q in queues.values())
    body = Health(status="ok" if ok else "degraded", database=database, temporal=temporal, queues=queues)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _check_db(state: Any) -> Check:
    start = time.perf_counter()
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any DB failure is reported, not raised
        return Check(ok=False, detail=f"{type(err).__name__}: {err}")
    return Check(ok=True, latency_ms=round((time.perf_counter() - start) * 1000, 2))


async def _check_temporal(state: Any) -> tuple[Check, dict[str, dict[str, Any]]]:
    start = time.perf_counter()
    try:
        client = await state.temporal()
        await client.service_client.check_health()
    except (ConveyorError, RuntimeError) as err:
        return Check(ok=False, detail=str(err)), {}
    check = Check(ok=True, latency_ms=round((time.perf_counter() - start) * 1000, 2))
    served = served_queues()
    names = list(served)
    counts = await asyncio.gather(*(_pollers(client, q) for q in names))
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
