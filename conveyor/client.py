"""Start, describe, query and cancel workflows by name and id, with Temporal's errors mapped in one place.

The API, the CLI and the demo start every pipeline's workflows through :func:`start_workflow` (by the
workflow type name of the pipeline's contract, with the ``ConveyorPipeline``/``ConveyorOwner`` search
attributes), so no caller imports workflow code or handles ``RPCError`` itself: :func:`temporal_errors`
translates them into the error taxonomy, as httpx's ``map_exceptions`` does for transport errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from conveyor.errors import Conflict, ExternalServiceError, NotFound, RateLimited, failure_info
from conveyor.pipeline import Launch
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR

#: How long a ``progress`` query may take before the answer is "unknown right now".
QUERY_TIMEOUT = timedelta(seconds=5)


@contextmanager
def temporal_errors(what: str) -> Iterator[None]:
    """Turn Temporal ``RPCError`` s raised inside into the taxonomy: NotFound, Conflict, RateLimited, unavailable."""
    try:
        yield
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"{what}: not found", code="WORKFLOW_NOT_FOUND") from err
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            raise Conflict(f"{what}: already exists", code="WORKFLOW_EXISTS") from err
        if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            raise RateLimited(f"{what}: Temporal is rate limiting: {err.message}", code="TEMPORAL_BUSY") from err
        raise ExternalServiceError(f"{what}: {err.message}", code="TEMPORAL_UNAVAILABLE") from err


def search_attributes(pipeline: str, owner: int | str) -> TypedSearchAttributes:
    """The search attributes every Conveyor workflow carries."""
    return TypedSearchAttributes(
        [SearchAttributePair(PIPELINE_ATTR, pipeline), SearchAttributePair(OWNER_ATTR, str(owner))]
    )


def _start_options(launch: Launch, id: str, owner: int | str, execution_timeout: timedelta | None) -> dict[str, Any]:
    return {
        "id": id,
        "task_queue": launch.queue,
        "execution_timeout": execution_timeout or launch.execution_timeout,
        "id_reuse_policy": launch.id_reuse,
        "search_attributes": search_attributes(launch.pipeline, owner),
    }


async def start_workflow(
    client: Client,
    launch: Launch,
    arg: BaseModel,
    *,
    id: str,
    owner: int | str,
    execution_timeout: timedelta | None = None,
) -> bool:
    """Start the workflow ``launch`` names with ``arg``; False when a run with ``id`` is already running.

    ``execution_timeout`` overrides the launch's where a run's limit depends on its input (a crawl's hard limit).
    """
    try:
        with temporal_errors(f"could not start workflow {id}"):
            await client.start_workflow(launch.workflow, arg, **_start_options(launch, id, owner, execution_timeout))
    except WorkflowAlreadyStartedError:
        return False
    return True


async def execute_workflow(
    client: Client, launch: Launch, arg: BaseModel, result_type: type[Any], *, id: str, owner: int | str
) -> Any:
    """Run a short workflow to its end and return its result (a search, a probe); its failure as the taxonomy's."""
    options = _start_options(launch, id, owner, None)
    try:
        with temporal_errors(f"workflow {id}"):
            return await client.execute_workflow(launch.workflow, arg, result_type=result_type, **options)
    except WorkflowFailureError as err:
        raise failure_info(err).to_error() from err


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


async def describe_execution(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    """Temporal's description of the workflow's latest run, or None when there is no such workflow."""
    try:
        with temporal_errors(f"workflow {workflow_id}"):
            return await client.get_workflow_handle(workflow_id).describe()
    except NotFound:
        return None


async def describe(client: Client, workflow_id: str, *, owner: str | None = None) -> WorkflowStatus:
    """Status and progress of a workflow; NotFound if it does not exist or ``owner`` does not own it."""
    desc = await describe_execution(client, workflow_id)
    wf_owner = desc.typed_search_attributes.get(OWNER_ATTR) if desc is not None else None
    if desc is None or (owner is not None and wf_owner != owner):
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
        progress=await query_progress(client, workflow_id),
    )


async def query_progress(client: Client, workflow_id: str) -> Progress | None:
    """The workflow's ``progress`` answer, or None when no worker can answer it right now."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        progress: Progress = await handle.query(PROGRESS_QUERY, result_type=Progress, rpc_timeout=QUERY_TIMEOUT)
        return progress
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None


async def cancel_workflow(client: Client, workflow_id: str, *, owner: str | None = None) -> WorkflowStatus:
    """Request cancellation of a running workflow (a closed one is left as it is)."""
    current = await describe(client, workflow_id, owner=owner)
    if not current.closed:
        with temporal_errors(f"could not cancel {workflow_id}"):
            await client.get_workflow_handle(workflow_id).cancel()
    return current
