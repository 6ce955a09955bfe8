"""The ``duplicate-resolver`` agent: exact, then normalised (near) duplicate rows removed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.clean.params import DuplicateResolverParams, _missing, check_columns, known_columns
from activities.analysis.agents.clean.running import _Job, _run, _schemas
from activities.analysis.agents.clean.sql import _row, _rx, _temp_table, write_parquet
from activities.analysis.agents.clean.standardize import _collapse_ws
from activities.analysis.agents.clean.summaries import clip
from activities.analysis.agents.params import parse_params
from activities.analysis.sql import qstr

_PUNCT = r"\p{P}+"


@dataclass(frozen=True)
class _DupOptions:
    keys: list[str] | None
    keep: str
    near: bool


def duplicate_resolver(ctx: AgentContext) -> AgentResult:
    """Remove exact duplicate rows, then rows equal after normalising text (or on ``key_columns``)."""
    schemas = _schemas(ctx)
    p = parse_params("duplicate-resolver", DuplicateResolverParams, ctx.params)
    check_columns("duplicate-resolver", "key_columns", p.key_columns or (), known_columns(schemas))
    keys, keep = p.key_columns, p.keep
    opts = _DupOptions(keys, keep, p.near)
    echo = {"key_columns": keys, "keep": keep, "near": opts.near}
    return _run(ctx, "duplicate-resolver", schemas, echo, lambda job: _dup_dataset(job, opts))


def _dedupe_key(e: str) -> str:
    s = f"lower(strip_accents({e}))"
    s = f"CASE WHEN {_rx(s, _PUNCT)} THEN regexp_replace({s}, {qstr(_PUNCT)}, '', 'g') ELSE {s} END"
    return f"nullif({_collapse_ws(s)}, '')"


def _dup_keys(job: _Job, opts: _DupOptions) -> list[str]:
    """Grouping expressions: the normalised key columns, or every column as is when exact-only."""
    key_cols = [c for c in job.cols if c.name in opts.keys] if opts.keys else job.cols
    if not opts.near or not key_cols:
        return [c.ident for c in job.cols]
    return [_dedupe_key(c.ident) if c.is_text else c.ident for c in key_cols]


def _row_numbered(job: _Job) -> tuple[str, str]:
    """The input with its row number, and that number's column name."""
    if any(c.name == "file_row_number" for c in job.cols):
        return f"(SELECT *, row_number() OVER () - 1 AS __clean_rn FROM {job.src})", "__clean_rn"
    return f"read_parquet({qstr(str(job.path))}, file_row_number = true)", "file_row_number"


def _dup_dataset(job: _Job, opts: _DupOptions) -> dict[str, Any]:
    src, rn = _row_numbered(job)
    keys = _dup_keys(job, opts)
    cols = ", ".join(c.ident for c in job.cols)
    nulls = " + ".join(f"({c.ident} IS NULL)::BIGINT" for c in job.cols)
    keyed = ", ".join(f"{k} AS __k{j}" for j, k in enumerate(keys))
    inner = f"SELECT {rn} AS __rn, hash({cols}) AS __h, {nulls} AS __z, {keyed} FROM {src}"
    keeper = "min(__rn)" if opts.keep == "first" else "arg_min(__rn, __z * 4294967296 + __rn)"
    group = ", ".join(f"__k{j}" for j in range(len(keys)))
    groups = (
        f"SELECT {keeper} AS __keep, min(__rn) AS __first, max(__rn) AS __last, count(*) AS __n, "
        f"min(__h) <> max(__h) AS __near FROM ({inner}) GROUP BY {group}"
    )
    job.report(0.0, "grouping rows")
    with _temp_table(job.con, groups) as kept:
        rows, groups_left = (int(v) for v in _row(job.con, f"SELECT coalesce(sum(__n), 0), count(*) FROM {kept}"))
        distinct = groups_left
        if keys != [c.ident for c in job.cols]:
            job.report(0.3, "counting exact duplicates")
            distinct = int(_row(job.con, f"SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {job.src})")[0])
        job.report(0.5, "writing")
        keep = f"{rn} IN (SELECT __keep FROM {kept})"
        rows_out = write_parquet(job.con, f"SELECT {cols} FROM {src} WHERE {keep} ORDER BY {rn}", job.out)
        job.report(0.8, "sampling groups")
        samples = _dup_samples(job, kept, src, rn) if rows_out < rows else []
    out: dict[str, Any] = {"rows_in": rows, "rows_out": rows_out, "exact_duplicates_removed": rows - distinct}
    out |= {"near_duplicates_removed": distinct - groups_left, "keep": opts.keep, "sample_groups": samples}
    compared = opts.keys if opts.keys and opts.near else ("all columns, normalised" if opts.near else "all columns")
    out["compared_on"] = compared
    if opts.keys is not None:
        out["missing_columns"] = _missing(job.cols, opts.keys)
    return out


def _dup_samples(job: _Job, kept: str, src: str, rn: str) -> list[dict[str, Any]]:
    """Up to three groups (near-duplicate ones first): the kept row and up to two removed ones."""
    groups = job.con.execute(
        f"SELECT __keep, __first, __last, __n FROM {kept} WHERE __n > 1 ORDER BY __near DESC, __keep LIMIT 3"
    ).fetchall()
    wanted = sorted({int(r) for g in groups for r in g[:3]})
    if not wanted:
        return []
    cols = ", ".join(c.ident for c in job.cols)
    fetched = job.con.execute(f"SELECT {rn}, {cols} FROM {src} WHERE {rn} IN ({', '.join(map(str, wanted))})")
    rows = {int(r[0]): {c.name: clip(v) for c, v in zip(job.cols, r[1:], strict=True)} for r in fetched.fetchall()}
    out: list[dict[str, Any]] = []
    for keep, first, last, n in groups:
        removed = [rows[r] for r in dict.fromkeys((int(first), int(last))) if r != keep and r in rows]
        out.append({"rows": int(n), "kept": rows.get(int(keep)), "removed": removed})
    return out
