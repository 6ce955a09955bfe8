"""The contract every analysis agent implements.

An agent is a plain function ``run(ctx: AgentContext) -> AgentResult``. It reads Parquet files with the
DuckDB connection it is given (never loading whole tables into Python objects), writes what it produces
under ``ctx.workdir``, reports progress through ``ctx.report`` and raises :class:`conveyor.errors.BadInput`
for input it cannot work with. The activity around it handles blobs, heartbeats and cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb


@dataclass(frozen=True)
class Dataset:
    """One table: a local Parquet file and the name the user gave its source file."""

    name: str
    path: Path


@dataclass
class AgentContext:
    """What an agent gets to work with."""

    con: duckdb.DuckDBPyConnection
    inputs: list[Dataset]
    """The task's input files, converted to Parquet, in upload order."""
    current: list[Dataset]
    """The chained datasets: the previous transforming agent's output, or ``inputs`` for the first."""
    params: dict[str, Any]
    """This agent's raw parameters; the agent validates them with ``parse_params`` and its params model."""
    previous: dict[str, dict[str, Any]]
    """Summaries of agents that ran earlier in this task, by agent id."""
    workdir: Path
    """A fresh folder for this agent's output files."""
    report: Callable[[float, str], None] = field(default=lambda _fraction, _message: None)
    """Progress callback: fraction done in [0, 1] and a short message."""


@dataclass
class AgentResult:
    """What an agent produced."""

    summary: dict[str, Any]
    """A JSON-serialisable summary, small (well under 1 MB): counts, per-column findings, scores."""
    current: list[Dataset] | None = None
    """New chained datasets (Parquet under ``workdir``) for the next agent; ``None`` keeps the old ones."""
    files: dict[str, Path] = field(default_factory=dict)
    """Output files to publish, by output name (e.g. ``"cleaned.csv"``); paths under ``workdir``."""


AgentFn = Callable[[AgentContext], AgentResult]
