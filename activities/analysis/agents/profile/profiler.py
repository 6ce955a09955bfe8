"""The ``unified-profiler`` agent: assembles column profiles from the aggregates and writes ``profile.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import duckdb

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.common import jsonable
from activities.analysis.agents.common import unique_names as _unique_names
from activities.analysis.agents.params import parse_params
from activities.analysis.agents.profile.column_stats import (
    QUANTILES,
    _base_stats,
    _duplicate_rows,
    _parsed_exprs,
    _plain_value_stats,
    _text_value_stats,
)
from activities.analysis.agents.profile.common import (
    SUMMARY_VALUE_CHARS,
    Report,
    _clip,
    _num,
    _scaled,
    _share,
    _write_json,
)
from activities.analysis.agents.profile.params import UnifiedProfilerParams
from activities.analysis.agents.profile.patterns import PATTERNS
from activities.analysis.agents.profile.sql import (
    _NUMERIC_KINDS,
    _TEMPORAL_KINDS,
    _aggregate,
    _by_column,
    _Col,
    _describe,
    _source,
    _type_name,
)

#: Share of non-null-like values that must parse for a text column to be reported as the parsed type.
INFER_THRESHOLD = 0.8
SUMMARY_TOP_VALUES = 5
FILE_VALUE_CHARS = 200
SUMMARY_MAX_BYTES = 512 * 1024


def _infer_text(stats: dict[str, Any]) -> tuple[str, float | None]:
    """Inferred type and parse rate of a text column from its parse counts."""
    real = int(stats["real_count"])
    if real == 0:
        return "string", None
    rate = {k: int(stats[f"{k}_count"]) / real for k in ("bool", "integer", "number", "date", "datetime")}
    if rate["bool"] >= INFER_THRESHOLD:
        return "boolean", rate["bool"]
    if rate["number"] >= INFER_THRESHOLD:
        if int(stats["leading_zero_count"]) > 0 and rate["integer"] == rate["number"]:
            return "string", None  # codes such as zip "02134": keep as text
        return ("integer" if rate["integer"] == rate["number"] else "float"), rate["number"]
    if rate["date"] >= INFER_THRESHOLD:
        return "date", rate["date"]
    if rate["date"] + rate["datetime"] >= INFER_THRESHOLD:
        return "datetime", rate["date"] + rate["datetime"]
    return "string", None


def _numeric_fields(raw: dict[str, Any], as_int: bool) -> dict[str, Any]:
    def number(value: Any) -> Any:
        if value is None:
            return None
        if as_int and isinstance(value, int | float | Decimal) and float(value).is_integer():
            return int(value)
        return _num(value)

    quantiles = raw.get("quantiles") or [None] * len(QUANTILES)
    out: dict[str, Any] = {
        "min": number(raw.get("min")),
        "max": number(raw.get("max")),
        "mean": _num(raw.get("mean")),
        "stddev": _num(raw.get("stddev")),
        "quantiles": {key: _num(q) for (key, _), q in zip(QUANTILES, quantiles, strict=True)},
    }
    if raw.get("non_finite"):
        out["non_finite_count"] = int(raw["non_finite"])
    return out


def _top_value(value: Any, chars: int) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": a value the user should see, not a null
    return _clip(jsonable(value), chars)


def _top_list(top: Any, chars: int) -> list[dict[str, Any]]:
    return [{"value": _top_value(t["value"], chars), "count": int(t["count"])} for t in (top or [])]


def _text_fields(stats: dict[str, Any]) -> dict[str, Any]:
    real = int(stats["real_count"])
    null_like = {_clip(str(t["value"]), 40): int(t["count"]) for t in (stats["null_like_values"] or [])[:10]}
    parse = {k: _share(int(stats[f"{k}_count"]), real) for k in ("integer", "number", "bool", "date", "datetime")}
    out: dict[str, Any] = {
        "null_like_values": null_like,
        "length": {
            "avg": _num(int(stats["len_total"]) / real if real else None, 2),
            "min": stats["len_min"],
            "max": stats["len_max"],
        },
        "padded_count": int(stats["padded_count"]),
        "parse_rates": {("boolean" if k == "bool" else k): r for k, r in parse.items() if r > 0},
        "patterns": {p: s for p in PATTERNS if (s := _share(int(stats[p]), real)) > 0},
    }
    if int(stats["leading_zero_count"]):
        out["leading_zero_count"] = int(stats["leading_zero_count"])
    return out


def _column_profile(col: _Col, rows: int, base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Assemble one column's profile from the whole-table and per-value aggregates."""
    non_null = int(base["non_null"])
    null_like = int(values.get("null_like_count", 0))
    inferred, parse_rate = (_type_name(col.kind), None)
    if col.kind == "text":
        inferred, parse_rate = _infer_text(values)
    prof: dict[str, Any] = {
        "storage_type": col.storage,
        "inferred_type": inferred,
        "parse_rate": None if parse_rate is None else round(parse_rate, 4),
        "row_count": rows,
        "non_null_count": non_null - null_like,
        "null_count": rows - non_null,
        "null_like_count": null_like,
        "null_rate": _share(rows - non_null + null_like, rows),
        "unique_count": int(values["unique_count"]),
        "top_values": _top_list(values["top_values"], FILE_VALUE_CHARS),
    }
    if col.kind in _NUMERIC_KINDS:
        prof.update(_numeric_fields(base, col.kind == "integer"))
    elif col.kind in _TEMPORAL_KINDS:
        prof.update({"min": base["min"], "max": base["max"]})
    elif col.kind == "boolean":
        prof.update({"true_count": int(base["true_count"]), "false_count": non_null - int(base["true_count"])})
    elif col.kind == "text":
        prof.update(_text_fields(values))
        if inferred == "boolean":
            true_count = int(values["true_count"])
            prof.update({"true_count": true_count, "false_count": int(values["bool_count"]) - true_count})
    return prof


