"""Analysis tasks: create, start, read, list and cancel; shared by the HTTP API and the CLI."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession

from activities.analysis import contract
from activities.analysis.catalog import task_prefix, validate_params, validate_plan
from activities.analysis.models import AnalysisTask
from activities.analysis.schemas import AnalysisRequest
from api.caller import Caller
from api.runs import owned_run
from conveyor.client import start_workflow
from conveyor.errors import BadInput, ConveyorError, NotFound, TooLarge
from conveyor.models import User
from conveyor.reconcile import cancel_run
from conveyor.runs import RunStatus
from conveyor.settings import Settings
from conveyor.storage import BlobStore

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
    """Validate the request (params too), store the files and record a ``created`` task (nothing runs yet)."""
    if len(files) > settings.max_files_per_task:
        raise BadInput(f"at most {settings.max_files_per_task} files per task, got {len(files)}", code="TOO_MANY_FILES")
    chosen = validate_plan(tool_id, agents, len(files))
    validate_params(tool_id, params)
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
        status=RunStatus.CREATED.value,
        input_files=stored,
        params=params,
        outputs=[],
    )
    session.add(task)
    await session.commit()
    return task


async def get_task(caller: Caller, task_id: str) -> AnalysisTask:
    """The caller's task, reconciled with Temporal (another user's task is reported as not found)."""
    return await owned_run(caller, AnalysisTask, task_id, what="task", code="TASK_NOT_FOUND")


async def process_task(caller: Caller, task_id: str) -> ProcessResult:
    """Start the task's workflow once; a repeat call (or a concurrent one) starts nothing new."""
    session, user = caller.session, caller.user
    task = await get_task(caller, task_id)
    workflow_id = contract.workflow_id_for(task.task_id)
    if task.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETED):
        return ProcessResult(task, workflow_id, started=False)
    previous = task.status
    task.set_status(RunStatus.QUEUED, stage="queued")
    task.workflow_id = workflow_id
    task.progress = 0
    await session.commit()
    try:
        request = AnalysisRequest(task_id=task.task_id, user_id=user.id)
        started = await start_workflow(caller.client, contract.ANALYSIS_START, request, id=workflow_id, owner=user.id)
    except ConveyorError:
        task.status = previous
        await session.commit()
        raise
    return ProcessResult(task, workflow_id, started=started)


async def cancel_task(caller: Caller, task_id: str) -> AnalysisTask:
    """Cancel a task: a queued or running one through its workflow, a never-started one at once."""
    task = await get_task(caller, task_id)
    await cancel_run(caller.session, caller.client, task, what=f"task {task_id}", finished_code="TASK_FINISHED")
    return task


def find_output(task: AnalysisTask, name: str) -> dict[str, Any]:
    """The recorded output called ``name`` (NotFound if the task has none by that name)."""
    for output in task.outputs:
        if output["name"] == name:
            return output
    raise NotFound(f"task {task.task_id} has no output named {name!r}", code="OUTPUT_NOT_FOUND")


def parse_params(raw: str | None) -> dict[str, Any]:
    """``params`` from the form or the command line: a JSON object keyed by agent id."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise BadInput(f"params is not valid JSON: {err.msg} at position {err.pos}", code="BAD_PARAMS") from err
    if not isinstance(value, dict):
        raise BadInput("params must be a JSON object keyed by agent id", code="BAD_PARAMS")
    return value


def parse_agents(raw: str | None) -> list[str]:
    """``agents``: a comma-separated list or a JSON list of agent ids."""
    if not raw:
        return []
    if raw.lstrip().startswith("["):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as err:
            raise BadInput(f"agents is not valid JSON: {err.msg}", code="BAD_AGENTS") from err
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise BadInput("agents must be a list of agent ids", code="BAD_AGENTS")
        return value
    return [a.strip() for a in raw.split(",") if a.strip()]
