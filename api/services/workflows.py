"""Read and cancel any Conveyor workflow by id: status from Temporal, progress from its ``progress`` query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from conveyor.errors import NotFound
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR

QUERY_TIMEOUT = timedelta(seconds=5)


class WorkflowStatus(BaseModel):
    """What a workflow is doing."""

    workflow_id: str
    run_id: str | None
    workflow_type: str
    pipeline: str | None
    owner: str | None
    status: str
    closed: bool
    started_at: datetime | None
    closed_at: datetime | None
    progress: Progress | None


def status_name(status: WorkflowExecutionStatus | None) -> str:
    """Lower-case status name (``running``, ``completed``, ``failed``, ``canceled``…)."""
    return status.name.lower() if status is not None else "unknown"


async def describe(client: Client, workflow_id: str, *, owner: str | None = None) -> WorkflowStatus:
    """Status and progress of a workflow; NotFound if it does not exist or ``owner`` does not own it."""
    handle: WorkflowHandle[object, object] = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"workflow {workflow_id} not found", code="WORKFLOW_NOT_FOUND") from err
        raise
    wf_owner = desc.typed_search_attributes.get(OWNER_ATTR)
    if owner is not None and wf_owner != owner:
        raise NotFound(f"workflow {workflow_id} not found", code="WORKFLOW_NOT_FOUND")
    closed = desc.status not in (WorkflowExecutionStatus.RUNNING, None)
    return WorkflowStatus(
        workflow_id=workflow_id,
        run_id=desc.run_id,
        workflow_type=desc.workflow_type,
        pipeline=desc.typed_search_attributes.get(PIPELINE_ATTR),
        owner=wf_owner,
        status=status_name(desc.status),
        closed=closed,
        started_at=desc.start_time,
        closed_at=desc.close_time,
        progress=await query_progress(handle),
    )


async def query_progress(handle: WorkflowHandle[object, object]) -> Progress | None:
    """The workflow's ``progress`` answer, or None when no worker can answer it right now."""
    try:
        progress: Progress = await handle.query(PROGRESS_QUERY, result_type=Progress, rpc_timeout=QUERY_TIMEOUT)
        return progress
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None


async def cancel(client: Client, workflow_id: str, *, owner: str | None = None) -> WorkflowStatus:
    """Request cancellation of a running workflow (a closed one is left as it is)."""
    current = await describe(client, workflow_id, owner=owner)
    if not current.closed:
        await client.get_workflow_handle(workflow_id).cancel()
    return current


@dataclass(frozen=True)
class AbnormalEnd:
    """How a workflow ended without running its own bookkeeping (terminated, or killed at its time limit)."""

    code: str
    message: str
    closed_at: datetime | None


_ABNORMAL_END = {
    WorkflowExecutionStatus.TERMINATED: ("TERMINATED", "the run was terminated"),
    WorkflowExecutionStatus.TIMED_OUT: ("TIMEOUT", "the run exceeded its time limit"),
}


async def abnormal_end(client: Client, workflow_id: str) -> AbnormalEnd | None:
    """Why the workflow was ended by Temporal itself, or None (still running, ended normally, or unreachable)."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None
    if desc.status not in _ABNORMAL_END:
        return None
    code, message = _ABNORMAL_END[desc.status]
    return AbnormalEnd(code, message, desc.close_time)