def _add_parsed_stats(
    con: duckdb.DuckDBPyConnection, src: str, cols: Sequence[_Col], columns: dict[str, dict[str, Any]]
) -> None:
    """Statistics on parsed values for text columns inferred as numbers or dates (one query)."""
    exprs: list[tuple[str, str]] = []
    for i, col in enumerate(cols):
        inferred = columns[col.name]["inferred_type"]
        if col.kind == "text" and inferred in _NUMERIC_KINDS | _TEMPORAL_KINDS:
            exprs += _parsed_exprs(i, col, inferred)
    for idx, raw in _by_column(_aggregate(con, src, exprs)).items():
        prof = columns[cols[idx].name]
        if prof["inferred_type"] in _NUMERIC_KINDS:
            prof.update(_numeric_fields(raw, prof["inferred_type"] == "integer"))
        else:
            prof.update({"min": raw["min"], "max": raw["max"]})


def _profile_dataset(con: duckdb.DuckDBPyConnection, ds: Dataset, top_n: int, report: Report) -> dict[str, Any]:
    """The profile of one dataset: table counts and every column's profile."""
    src = _source(ds)
    cols = _describe(con, src)
    report(0.0, f"{ds.name}: table statistics")
    rows, base = _base_stats(con, src, cols)
    columns: dict[str, dict[str, Any]] = {}
    for i, col in enumerate(cols):
        report(0.1 + 0.8 * i / max(len(cols), 1), f"{ds.name}: column {col.name!r}")
        if col.kind == "text":
            values = _text_value_stats(con, src, col, top_n)
        else:
            values = _plain_value_stats(con, src, col, top_n)
        columns[col.name] = _column_profile(col, rows, base[i], values)
    _add_parsed_stats(con, src, cols, columns)
    report(0.9, f"{ds.name}: duplicate rows")
    duplicates = _duplicate_rows(con, src, rows)
    return {
        "rows": rows,
        "column_count": len(cols),
        "duplicate_rows": duplicates,
        "duplicate_rate": _share(duplicates, rows),
        "columns": columns,
    }


def _profile_all(
    ctx: AgentContext, datasets: Sequence[Dataset], top_n: int, start: float, end: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    step = (end - start) / max(len(datasets), 1)
    for k, (name, ds) in enumerate(zip(_unique_names(datasets), datasets, strict=True)):
        report = _scaled(ctx.report, start + k * step, start + (k + 1) * step)
        out[name] = _profile_dataset(ctx.con, ds, top_n, report)
    return out


def _compact(profile: dict[str, Any]) -> dict[str, Any]:
    """The summary form of a profile: at most 5 top values and short strings; smaller if still large."""
    datasets: dict[str, Any] = {}
    for name, ds in profile["datasets"].items():
        columns = {
            col: {
                **prof,
                "top_values": _top_list(prof["top_values"][:SUMMARY_TOP_VALUES], SUMMARY_VALUE_CHARS),
            }
            for col, prof in ds["columns"].items()
        }
        datasets[name] = {**ds, "columns": columns}
    summary = {**profile, "datasets": datasets}
    if len(json.dumps(summary)) <= SUMMARY_MAX_BYTES:
        return summary
    for ds in datasets.values():  # very wide tables: keep the counts, drop the value lists
        for prof in ds["columns"].values():
            prof.pop("top_values", None)
            prof.pop("null_like_values", None)
    summary["truncated"] = True
    return summary


def unified_profiler(ctx: AgentContext) -> AgentResult:
    """Profile every column of each current dataset; writes ``profile.json``."""
    top_n = parse_params("unified-profiler", UnifiedProfilerParams, ctx.params).top_n
    datasets = _profile_all(ctx, ctx.current, top_n, 0.0, 0.95)
    profile = jsonable({"top_n": top_n, "datasets": datasets})
    path = _write_json(ctx.workdir, "profile.json", profile)
    ctx.report(1.0, "profile written")
    return AgentResult(summary=_compact(profile), files={"profile.json": path})
