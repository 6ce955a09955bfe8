"""Analysis tasks: create, start, read, list and cancel; shared by the HTTP API and the CLI."""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.analysis.catalog import task_prefix, validate_plan
from activities.analysis.models import TERMINAL_STATUSES, AnalysisTask, TaskStatus
from activities.analysis.schemas import AnalysisRequest
from api.services.workflows import abnormal_end
from conveyor.errors import BadInput, Conflict, ExternalServiceError, NotFound, TooLarge
from conveyor.models import User
from conveyor.settings import Settings
from conveyor.storage import BlobStore
from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR
from workflows.analysis import TASK_QUEUE, AnalysisWorkflow, workflow_id_for

#: Temporal's own backstop beyond the workflow's hard limit (it enforces that itself).
EXECUTION_TIMEOUT = timedelta(minutes=40)
_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Upload:
    """One incoming file: its name and a readable binary stream."""

    name: str
    stream: BinaryIO


@dataclass
class ProcessResult:
    """What ``process`` did."""

    task: AnalysisTask
    workflow_id: str
    started: bool


def safe_filename(name: str) -> str:
    """A file name without folders or odd characters (keeps the extension)."""
    base = Path(name.replace("\\", "/")).name.strip() or "file"
    return _SAFE_NAME.sub("_", base)[:120]


def copy_limited(stream: BinaryIO, dest: Path, limit: int, name: str) -> int:
    """Copy an upload to ``dest``; TooLarge naming the file once it passes ``limit`` bytes."""
    size = 0
    with dest.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(
                    f"file {name!r} is larger than the {limit} byte limit",
                    code="FILE_TOO_LARGE",
                    details={"file": name, "limit_bytes": limit},
                )
            out.write(chunk)
    return size


async def create_task(
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    *,
    tool_id: str,
    agents: list[str],
    params: dict[str, Any],
    files: list[Upload],
) -> AnalysisTask:
    """Validate the request, store the files and record a ``created`` task (nothing runs yet)."""
    if len(files) > settings.max_files_per_task:
        raise BadInput(f"at most {settings.max_files_per_task} files per task, got {len(files)}", code="TOO_MANY_FILES")
    chosen = validate_plan(tool_id, agents, len(files))
    task_id = str(uuid.uuid4())
    stored: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-upload-") as tmp:
        for i, upload in enumerate(files):
            name = safe_filename(upload.name)
            local = Path(tmp) / f"{i}"
            size = await asyncio.to_thread(copy_limited, upload.stream, local, settings.max_upload_bytes, name)
            if size == 0:
                raise BadInput(f"file {name!r} is empty", code="EMPTY_FILE", details={"file": name})
            key = f"{task_prefix(task_id)}/inputs/{i}-{name}"
            await asyncio.to_thread(blobs.put_file, key, local)
            stored.append({"name": name, "key": key, "size": size})
    task = AnalysisTask(
        task_id=task_id,
        user_id=user.id,
        tool_id=tool_id,
        agents=chosen,
        status=TaskStatus.CREATED.value,
        input_files=stored,
        params=params,
        outputs=[],
    )
    session.add(task)
    await session.commit()
    return task


async def get_task(session: AsyncSession, user: User, task_id: str) -> AnalysisTask:
    """The user's task (another user's task is reported as not found)."""
    task = await session.get(AnalysisTask, task_id)
    if task is None or task.user_id != user.id:
        raise NotFound(f"task {task_id} not found", code="TASK_NOT_FOUND")
    return task


async def list_tasks(
    session: AsyncSession, user: User, *, limit: int, offset: int, status: str | None = None
) -> tuple[list[AnalysisTask], int]:
    """A page of the user's tasks, newest first, and the total count."""
    where = [AnalysisTask.user_id == user.id]
    if status:
        where.append(AnalysisTask.status == status)
    total = await session.scalar(select(func.count()).select_from(AnalysisTask).where(*where))
    rows = await session.scalars(
        select(AnalysisTask).where(*where).order_by(AnalysisTask.created_at.desc()).limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)


async def process_task(session: AsyncSession, client: Client, user: User, task_id: str) -> ProcessResult:
    """Start the task's workflow once; a repeat call (or a concurrent one) starts nothing new."""
    task = await get_task(session, user, task_id)
    workflow_id = workflow_id_for(task.task_id)
    if task.status in (TaskStatus.QUEUED, TaskStatus.PROCESSING, TaskStatus.COMPLETED):
        return ProcessResult(task, workflow_id, started=False)
    previous_status = task.status
    task.status = TaskStatus.QUEUED.value
    task.workflow_id = workflow_id
    task.error_code = task.error_message = None
    task.progress = 0
    await session.commit()
    try:
        await client.start_workflow(
            AnalysisWorkflow.run,
            AnalysisRequest(task_id=task.task_id, user_id=user.id),
            id=workflow_id,
            task_queue=TASK_QUEUE,
            execution_timeout=EXECUTION_TIMEOUT,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PIPELINE_ATTR, "analysis"), SearchAttributePair(OWNER_ATTR, str(user.id))]
            ),
        )
    except WorkflowAlreadyStartedError:
        return ProcessResult(task, workflow_id, started=False)
    except RPCError as err:
        task.status = previous_status
        await session.commit()
        raise ExternalServiceError(f"could not start the workflow: {err.message}", code="TEMPORAL_UNAVAILABLE") from err
    return ProcessResult(task, workflow_id, started=True)


async def cancel_task(session: AsyncSession, client: Client, user: User, task_id: str) -> AnalysisTask:
    """Cancel a task: a queued/processing one through its workflow, a never-started one at once."""
    task = await get_task(session, user, task_id)
    if task.status in TERMINAL_STATUSES:
        raise Conflict(f"task {task_id} is already {task.status}", code="TASK_FINISHED")
    if task.status == TaskStatus.CREATED or task.workflow_id is None:
        task.status = TaskStatus.CANCELLED.value
        task.completed_at = datetime.now(UTC)
        await session.commit()
        return task
    try:
        await client.get_workflow_handle(task.workflow_id).cancel()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        task.status = TaskStatus.CANCELLED.value
        await session.commit()
    return task


async def reconcile(session: AsyncSession, client: Client, task: AnalysisTask) -> AnalysisTask:
    """Fix a task whose workflow ended without its own bookkeeping (terminated or timed out by Temporal)."""
    if task.status not in (TaskStatus.QUEUED, TaskStatus.PROCESSING) or task.workflow_id is None:
        return task
    end = await abnormal_end(client, task.workflow_id)
    if end is not None:
        task.error_code, task.error_message = end.code, end.message
        task.status = TaskStatus.FAILED.value
        task.completed_at = end.closed_at
        await session.commit()
    return task


def find_output(task: AnalysisTask, name: str) -> dict[str, Any]:
    """The recorded output called ``name`` (NotFound if the task has none by that name)."""
    for output in task.outputs:
        if output["name"] == name:
            return output
    raise NotFound(f"task {task.task_id} has no output named {name!r}", code="OUTPUT_NOT_FOUND")
