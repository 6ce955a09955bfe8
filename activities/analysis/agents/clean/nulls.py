"""The ``null-handler`` agent: null-like values to NULL, then keep, drop or fill nulls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.clean.numbers import _format_number, _number_stages
from activities.analysis.agents.clean.params import NullHandlerParams, _missing, check_columns, known_columns
from activities.analysis.agents.clean.running import _Job, _run, _schemas
from activities.analysis.agents.clean.sampling import _numeric_text
from activities.analysis.agents.clean.sql import (
    Col,
    Stage,
    _aggregate,
    _by_column,
    _layered,
    _nest,
    clean_text,
    null_like,
    write_parquet,
)
from activities.analysis.agents.clean.summaries import _share, clip
from activities.analysis.agents.params import parse_params
from activities.analysis.sql import qstr


@dataclass(frozen=True)
class _NullOptions:
    strategy: str
    columns: list[str] | None
    drop_over: float | None
    fill_numeric: str | float
    fill_text: str


def null_handler(ctx: AgentContext) -> AgentResult:
    """Turn null-like values into NULL, then keep, drop or fill nulls as ``strategy`` says."""
    schemas = _schemas(ctx)
    p = parse_params("null-handler", NullHandlerParams, ctx.params)
    check_columns("null-handler", "columns", p.columns or (), known_columns(schemas))
    strategy, drop_over = p.strategy, p.drop_columns_over
    if strategy == "drop_columns_over" and drop_over is None:
        drop_over = 0.5
    columns, fill_numeric, fill_text = p.columns, p.fill_numeric, p.fill_text
    opts = _NullOptions(strategy, columns, drop_over, fill_numeric, fill_text)
    echo: dict[str, Any] = {"strategy": strategy, "columns": columns, "drop_columns_over": drop_over}
    if strategy == "fill":
        echo |= {"fill_numeric": fill_numeric, "fill_text": fill_text}
    return _run(ctx, "null-handler", schemas, echo, lambda job: _null_dataset(job, opts))


def _null_stage(col: Col) -> Stage | None:
    if col.is_text:
        return lambda e: f"CASE WHEN {null_like(e)} THEN NULL ELSE {e} END"
    if col.is_float:
        return lambda e: f"CASE WHEN isnan({e}) THEN NULL ELSE {e} END"
    return None


def _null_counts(job: _Job) -> tuple[int, dict[int, dict[str, Any]]]:
    """Rows, and per column SQL nulls, null-like values (NaN for floats) and the commonest null-likes."""
    exprs = {"-1.rows": "count(*)"}
    for i, c in enumerate(job.cols):
        exprs[f"{i}.sql_nulls"] = f"count(*) - count({c.ident})"
        if c.is_text:
            exprs[f"{i}.null_like"] = f"count(*) FILTER (WHERE {null_like(c.ident)})"
            exprs[f"{i}.values"] = f"approx_top_k({c.ident}, 5) FILTER (WHERE {null_like(c.ident)})"
        elif c.is_float:
            exprs[f"{i}.null_like"] = f"count(*) FILTER (WHERE isnan({c.ident}))"
    stats = _by_column(_aggregate(job.con, job.src, exprs))
    return int(stats.pop(-1)["rows"]), stats


def _nulls(stats: dict[str, Any]) -> int:
    return int(stats["sql_nulls"]) + int(stats.get("null_like") or 0)


def _columns_to_drop(job: _Job, opts: _NullOptions, rows: int, stats: dict[int, dict[str, Any]]) -> list[Col]:
    if opts.drop_over is None or not rows:
        return []
    limit, scope = opts.drop_over, opts.columns
    drop = [c for i, c in enumerate(job.cols) if (scope is None or c.name in scope) and _nulls(stats[i]) / rows > limit]
    return [] if len(drop) == len(job.cols) else drop


def _fill_values(job: _Job, opts: _NullOptions, cols: Sequence[Col]) -> dict[str, Any]:
    """The value to fill each column's nulls with (columns of other types are left out)."""
    numeric_text = _numeric_text(job, [c for c in cols if c.is_text])
    stat = {"mean": "avg", "median": "median"}.get(str(opts.fill_numeric))
    exprs: dict[str, str] = {}
    for i, c in enumerate(cols):
        if stat and c.name in numeric_text:
            exprs[f"{i}.v"] = f"{stat}({_nest(c.ident, [clean_text, *_number_stages(numeric_text[c.name], False)])})"
        elif stat and c.is_numeric:
            x = f"CASE WHEN isnan({c.ident}) THEN NULL ELSE {c.ident} END" if c.is_float else c.ident
            exprs[f"{i}.v"] = f"{stat}({x})"
    computed = _by_column(_aggregate(job.con, job.src, exprs))
    fills: dict[str, Any] = {}
    for i, c in enumerate(cols):
        if c.is_numeric or c.name in numeric_text:
            fixed = 0.0 if opts.fill_numeric == "zero" else opts.fill_numeric
            value = float(computed.get(i, {}).get("v") or 0.0) if stat else float(fixed)
            if c.is_text:
                fills[c.name] = _format_number(value, numeric_text[c.name])
            else:
                fills[c.name] = value if c.is_float or c.type.startswith("DECIMAL") else round(value)
        elif c.is_text:
            fills[c.name] = opts.fill_text
    return fills


