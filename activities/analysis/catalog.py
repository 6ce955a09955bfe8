"""The analysis tools and their agents: pure data, safe to import from workflows and the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.clean.params import (
    DuplicateResolverParams,
    EmailValidatorParams,
    FieldStandardizerParams,
    NullHandlerParams,
    OutlierFlaggerParams,
    TypeFixerParams,
)
from activities.analysis.agents.master.params import (
    EntityMatcherParams,
    GoldenRecordBuilderParams,
    KeyIdentifierParams,
)
from activities.analysis.agents.params import AgentParams, parse_params
from activities.analysis.agents.profile.params import DriftDetectorParams, ScoreRiskParams, UnifiedProfilerParams
from conveyor.errors import BadInput


@dataclass(frozen=True)
class AgentSpec:
    """One analysis agent: what it does, what it costs, whether it rewrites the chained dataset, its params."""

    id: str
    description: str
    credits: int
    params: type[AgentParams] = AgentParams
    """The model of its params (the field descriptions document them)."""
    transforms: bool = False
    min_files: int = 1
    max_files: int | None = None


@dataclass(frozen=True)
class ToolSpec:
    """One analysis tool: its agents in their default order."""

    id: str
    description: str
    agents: tuple[AgentSpec, ...]

    def agent_ids(self) -> tuple[str, ...]:
        """The ids of this tool's agents, in order."""
        return tuple(a.id for a in self.agents)

    def agent(self, agent_id: str) -> AgentSpec | None:
        """The agent with this id, if this tool has it."""
        return next((a for a in self.agents if a.id == agent_id), None)


TOOLS: dict[str, ToolSpec] = {
    t.id: t
    for t in (
        ToolSpec(
            "profile-my-data",
            "Profile columns, score PII and quality risk, detect drift between two files.",
            (
                AgentSpec(
                    "unified-profiler",
                    "Types, counts, statistics, top values and patterns per column.",
                    2,
                    UnifiedProfilerParams,
                ),
                AgentSpec("score-risk", "PII columns and a data quality score with reasons.", 1, ScoreRiskParams),
                AgentSpec(
                    "drift-detector",
                    "Distribution drift between the first two files.",
                    2,
                    DriftDetectorParams,
                    min_files=2,
                ),
            ),
        ),
        ToolSpec(
            "clean-my-data",
            "Normalise nulls, fix types, standardise fields, resolve duplicates, flag outliers, check emails.",
            (
                AgentSpec(
                    "null-handler",
                    "Null-like values to null; fill or drop per params.",
                    1,
                    NullHandlerParams,
                    transforms=True,
                ),
                AgentSpec(
                    "type-fixer",
                    "Numbers with separators, mixed date formats, booleans.",
                    1,
                    TypeFixerParams,
                    transforms=True,
                ),
                AgentSpec(
                    "field-standardizer",
                    "Trim, case and category spellings.",
                    1,
                    FieldStandardizerParams,
                    transforms=True,
                ),
                AgentSpec(
                    "duplicate-resolver",
                    "Exact and normalised near-duplicates.",
                    2,
                    DuplicateResolverParams,
                    transforms=True,
                ),
                AgentSpec("outlier-flagger", "Flag numeric outliers.", 1, OutlierFlaggerParams, transforms=True),
                AgentSpec("email-validator", "Validate email columns.", 1, EmailValidatorParams, transforms=True),
            ),
        ),
        ToolSpec(
            "master-my-data",
            "Find keys, match entities across files and build golden records.",
            (
                AgentSpec("key-identifier", "Candidate keys per file.", 1, KeyIdentifierParams),
                AgentSpec(
                    "entity-matcher",
                    "Match records across files on normalised keys and fuzzy names.",
                    3,
                    EntityMatcherParams,
                    transforms=True,
                ),
                AgentSpec(
                    "golden-record-builder",
                    "Golden records by survivorship rules.",
                    2,
                    GoldenRecordBuilderParams,
                    transforms=True,
                ),
            ),
        ),
    )
}


AGENT_PARAMS: dict[str, type[AgentParams]] = {a.id: a.params for t in TOOLS.values() for a in t.agents}
"""Each agent's params model, by agent id."""


def tool_cost(tool_id: str, agent_ids: list[str] | tuple[str, ...]) -> int:
    """Credits a run of these agents of this tool costs."""
    tool = TOOLS[tool_id]
    return sum(spec.credits for a in agent_ids if (spec := tool.agent(a)) is not None)


def task_prefix(task_id: str) -> str:
    """Blob prefix of everything a task stores."""
    return f"analysis/{task_id}"


def validate_plan(tool_id: str, agents: list[str], n_files: int) -> list[str]:
    """Check a tool/agents/files combination; returns the agents to run (the tool's defaults if none)."""
    tool = TOOLS.get(tool_id)
    if tool is None:
        known = ", ".join(sorted(TOOLS))
        raise BadInput(f"unknown tool {tool_id!r}; known tools: {known}", code="UNKNOWN_TOOL")
    if n_files == 0:
        raise BadInput("no input files were given", code="NO_FILES")
    chosen = agents or [a.id for a in tool.agents if a.min_files <= n_files]
    order = tool.agent_ids()
    for agent_id in chosen:
        spec = tool.agent(agent_id)
        if spec is None:
            raise BadInput(
                f"unknown agent {agent_id!r} for tool {tool_id}; agents: {', '.join(order)}", code="UNKNOWN_AGENT"
            )
        if n_files < spec.min_files:
            raise BadInput(
                f"agent {agent_id} needs at least {spec.min_files} files, got {n_files}", code="TOO_FEW_FILES"
            )
    if len(set(chosen)) != len(chosen):
        raise BadInput("an agent is listed twice", code="DUPLICATE_AGENT")
    return sorted(chosen, key=order.index)


def validate_params(tool_id: str, params: dict[str, Any]) -> None:
    """Check ``params`` (``{agent_id: {param: value}}``) against the tool's agents' models; BAD_PARAMS if wrong.

    Call after :func:`validate_plan` (which knows the tool). Params may address any agent of the tool, run or not.
    """
    tool = TOOLS[tool_id]
    for agent_id, raw in params.items():
        spec = tool.agent(agent_id)
        if spec is None:
            raise BadInput(
                f"params name unknown agent {agent_id!r} for tool {tool_id}; agents: {', '.join(tool.agent_ids())}",
                code="BAD_PARAMS",
                details={"agent": agent_id, "param": None, "value": None},
            )
        parse_params(agent_id, spec.params, raw)
