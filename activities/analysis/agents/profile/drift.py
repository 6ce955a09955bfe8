"""The ``drift-detector`` agent: schema and distribution drift between two files; writes ``drift.json``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import duckdb

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.common import jsonable
from activities.analysis.agents.params import parse_params
from activities.analysis.agents.profile.common import SUMMARY_VALUE_CHARS, _clip, _num, _share, _write_json
from activities.analysis.agents.profile.params import DriftDetectorParams
from activities.analysis.agents.profile.patterns import NULL_LIKE
from activities.analysis.agents.profile.sql import (
    _NUMERIC_KINDS,
    _TEMPORAL_KINDS,
    _aggregate,
    _Col,
    _describe,
    _one,
    _source,
    _sql_list,
    _trimmed,
)
from conveyor.errors import BadInput

#: PSI floors for the drift levels low, medium and high.
DRIFT_THRESHOLDS: dict[str, float] = {"low": 0.1, "medium": 0.15, "high": 0.25}
DRIFT_LEVELS: tuple[str, ...] = ("none", "low", "medium", "high")
PSI_EPSILON = 1e-4


def _level(psi: float) -> str:
    level = "none"
    for name, floor in DRIFT_THRESHOLDS.items():
        if psi >= floor:
            level = name
    return level


def _max_level(*levels: str) -> str:
    return max(levels, key=DRIFT_LEVELS.index)


def _psi(p: Sequence[float], q: Sequence[float]) -> float:
    """Population stability index of distribution ``q`` against baseline ``p`` (empty bins floored)."""
    total = 0.0
    for a, b in zip(p, q, strict=True):
        a, b = max(a, PSI_EPSILON), max(b, PSI_EPSILON)
        total += (b - a) * math.log(b / a)
    return total


def _js(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1])."""

    def kl(x: Sequence[float], m: Sequence[float]) -> float:
        return sum(a * math.log2(a / b) for a, b in zip(x, m, strict=True) if a > 0)

    mid = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    return max(0.0, 0.5 * kl(p, mid) + 0.5 * kl(q, mid))


