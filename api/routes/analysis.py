"""Analysis tasks over HTTP: upload files, process, watch, download outputs, cancel (seed 003)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel

from activities.analysis.catalog import TOOLS
from activities.analysis.models import AnalysisTask
from api.deps import BlobDep, CurrentUser, SessionDep, SettingsDep, TemporalDep
from api.services import analysis as service
from conveyor.errors import BadInput
from conveyor.settings import Settings

router = APIRouter(prefix="/api", tags=["analysis"])


class OutputOut(BaseModel):
    """A downloadable output of a task."""

    name: str
    size: int
    content_type: str
    agent: str | None
    url: str


class TaskOut(BaseModel):
    """A task as its owner sees it."""

    task_id: str
    tool_id: str
    agents: list[str]
    status: str
    progress: int
    current_agent: str | None
    input_files: list[dict[str, Any]]
    params: dict[str, Any]
    outputs: list[OutputOut]
    result: dict[str, Any] | None
    credits_cost: int
    workflow_id: str | None
    workflow_url: str | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class TaskPage(BaseModel):
    """One page of tasks."""

    items: list[TaskOut]
    total: int
    limit: int
    offset: int


class ProcessOut(BaseModel):
    """The answer to ``process``: queued (or already under way) with the workflow id."""

    task_id: str
    status: str
    workflow_id: str
    started: bool
    workflow_url: str


class ToolOut(BaseModel):
    """A tool and its agents."""

    id: str
    description: str
    agents: list[dict[str, Any]]


def task_out(task: AnalysisTask, settings: Settings) -> TaskOut:
    """The public form of a task, with download URLs."""
    base = f"{settings.api_url}/api/tasks/{task.task_id}/outputs"
    return TaskOut(
        task_id=task.task_id,
        tool_id=task.tool_id,
        agents=list(task.agents),
        status=task.status,
        progress=task.progress,
        current_agent=task.current_agent,
        input_files=[{"name": f["name"], "size": f["size"]} for f in task.input_files],
        params=task.params,
        outputs=[
            OutputOut(
                name=o["name"],
                size=o["size"],
                content_type=o["content_type"],
                agent=o.get("agent"),
                url=f"{base}/{o['name']}",
            )
            for o in task.outputs
        ],
        result=task.result,
        credits_cost=task.credits_cost,
        workflow_id=task.workflow_id,
        workflow_url=settings.workflow_ui_url(task.workflow_id) if task.workflow_id else None,
        error_code=task.error_code,
        error_message=task.error_message,
        created_at=task.created_at,
        updated_at=task.updated_at,
        started_at=task.started_at,
        completed_at=task.completed_at,
    )


def _parse_params(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise BadInput(f"params is not valid JSON: {err.msg} at position {err.pos}", code="BAD_PARAMS") from err
    if not isinstance(value, dict):
        raise BadInput("params must be a JSON object keyed by agent id", code="BAD_PARAMS")
    return value


def _parse_agents(raw: str | None) -> list[str]:
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


@router.get("/tools", response_model=list[ToolOut])
async def list_tools() -> list[ToolOut]:
    """The analysis tools and their agents (with credit costs)."""
    return [
        ToolOut(
            id=t.id,
            description=t.description,
            agents=[
                {"id": a.id, "description": a.description, "credits": a.credits, "min_files": a.min_files}
                for a in t.agents
            ],
        )
        for t in TOOLS.values()
    ]


@router.post("/tasks", response_model=TaskOut, status_code=201)
async def create_task(
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobDep,
    settings: SettingsDep,
    tool_id: Annotated[str, Form(description="profile-my-data, clean-my-data or master-my-data")],
    files: Annotated[list[UploadFile] | None, File(description="CSV, TSV, JSON lines, Parquet or Excel")] = None,
    agents: Annotated[str | None, Form(description="comma-separated agent ids or a JSON list")] = None,
    params: Annotated[str | None, Form(description="JSON object: {agent_id: {param: value}}")] = None,
) -> TaskOut:
    """Upload files and create a task (it runs when you call ``process``)."""
    uploads = [service.Upload(f.filename or "file", f.file) for f in files or []]
    task = await service.create_task(
        session,
        blobs,
        settings,
        user,
        tool_id=tool_id,
        agents=_parse_agents(agents),
        params=_parse_params(params),
        files=uploads,
    )
    return task_out(task, settings)


@router.post("/tasks/{task_id}/process", response_model=ProcessOut, status_code=202)
async def process_task(
    task_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> ProcessOut:
    """Queue the task; answers at once. A second call starts nothing new."""
    result = await service.process_task(session, client, user, task_id)
    return ProcessOut(
        task_id=task_id,
        status=result.task.status,
        workflow_id=result.workflow_id,
        started=result.started,
        workflow_url=settings.workflow_ui_url(result.workflow_id),
    )


@router.get("/tasks", response_model=TaskPage)
async def list_tasks(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: str | None = None,
) -> TaskPage:
    """Your tasks, newest first."""
    rows, total = await service.list_tasks(session, user, limit=limit, offset=offset, status=status)
    return TaskPage(items=[task_out(t, settings) for t in rows], total=total, limit=limit, offset=offset)


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(
    task_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> TaskOut:
    """Status, progress, current agent and outputs (with download URLs) of one of your tasks."""
    task = await service.get_task(session, user, task_id)
    task = await service.reconcile(session, client, task)
    return task_out(task, settings)


@router.get("/tasks/{task_id}/outputs/{name}", response_class=Response)
async def download_output(task_id: str, name: str, user: CurrentUser, session: SessionDep, blobs: BlobDep) -> Response:
    """Download one output file of one of your tasks."""
    task = await service.get_task(session, user, task_id)
    output = service.find_output(task, name)
    local = blobs.local_path(output["key"])
    if local is not None:
        return FileResponse(local, media_type=output["content_type"], filename=name)
    return StreamingResponse(
        blobs.iter_chunks(output["key"]),
        media_type=output["content_type"],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, status_code=202)
async def cancel_task(
    task_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> TaskOut:
    """Cancel one of your tasks; finished agents' outputs are kept."""
    task = await service.cancel_task(session, client, user, task_id)
    return task_out(task, settings)
