"""Analysis tasks over HTTP: upload files, process, watch, download outputs, cancel (seed 003)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from activities.analysis.catalog import TOOLS, AgentSpec, ToolSpec
from activities.analysis.models import AnalysisTask
from api.blobs import serve_blob
from api.deps import BlobDep, CallerDep, CurrentUser, SessionDep, SettingsDep
from api.runs import RunOut, add_listing, context_settings, public
from api.services import analysis as service
from conveyor.settings import Settings

router = APIRouter(prefix="/api", tags=["analysis"])


class InputFileOut(BaseModel):
    """A file the task was given."""

    name: str
    size: int


class OutputOut(BaseModel):
    """A downloadable output of a task."""

    name: str
    size: int
    content_type: str
    agent: str | None = None
    url: str


class TaskOut(RunOut):
    """A task as its owner sees it."""

    model_config = ConfigDict(from_attributes=True)

    task_id: str
    tool_id: str
    agents: list[str]
    current_agent: str | None
    input_files: list[InputFileOut]
    params: dict[str, Any]
    outputs: list[OutputOut]
    result: dict[str, Any] | None
    credits_cost: int

    @field_validator("outputs", mode="before")
    @classmethod
    def _download_links(cls, outputs: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        settings = context_settings(info)
        task_id = info.data.get("task_id", "")
        base = f"{settings.api_url if settings else ''}/api/tasks/{task_id}/outputs"
        return [{**o, "url": o.get("url") or f"{base}/{o['name']}"} for o in outputs]


class ProcessOut(BaseModel):
    """The answer to ``process``: queued (or already under way) with the workflow id."""

    task_id: str
    status: str
    workflow_id: str
    started: bool
    workflow_url: str


class AgentOut(BaseModel):
    """An agent of a tool: what it does, what it costs, how many files it needs, its params."""

    id: str
    description: str
    credits: int
    min_files: int
    params: dict[str, Any] = Field(
        description="JSON Schema of the agent's params (pass them as params: {agent_id: {param: value}}); each "
        "property's description documents it. Unknown names are refused."
    )

    @classmethod
    def of(cls, spec: AgentSpec) -> AgentOut:
        """The public form of an agent, with its params' schema."""
        return cls(
            id=spec.id,
            description=spec.description,
            credits=spec.credits,
            min_files=spec.min_files,
            params=spec.params.model_json_schema(),
        )


class ToolOut(BaseModel):
    """A tool and its agents."""

    id: str
    description: str
    agents: list[AgentOut]

    @classmethod
    def of(cls, tool: ToolSpec) -> ToolOut:
        """The public form of a tool."""
        return cls(id=tool.id, description=tool.description, agents=[AgentOut.of(a) for a in tool.agents])


def task_out(task: AnalysisTask, settings: Settings) -> TaskOut:
    """The public form of a task, with download URLs."""
    return public(TaskOut, task, settings)


add_listing(
    router, "/tasks", AnalysisTask, TaskOut, task_out, name="list_tasks", description="Your tasks, newest first."
)


@router.get("/tools", response_model=list[ToolOut])
async def list_tools() -> list[ToolOut]:
    """The analysis tools and their agents (with credit costs and the JSON Schema of their params)."""
    return [ToolOut.of(t) for t in TOOLS.values()]


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
        agents=service.parse_agents(agents),
        params=service.parse_params(params),
        files=uploads,
    )
    return task_out(task, settings)


@router.post("/tasks/{task_id}/process", response_model=ProcessOut, status_code=202)
async def process_task(task_id: str, caller: CallerDep) -> ProcessOut:
    """Queue the task; answers at once. A second call starts nothing new."""
    result = await service.process_task(caller, task_id)
    return ProcessOut(
        task_id=task_id,
        status=result.task.status,
        workflow_id=result.workflow_id,
        started=result.started,
        workflow_url=caller.settings.workflow_ui_url(result.workflow_id),
    )


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, caller: CallerDep) -> TaskOut:
    """Status, progress, current agent and outputs (with download URLs) of one of your tasks."""
    return task_out(await service.get_task(caller, task_id), caller.settings)


@router.get("/tasks/{task_id}/outputs/{name}", response_class=Response)
async def download_output(task_id: str, name: str, caller: CallerDep) -> Response:
    """Download one output file of one of your tasks."""
    task = await service.get_task(caller, task_id)
    output = service.find_output(task, name)
    return serve_blob(caller.blobs, output["key"], media_type=output["content_type"], filename=name)


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, status_code=202)
async def cancel_task(task_id: str, caller: CallerDep) -> TaskOut:
    """Cancel one of your tasks; finished agents' outputs are kept."""
    return task_out(await service.cancel_task(caller, task_id), caller.settings)
