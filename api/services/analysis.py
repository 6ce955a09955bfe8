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
from activities.analysis.catalog import task_prefix, tool_cost, validate_params, validate_plan
from activities.analysis.limits import AnalysisLimits, check_workbook
from activities.analysis.models import AnalysisTask
from activities.analysis.schemas import AnalysisRequest
from api.caller import Caller
from api.runs import owned_run
from conveyor import credits
from conveyor.client import start_workflow
from conveyor.errors import BadInput, ConveyorError, NotFound, TooLarge
from conveyor.models import User
from conveyor.quotas import RunCharge, admit, check_credits
from conveyor.reconcile import cancel_run
from conveyor.runs import RunStatus
from conveyor.settings import Settings
from conveyor.storage import BlobStore

_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 120
MAX_JSON_DEPTH = 16
"""Deepest nesting accepted in the ``params`` and ``agents`` form fields (agent params need three or four)."""


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
    """A file name without folders, odd characters or leading dots, at most 120 characters (keeps the extension).

    Whatever the client sends (``..``, ``.``, ``/``, NUL bytes, a kilobyte of name), the result is one plain
    name inside a folder: never empty, never ``.`` or ``..``, never hidden; ``file`` when nothing usable is left.
    """
    base = _SAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).strip(".")
    if not base.strip("_"):
        return "file"
    if len(base) <= _MAX_NAME:
        return base
    stem, dot, ext = base.rpartition(".")
    if not dot or len(ext) > 16:
        return base[:_MAX_NAME]
    return f"{stem[: _MAX_NAME - len(ext) - 1].rstrip('._')}.{ext}"


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
    await check_credits(session, user.id, tool_cost(tool_id, chosen))  # 402 before a byte is stored
    task_id = str(uuid.uuid4())
    limits = AnalysisLimits.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="conveyor-upload-") as tmp:
        # every file is received and checked before the first is stored: a refused file leaves nothing behind
        staged = [await _stage(upload, Path(tmp) / str(i), settings, limits) for i, upload in enumerate(files)]
        try:
            stored: list[dict[str, Any]] = []
            for i, (name, local, size) in enumerate(staged):
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
        except BaseException:  # a failed put or commit, or the request cancelled: no blobs without a task
            await asyncio.shield(asyncio.to_thread(blobs.delete_prefix, f"{task_prefix(task_id)}/"))
            raise
    return task


async def _stage(upload: Upload, local: Path, settings: Settings, limits: AnalysisLimits) -> tuple[str, Path, int]:
    """Receive one upload into ``local`` (size-capped; a workbook's unpacked size checked): (name, path, size)."""
    name = safe_filename(upload.name)
    size = await asyncio.to_thread(copy_limited, upload.stream, local, settings.max_upload_bytes, name)
    if size == 0:
        raise BadInput(f"file {name!r} is empty", code="EMPTY_FILE", details={"file": name})
    await asyncio.to_thread(check_workbook, local, name, limits)
    return name, local, size


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
    cost = tool_cost(task.tool_id, list(task.agents))
    charge = RunCharge(contract.TASK_TABLE, task.task_id, cost, {"agents": list(task.agents)})
    # 429 past the cap, 402 without the credits: before the workflow converts a single file
    (held,) = await admit(
        session, caller.settings, user.id, contract.PIPELINE, group=workflow_id, charges=[charge], client=caller.client
    )
    await session.refresh(task)  # read under the user's lock: a concurrent process call may have queued it
    if task.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETED):
        await session.rollback()
        return ProcessResult(task, workflow_id, started=False)
    task.credits_cost = cost
    task.set_status(RunStatus.QUEUED, stage="queued")
    task.workflow_id = workflow_id
    task.progress = 0
    await session.commit()
    try:
        request = AnalysisRequest(task_id=task.task_id, user_id=user.id)
        started = await start_workflow(caller.client, contract.ANALYSIS_START, request, id=workflow_id, owner=user.id)
    except ConveyorError:
        task.status = previous
        await credits.settle(session, held.reference, 0, reason="analysis task not started")
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


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests arrays and objects (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _load_json(raw: str, what: str, code: str) -> Any:
    """A JSON form field parsed; BadInput ``code`` when it is not JSON or nests past :data:`MAX_JSON_DEPTH`."""
    too_deep = BadInput(
        f"{what} nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
        code=code,
        details={"field": what, "max_depth": MAX_JSON_DEPTH},
    )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise BadInput(f"{what} is not valid JSON: {err.msg} at position {err.pos}", code=code) from err
    except RecursionError:  # the parser's own guard: far past MAX_JSON_DEPTH
        raise too_deep from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value


def parse_params(raw: str | None) -> dict[str, Any]:
    """``params`` from the form or the command line: a JSON object keyed by agent id."""
    if not raw:
        return {}
    value = _load_json(raw, "params", "BAD_PARAMS")
    if not isinstance(value, dict):
        raise BadInput("params must be a JSON object keyed by agent id", code="BAD_PARAMS")
    return value


def parse_agents(raw: str | None) -> list[str]:
    """``agents``: a comma-separated list or a JSON list of agent ids."""
    if not raw:
        return []
    if raw.lstrip().startswith("["):
        value = _load_json(raw, "agents", "BAD_AGENTS")
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise BadInput("agents must be a list of agent ids", code="BAD_AGENTS")
        return value
    return [a.strip() for a in raw.split(",") if a.strip()]