def _proportions(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _schema_drift(cols_a: Sequence[_Col], cols_b: Sequence[_Col]) -> dict[str, Any]:
    by_a = {c.name: c for c in cols_a}
    by_b = {c.name: c for c in cols_b}
    changed = [
        {
            "column": c.name,
            "from": c.storage,
            "to": by_b[c.name].storage,
            "compatible": _compatible(c.kind, by_b[c.name].kind),
        }
        for c in cols_a
        if c.name in by_b and c.kind != by_b[c.name].kind
    ]
    return {
        "added": [c.name for c in cols_b if c.name not in by_a],
        "removed": [c.name for c in cols_a if c.name not in by_b],
        "type_changed": changed,
    }


def _compatible(kind_a: str, kind_b: str) -> bool:
    return {kind_a, kind_b} <= _NUMERIC_KINDS or {kind_a, kind_b} <= _TEMPORAL_KINDS


def _num_expr(col: _Col) -> str:
    if col.kind in _TEMPORAL_KINDS:
        return f"CAST(epoch({col.ident}) AS DOUBLE)"
    return f"CAST({col.ident} AS DOUBLE)"


def _cat_expr(col: _Col) -> str:
    v = f"CAST({col.ident} AS VARCHAR)"
    if col.kind == "text":
        return f"(CASE WHEN lower({_trimmed(col.ident)}) IN {_sql_list(NULL_LIKE)} THEN NULL ELSE {v} END)"
    return v


def _count_rows(con: duckdb.DuckDBPyConnection, src: str) -> int:
    return int(_one(con, f"SELECT count(*) FROM {src}")[0])


def _bin_edges(
    con: duckdb.DuckDBPyConnection, src: str, pairs: Sequence[tuple[_Col, _Col]], bins: int
) -> dict[str, list[float]]:
    """Distinct quantile edges of each numeric column in the baseline (one query)."""
    qs = ", ".join(str(k / bins) for k in range(1, bins))
    exprs = []
    for i, (col, _) in enumerate(pairs):
        x = _num_expr(col)
        exprs.append((str(i), f"quantile_disc({x}, [{qs}]) FILTER (WHERE isfinite({x}))"))
    raw = _aggregate(con, src, exprs)
    return {col.name: sorted({float(e) for e in raw[str(i)] or []}) for i, (col, _) in enumerate(pairs)}


def _binned(
    con: duckdb.DuckDBPyConnection, src: str, cols: Sequence[_Col], edges: dict[str, list[float]]
) -> list[dict[str, Any]]:
    """Per column: non-null count, mean, stddev and counts per bin (cumulative counts differenced)."""
    exprs: list[tuple[str, str]] = []
    for i, col in enumerate(cols):
        x = _num_expr(col)
        fin = f"FILTER (WHERE isfinite({x}))"
        exprs += [
            (f"{i}.count", f"count({x}) {fin}"),
            (f"{i}.nulls", f"count(*) - count({col.ident})"),
            (f"{i}.mean", f"avg({x}) {fin}"),
            (f"{i}.stddev", f"stddev_samp({x}) {fin}"),
        ]
        exprs += [(f"{i}.le{j}", f"count_if({x} <= CAST({e!r} AS DOUBLE))") for j, e in enumerate(edges[col.name])]
    raw = _aggregate(con, src, exprs)
    out: list[dict[str, Any]] = []
    for i, col in enumerate(cols):
        total = int(raw[f"{i}.count"])
        cumulative = [int(raw[f"{i}.le{j}"]) for j in range(len(edges[col.name]))] + [total]
        counts = [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]
        out.append({**{k: raw[f"{i}.{k}"] for k in ("count", "nulls", "mean", "stddev")}, "bins": counts})
    return out


def _ks(con: duckdb.DuckDBPyConnection, src_a: str, src_b: str, col_a: _Col, col_b: _Col) -> float | None:
    """Exact two-sample Kolmogorov-Smirnov statistic (max CDF distance)."""
    xa, xb = _num_expr(col_a), _num_expr(col_b)
    sql = f"""
    WITH a AS (SELECT {xa} AS v, count(*) AS n FROM {src_a} WHERE isfinite({xa}) GROUP BY ALL),
    b AS (SELECT {xb} AS v, count(*) AS n FROM {src_b} WHERE isfinite({xb}) GROUP BY ALL),
    ta AS (SELECT sum(n) AS t FROM a), tb AS (SELECT sum(n) AS t FROM b),
    j AS (SELECT coalesce(a.v, b.v) AS v, coalesce(a.n, 0) AS na, coalesce(b.n, 0) AS nb
          FROM a FULL OUTER JOIN b ON a.v = b.v)
    SELECT max(abs(ca / (SELECT t FROM ta) - cb / (SELECT t FROM tb))) FROM (
        SELECT sum(na) OVER w AS ca, sum(nb) OVER w AS cb FROM j WINDOW w AS (ORDER BY v)
    )"""
    return _num(_one(con, sql)[0])


def _numeric_drift(
    base: dict[str, Any], cur: dict[str, Any], ks: float | None, rows: tuple[int, int]
) -> dict[str, Any]:
    p, q = _proportions(base["bins"]), _proportions(cur["bins"])
    psi = _psi(p, q) if base["count"] and cur["count"] else 0.0
    mean_a, mean_b, std_a = _num(base["mean"]), _num(cur["mean"]), _num(base["stddev"])
    shift = None if mean_a is None or mean_b is None else mean_b - mean_a
    return {
        "method": "numeric",
        "psi": round(psi, 6),
        "ks_statistic": ks,
        "js_divergence": round(_js(p, q), 6) if base["count"] and cur["count"] else None,
        "bins": len(p),
        "mean": [mean_a, mean_b],
        "stddev": [std_a, _num(cur["stddev"])],
        "mean_shift": _num(shift),
        "mean_shift_in_stddevs": _num(shift / std_a) if shift is not None and std_a else None,
        "null_rate": [_share(int(base["nulls"]), rows[0]), _share(int(cur["nulls"]), rows[1])],
        "level": _level(psi),
    }


def _categorical_drift(
    con: duckdb.DuckDBPyConnection,
    srcs: tuple[str, str],
    cols: tuple[_Col, _Col],
    rows: tuple[int, int],
    k: int,
) -> dict[str, Any]:
    """PSI and Jensen-Shannon over the baseline's top ``k`` categories plus "other"; new/missing ones."""
    sql = f"""
    WITH a AS (SELECT v, count(*) AS n FROM (SELECT {_cat_expr(cols[0])} AS v FROM {srcs[0]})
               WHERE v IS NOT NULL GROUP BY v),
    b AS (SELECT v, count(*) AS n FROM (SELECT {_cat_expr(cols[1])} AS v FROM {srcs[1]})
          WHERE v IS NOT NULL GROUP BY v),
    j AS MATERIALIZED (SELECT coalesce(a.v, b.v) AS v, coalesce(a.n, 0) AS na, coalesce(b.n, 0) AS nb
          FROM a FULL OUTER JOIN b ON a.v = b.v)
    SELECT coalesce(sum(na), 0), coalesce(sum(nb), 0),
        count(*) FILTER (WHERE na = 0), coalesce(sum(nb) FILTER (WHERE na = 0), 0),
        count(*) FILTER (WHERE nb = 0), coalesce(sum(na) FILTER (WHERE nb = 0), 0),
        (SELECT list([v, na::VARCHAR, nb::VARCHAR] ORDER BY na DESC, v)
            FROM (SELECT * FROM j WHERE na > 0 ORDER BY na DESC, v LIMIT {k})),
        (SELECT list(v ORDER BY nb DESC, v) FROM (SELECT * FROM j WHERE na = 0 ORDER BY nb DESC, v LIMIT 10)),
        (SELECT list(v ORDER BY na DESC, v) FROM (SELECT * FROM j WHERE nb = 0 ORDER BY na DESC, v LIMIT 10))
    FROM j"""
    total_a, total_b, new_n, new_rows, gone_n, gone_rows, top, new_ex, gone_ex = _one(con, sql)
    top = top or []
    counts_a = [int(t[1]) for t in top] + [int(total_a) - sum(int(t[1]) for t in top)]
    counts_b = [int(t[2]) for t in top] + [int(total_b) - sum(int(t[2]) for t in top)]
    p, q = _proportions(counts_a), _proportions(counts_b)
    psi = _psi(p, q) if total_a and total_b else 0.0
    return {
        "method": "categorical",
        "psi": round(psi, 6),
        "js_divergence": round(_js(p, q), 6) if total_a and total_b else None,
        "categories": [
            {"value": _clip(t[0], SUMMARY_VALUE_CHARS), "share": [round(pa, 4), round(qb, 4)]}
            for t, pa, qb in zip(top, p, q, strict=False)
        ]
        + [{"value": "(other)", "share": [round(p[-1], 4), round(q[-1], 4)]}],
        "new_categories": {"count": int(new_n), "rows": int(new_rows), "examples": new_ex or []},
        "missing_categories": {"count": int(gone_n), "rows": int(gone_rows), "examples": gone_ex or []},
        "null_rate": [_share(rows[0] - int(total_a), rows[0]), _share(rows[1] - int(total_b), rows[1])],
        "level": _level(psi),
    }


def _apply_type_change(result: dict[str, Any], change: dict[str, Any] | None) -> dict[str, Any]:
    if change is not None:
        result["type_changed"] = {"from": change["from"], "to": change["to"]}
        result["level"] = _max_level(result["level"], "medium" if change["compatible"] else "high")
    return result


def _overall(columns: dict[str, dict[str, Any]], schema: dict[str, Any]) -> str:
    level = _max_level("none", *(c["level"] for c in columns.values()))
    if schema["removed"] or any(not c["compatible"] for c in schema["type_changed"]):
        level = "high"
    if schema["added"]:
        level = _max_level(level, "low")
    return level


def drift_detector(ctx: AgentContext) -> AgentResult:
    """Compare the distributions and schema of the first two input files; writes ``drift.json``."""
    bins = parse_params("drift-detector", DriftDetectorParams, ctx.params).bins
    if len(ctx.inputs) < 2:
        raise BadInput(
            f"drift-detector compares two files, but {len(ctx.inputs)} was given; upload a second file",
            code="DRIFT_NEEDS_TWO_FILES",
        )
    con, (ds_a, ds_b) = ctx.con, ctx.inputs[:2]
    srcs = (_source(ds_a), _source(ds_b))
    ctx.report(0.0, "reading schemas")
    cols_a, cols_b = _describe(con, srcs[0]), _describe(con, srcs[1])
    schema = _schema_drift(cols_a, cols_b)
    changes = {c["column"]: c for c in schema["type_changed"]}
    by_b = {c.name: c for c in cols_b}
    pairs = [(c, by_b[c.name]) for c in cols_a if c.name in by_b]
    numeric = [(a, b) for a, b in pairs if _compatible(a.kind, b.kind) and a.kind in _NUMERIC_KINDS | _TEMPORAL_KINDS]
    rows = (_count_rows(con, srcs[0]), _count_rows(con, srcs[1]))
    ctx.report(0.05, "binning numeric columns")
    edges = _bin_edges(con, srcs[0], numeric, bins)
    base = _binned(con, srcs[0], [a for a, _ in numeric], edges)
    cur = _binned(con, srcs[1], [b for _, b in numeric], edges)
    stats = {a.name: (s, t) for (a, _), s, t in zip(numeric, base, cur, strict=True)}
    columns: dict[str, dict[str, Any]] = {}
    for i, (a, b) in enumerate(pairs):
        ctx.report(0.1 + 0.85 * i / max(len(pairs), 1), f"comparing column {a.name!r}")
        if a.name in stats:
            ks = _ks(con, srcs[0], srcs[1], a, b)
            result = _numeric_drift(*stats[a.name], ks, rows)
            if a.kind in _TEMPORAL_KINDS:
                result["unit"] = "seconds since epoch"
        else:
            result = _categorical_drift(con, srcs, (a, b), rows, bins)
        columns[a.name] = _apply_type_change(result, changes.get(a.name))
    levels = [c["level"] for c in columns.values()]
    payload = jsonable(
        {
            "baseline": ds_a.name,
            "current": ds_b.name,
            "rows": list(rows),
            "bins": bins,
            "thresholds": {"psi": DRIFT_THRESHOLDS},
            "overall_level": _overall(columns, schema),
            "level_counts": {lvl: levels.count(lvl) for lvl in DRIFT_LEVELS},
            "schema": schema,
            "columns": columns,
        }
    )
    path = _write_json(ctx.workdir, "drift.json", payload)
    ctx.report(1.0, "drift written")
    return AgentResult(summary=payload, files={"drift.json": path})