def _fill_stage(col: Col, value: Any) -> Stage:
    literal = qstr(value) if isinstance(value, str) else f"TRY_CAST({float(value)!r} AS {col.type})"
    return lambda e: f"coalesce({e}, {literal})"


def _null_dataset(job: _Job, opts: _NullOptions) -> dict[str, Any]:
    job.report(0.0, "counting null-like values")
    rows, stats = _null_counts(job)
    dropped = _columns_to_drop(job, opts, rows, stats)
    kept = [c for c in job.cols if c not in dropped]
    scope = [c for c in kept if opts.columns is None or c.name in opts.columns]
    needy = [c for c in kept if stats[job.cols.index(c)].get("null_like")]  # rewriting costs: only these
    stages: dict[str, list[Stage]] = {c.name: [s] for c in needy if (s := _null_stage(c)) is not None}
    fills: dict[str, Any] = {}
    if opts.strategy == "fill":
        job.report(0.3, "computing fill values")
        fills = _fill_values(job, opts, [c for c in scope if _nulls(stats[job.cols.index(c)])])
        for c in scope:
            if c.name in fills:
                stages.setdefault(c.name, []).append(_fill_stage(c, fills[c.name]))
    select = f"SELECT {', '.join(c.ident for c in kept)} FROM ({_layered(job.src, stages)})"
    if opts.strategy == "drop_rows" and scope:
        select += " WHERE " + " AND ".join(f"{c.ident} IS NOT NULL" for c in scope)
    job.report(0.5, "writing")
    rows_out = write_parquet(job.con, select, job.out)
    columns = _null_columns(job, rows, stats, fills)
    return {
        "rows_in": rows,
        "rows_out": rows_out,
        "rows_dropped": rows - rows_out,
        "null_like_normalised": sum(int(s.get("null_like") or 0) for s in stats.values()),
        "values_filled": sum(v.get("filled", 0) for v in columns.values()),
        "columns_dropped": [{"column": c.name, "null_share": columns[c.name]["null_share"]} for c in dropped],
        "columns": columns,
    } | ({"missing_columns": _missing(job.cols, opts.columns)} if opts.columns is not None else {})


def _null_columns(job: _Job, rows: int, stats: dict[int, dict[str, Any]], fills: dict[str, Any]) -> dict[str, Any]:
    """Per column with nulls: SQL nulls, null-likes (with the commonest spellings), fills."""
    columns: dict[str, Any] = {}
    for i, c in enumerate(job.cols):
        s = stats[i]
        if not _nulls(s):
            continue
        entry: dict[str, Any] = {"sql_nulls": s["sql_nulls"], "null_like": s.get("null_like", 0)}
        entry |= {"nulls": _nulls(s), "null_share": _share(_nulls(s), rows)}
        if s.get("values"):
            entry["null_like_values"] = [clip(v) for v in s["values"]]
        if c.name in fills:
            entry |= {"filled": _nulls(s), "fill_value": fills[c.name]}
        columns[c.name] = entry
    return columns
