"""Any pipeline's workflow by id: progress now, or a Server-Sent Events stream of it until it ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import OwnerId, SettingsDep, TemporalDep
from conveyor.client import WorkflowStatus, cancel_workflow, describe

router = APIRouter(prefix="/api/workflows", tags=["workflows"])

#: A comment line keeps idle proxies from closing the stream: one every this many polls without news.
KEEPALIVE_EVERY = 15


@router.get("/{workflow_id}/progress", response_model=WorkflowStatus)
async def workflow_progress(workflow_id: str, owner: OwnerId, client: TemporalDep) -> WorkflowStatus:
    """Status and ``progress`` query answer of one of your workflows."""
    return await describe(client, workflow_id, owner=str(owner))


@router.post("/{workflow_id}/cancel", response_model=WorkflowStatus, status_code=202)
async def workflow_cancel(workflow_id: str, owner: OwnerId, client: TemporalDep) -> WorkflowStatus:
    """Ask one of your workflows to cancel."""
    return await cancel_workflow(client, workflow_id, owner=str(owner))


@router.get("/{workflow_id}/events", response_class=StreamingResponse)
async def workflow_events(
    workflow_id: str, request: Request, owner: OwnerId, client: TemporalDep, settings: SettingsDep
) -> StreamingResponse:
    """Server-Sent Events: a ``progress`` event whenever progress changes, then one ``done`` event.

    Each stream asks Temporal once per ``sse_poll_interval_s``; a key may hold ``sse_max_streams_per_key`` streams
    at once (the edge middleware answers 429 past that).
    """
    first = await describe(client, workflow_id, owner=str(owner))  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        current, last, idle = first, "", 0
        while True:
            payload = current.model_dump_json()
            if payload != last:
                yield f"event: progress\ndata: {payload}\n\n"
                last, idle = payload, 0
            elif (idle := idle + 1) % KEEPALIVE_EVERY == 0:
                yield ": keepalive\n\n"
            if current.closed:
                yield f"event: done\ndata: {json.dumps({'status': current.status})}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(settings.sse_poll_interval_s)
            current = await describe(client, workflow_id)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
