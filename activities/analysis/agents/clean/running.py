"""Running an agent: one :class:`_Job` per current dataset, progress, output files and summaries."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.clean.sql import Col, _describe, _temp_table
from activities.analysis.agents.common import jsonable
from activities.analysis.agents.common import unique_names as _unique_names
from activities.analysis.sql import qident, qstr

Report = Callable[[float, str], None]


#: Rows sampled to detect types, number styles, date orders and e-mail columns.
SAMPLE_ROWS = 20_000


def _file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")
    return stem[:60] or "data"


@dataclass
class _Job:
    """One dataset being rewritten."""

    con: duckdb.DuckDBPyConnection
    name: str
    path: Path
    cols: list[Col]
    out: Path
    report: Report

    @property
    def src(self) -> str:
        """The input as an SQL table expression."""
        return f"read_parquet({qstr(str(self.path))})"

    @property
    def paired(self) -> str:
        """Input (alias ``i``) and output (alias ``o``) side by side, row by row."""
        return f"{self.src} AS i POSITIONAL JOIN read_parquet({qstr(str(self.out))}) AS o"

    def sample(self, cols: Sequence[Col]) -> AbstractContextManager[str]:
        """A temporary table with a reservoir sample (at most :data:`SAMPLE_ROWS` rows) of ``cols``."""
        sample = f"USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (42)"
        return _temp_table(self.con, f"SELECT {', '.join(c.ident for c in cols) or '*'} FROM {self.src} {sample}")


def _schemas(ctx: AgentContext) -> list[list[Col]]:
    return [_describe(ctx.con, ds.path) for ds in ctx.current]


def _run(
    ctx: AgentContext,
    agent: str,
    schemas: list[list[Col]],
    params: dict[str, Any],
    step: Callable[[_Job], dict[str, Any]],
) -> AgentResult:
    """Apply ``step`` to each current dataset; collect the new files and the per-dataset summaries."""
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    total = max(len(ctx.current), 1)
    datasets: dict[str, Any] = {}
    current: list[Dataset] = []
    for k, (name, ds, cols) in enumerate(zip(_unique_names(ctx.current), ctx.current, schemas, strict=True)):
        out = ctx.workdir / f"{k}_{_file_stem(ds.name)}.parquet"
        report = _scaled(ctx.report, k / total, (k + 1) / total, f"{agent}: {name}: ")
        datasets[name] = step(_Job(ctx.con, name, ds.path, cols, out, report))
        report(1.0, "written")
        current.append(Dataset(ds.name, out))
    ctx.report(1.0, f"{agent}: done")
    return AgentResult(summary=jsonable({"agent": agent, "params": params, "datasets": datasets}), current=current)


def _scaled(report: Report, start: float, end: float, prefix: str) -> Report:
    """A progress callback mapping [0, 1] onto [start, end] of ``report``, prefixing messages."""

    def scaled(fraction: float, message: str) -> None:
        report(start + (end - start) * min(max(fraction, 0.0), 1.0), prefix + message)

    return scaled


def _select_with(cols: Sequence[Col], added: dict[str, str]) -> list[str]:
    """Select list of ``cols`` with ``added`` expressions replacing same-named columns or appended."""
    items = [f"{added[c.name]} AS {c.ident}" if c.name in added else c.ident for c in cols]
    names = {c.name for c in cols}
    return items + [f"{expr} AS {qident(name)}" for name, expr in added.items() if name not in names]
