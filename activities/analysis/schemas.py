"""Inputs and outputs of the analysis workflow and its activities (one model each, fields addable)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AnalysisRequest(BaseModel):
    """Start an analysis run for a stored task."""

    task_id: str
    user_id: int
    soft_limit_s: float = 25 * 60
    """Past this, no further agent starts; finished outputs are kept and the task fails with TIMEOUT."""
    hard_limit_s: float = 30 * 60
    """No agent runs past this."""


class InputFile(BaseModel):
    """A file the user uploaded for a task."""

    name: str
    key: str
    size: int


class TaskPlan(BaseModel):
    """A loaded, routed task: what to run on what, and what it costs."""

    task_id: str
    user_id: int
    tool_id: str
    agents: list[str]
    files: list[InputFile]
    params: dict[str, Any] = Field(default_factory=dict)
    cost: int = 0


class DatasetRef(BaseModel):
    """A table in columnar form (Parquet in the blob store)."""

    name: str
    key: str
    rows: int
    columns: list[str]
    source_format: str = "parquet"
    encoding: str | None = None
    delimiter: str | None = None


class OutputFile(BaseModel):
    """A file a task produced, downloadable by name."""

    name: str
    key: str
    size: int
    content_type: str
    agent: str | None = None


class AgentRun(BaseModel):
    """Run one agent of a task."""

    task_id: str
    tool_id: str
    agent_id: str
    inputs: list[DatasetRef]
    current: list[DatasetRef]
    params: dict[str, Any] = Field(default_factory=dict)
    previous: dict[str, str] = Field(default_factory=dict)
    """Blob keys of earlier agents' summaries, by agent id."""


class AgentOutcome(BaseModel):
    """What one agent produced."""

    agent_id: str
    summary_key: str
    headline: dict[str, Any] = Field(default_factory=dict)
    current: list[DatasetRef] | None = None
    files: list[OutputFile] = Field(default_factory=list)
    seconds: float = 0.0


class PublishRequest(BaseModel):
    """Build the task's response from finished agents and publish every output."""

    task_id: str
    tool_id: str
    agents: list[str]
    outcomes: list[AgentOutcome]
    current: list[DatasetRef]
    status: str
    error_code: str | None = None
    error_message: str | None = None


class PublishResult(BaseModel):
    """The outputs recorded on the task."""

    outputs: list[OutputFile]


class CreditsRequest(BaseModel):
    """Hold, charge or release a task's credits."""

    task_id: str
    user_id: int
    amount: int = 0


class AnalysisResult(BaseModel):
    """How an analysis run ended."""

    task_id: str
    status: str
    agents_completed: list[str]
    outputs: list[OutputFile]
    credits_charged: int = 0
    error_code: str | None = None
    error_message: str | None = None


class PurgeRequest(BaseModel):
    """Remove intermediate files of tasks that finished more than ``retention_hours`` ago."""

    retention_hours: float


class PurgeResult(BaseModel):
    """What a purge removed."""

    tasks: int
    blobs_deleted: int
