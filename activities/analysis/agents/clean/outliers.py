"""The ``outlier-flagger`` agent: numeric outliers by IQR or z-score, flagged or dropped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.clean.numbers import _number_stages
from activities.analysis.agents.clean.params import OutlierFlaggerParams, _missing, check_columns, known_columns
from activities.analysis.agents.clean.running import _Job, _run, _schemas, _select_with
from activities.analysis.agents.clean.sampling import _numeric_text
from activities.analysis.agents.clean.sql import Col, _aggregate, _by_column, _nest, clean_text, write_parquet
from activities.analysis.agents.clean.summaries import _num
from activities.analysis.agents.params import parse_params


@dataclass(frozen=True)
class _OutlierOptions:
    columns: list[str] | None
    method: str
    k: float
    threshold: float
    action: str


def outlier_flagger(ctx: AgentContext) -> AgentResult:
    """Flag (or drop) numeric outliers by IQR or z-score."""
    schemas = _schemas(ctx)
    p = parse_params("outlier-flagger", OutlierFlaggerParams, ctx.params)
    check_columns("outlier-flagger", "columns", p.columns or (), known_columns(schemas))
    opts = _OutlierOptions(p.columns, p.method, p.k, p.threshold, p.action)
    echo: dict[str, Any] = {"columns": opts.columns, "method": opts.method, "action": opts.action}
    echo |= {"k": opts.k} if opts.method == "iqr" else {"threshold": opts.threshold}
    return _run(ctx, "outlier-flagger", schemas, echo, lambda job: _outlier_dataset(job, opts))


def _id_like(name: str) -> bool:
    low = name.lower()
    return low in ("id", "uuid", "key") or low.endswith(("_id", " id", "-id"))


def _outlier_targets(job: _Job, opts: _OutlierOptions) -> tuple[list[tuple[Col, str]], dict[str, str]]:
    """The checked columns with their DOUBLE expression, and why named columns were skipped."""
    if opts.columns is not None:
        chosen = [c for c in job.cols if c.name in opts.columns]
    else:
        chosen = [c for c in job.cols if not _id_like(c.name) and not c.name.endswith("_is_outlier")]
    styles = _numeric_text(job, [c for c in chosen if c.is_text])
    targets: list[tuple[Col, str]] = []
    notes: dict[str, str] = {}
    for c in chosen:
        if c.is_numeric:
            targets.append((c, f"CAST({c.ident} AS DOUBLE)"))
        elif c.name in styles:
            targets.append(
                (c, f"CAST({_nest(c.ident, [clean_text, *_number_stages(styles[c.name], False)])} AS DOUBLE)")
            )
        elif opts.columns is not None:
            notes[c.name] = f"not numeric ({c.type})"
    return targets, notes


def _bounds(s: dict[str, Any], opts: _OutlierOptions) -> dict[str, Any]:
    if opts.method == "iqr":
        q = s.get("q") or [None, None]
        if q[0] is None:
            return {"lower": None, "upper": None}
        q1, q3 = float(q[0]), float(q[1])
        iqr = q3 - q1
        return {"q1": q1, "q3": q3, "iqr": iqr, "lower": q1 - opts.k * iqr, "upper": q3 + opts.k * iqr}
    mean, std = s.get("mean"), s.get("std")
    if mean is None or not std:
        return {"mean": mean, "stddev": std, "lower": None, "upper": None}
    m, sd = float(mean), float(std)
    return {"mean": m, "stddev": sd, "lower": m - opts.threshold * sd, "upper": m + opts.threshold * sd}


def _outlier_conditions(x: str, b: dict[str, Any]) -> tuple[str, str]:
    """SQL conditions for a value below and above the bounds (infinities always count, NaN never)."""
    low = f"{x} < CAST({b['lower']!r} AS DOUBLE)" if b["lower"] is not None else f"{x} = '-inf'::DOUBLE"
    high = f"{x} > CAST({b['upper']!r} AS DOUBLE)" if b["upper"] is not None else f"{x} = 'inf'::DOUBLE"
    return low, f"NOT isnan({x}) AND {high}"


def _outlier_stats(job: _Job, framed: str, n: int, opts: _OutlierOptions) -> dict[int, dict[str, Any]]:
    """Per checked column (``__x{i}`` of ``framed``): finite values and the quartiles or mean/stddev."""
    exprs: dict[str, str] = {}
    for i in range(n):
        x, finite = f"__x{i}", f"FILTER (WHERE isfinite(__x{i}))"
        exprs[f"{i}.n"] = f"count({x}) {finite}"
        if opts.method == "iqr":
            exprs[f"{i}.q"] = f"quantile_cont({x}, [0.25, 0.75]) {finite}"
        else:
            exprs |= {f"{i}.mean": f"avg({x}) {finite}", f"{i}.std": f"stddev_samp({x}) {finite}"}
    return _by_column(_aggregate(job.con, framed, exprs))


def _outlier_dataset(job: _Job, opts: _OutlierOptions) -> dict[str, Any]:
    job.report(0.0, "choosing columns")
    targets, notes = _outlier_targets(job, opts)
    values = ", ".join(f"{x} AS __x{i}" for i, (_, x) in enumerate(targets))
    framed = f"(SELECT *, {values} FROM {job.src})" if targets else job.src
    job.report(0.1, "computing bounds")
    stats = _outlier_stats(job, framed, len(targets), opts)
    bounds = [_bounds(stats[i], opts) for i in range(len(targets))]
    conds = [_outlier_conditions(f"__x{i}", b) for i, b in enumerate(bounds)]
    flags = {
        f"{c.name}_is_outlier": f"coalesce(({lo}) OR ({hi}), false)"
        for (c, _), (lo, hi) in zip(targets, conds, strict=True)
    }
    job.report(0.4, "writing")
    if opts.action == "drop":
        where = " OR ".join(f"({f})" for f in flags.values()) or "false"
        select = f"SELECT {', '.join(c.ident for c in job.cols)} FROM {framed} WHERE NOT ({where})"
    else:
        select = f"SELECT {', '.join(_select_with(job.cols, flags))} FROM {framed}"
    rows_out = write_parquet(job.con, select, job.out)
    job.report(0.7, "counting outliers")
    counts = _outlier_counts(job, framed, conds)
    columns = {
        c.name: {
            "method": opts.method,
            "values": int(stats[i]["n"]),
            **{k: _num(v) for k, v in bounds[i].items()},
            **counts[i],
        }
        for i, (c, _) in enumerate(targets)
    }
    rows_in = int(counts[-1]["rows"])
    out: dict[str, Any] = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_flagged": int(counts[-1]["flagged"]),
    }
    out["columns"] = columns
    if opts.action == "drop":
        out["rows_dropped"] = rows_in - rows_out
    else:
        out["columns_added"] = list(flags)
    if notes:
        out["skipped"] = notes
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _outlier_counts(job: _Job, framed: str, conds: Sequence[tuple[str, str]]) -> dict[int, dict[str, Any]]:
    """Rows and flagged rows (key -1), and per column values below/above and the flagged range."""
    any_flag = " OR ".join(f"({lo}) OR ({hi})" for lo, hi in conds) or "false"
    exprs = {"-1.rows": "count(*)", "-1.flagged": f"count(*) FILTER (WHERE {any_flag})"}
    for i, (lo, hi) in enumerate(conds):
        exprs |= {
            f"{i}.below": f"count(*) FILTER (WHERE {lo})",
            f"{i}.above": f"count(*) FILTER (WHERE {hi})",
        }
        exprs |= {f"{i}.min_flagged": f"min(__x{i}) FILTER (WHERE ({lo}) OR ({hi}))"}
        exprs |= {f"{i}.max_flagged": f"max(__x{i}) FILTER (WHERE ({lo}) OR ({hi}))"}
    stats = _by_column(_aggregate(job.con, framed, exprs))
    for i in range(len(conds)):
        s = stats[i]
        s["outliers"] = int(s["below"]) + int(s["above"])
        s["min_flagged"], s["max_flagged"] = _num(s["min_flagged"]), _num(s["max_flagged"])
    return stats
