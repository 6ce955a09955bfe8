"""``golden-record-builder``: one record per matched cluster, each column picked by a survivorship rule."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.master.common import _drop, _one, _parquet, _present, _schema
from activities.analysis.agents.master.match_params import _match_params
from activities.analysis.agents.master.matching import _match
from activities.analysis.agents.master.params import GoldenRecordBuilderParams, _resolve_columns
from activities.analysis.agents.master.records import _MATCH_COLUMNS, _fresh_name, _union
from activities.analysis.agents.params import bad_param, parse_params
from activities.analysis.sql import qident, qstr

GOLDEN_AGENT = "golden-record-builder"

_GOLDEN_COLUMNS = ("cluster_id", "record_count", "sources")

_ORDERINGS = {
    "most_frequent": "f, len, sv",
    "most_complete": "filled, len, f, sv",
    "most_recent": "rec, f, len, sv",
    "source_priority": "-pr, rec, f, len, sv",
}
_DATE_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d %b %Y",
)
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


@dataclass(frozen=True)
class _GoldenParams:
    rules: dict[str, str]
    recency_column: str | None
    source_priority: list[str]


def _golden_params(params: GoldenRecordBuilderParams, columns: list[str]) -> _GoldenParams:
    """The rule of each column, with column names resolved (the model checked that each rule has its params)."""
    lookup = {c.lower(): c for c in columns}
    recency = params.recency_column
    recency_column = _resolve_columns(GOLDEN_AGENT, "recency_column", [recency], lookup)[0] if recency else None
    rules = dict.fromkeys(columns, params.default_rule())
    for name, rule in params.column_rules.items():
        (column,) = _resolve_columns(GOLDEN_AGENT, "column_rules", [name], lookup)
        rules[column] = rule
    return _GoldenParams(rules, recency_column, list(params.source_priority))


def _resolve_sources(names: list[str], sources: list[str]) -> list[str]:
    """Match ``source_priority`` names to the datasets (exact, case-insensitive, or without extension)."""
    resolved: list[str] = []
    for name in names:
        low = name.lower()
        hits = [s for s in sources if s == name] or [
            s for s in sources if low in (s.lower(), Path(s).stem.lower(), s.split("#")[0].lower())
        ]
        if not hits:
            raise bad_param(GOLDEN_AGENT, "source_priority", name, f"names no dataset (datasets: {', '.join(sources)})")
        resolved += [h for h in hits if h not in resolved]
    return resolved


def _is_matched(con: duckdb.DuckDBPyConnection, current: list[Dataset]) -> bool:
    if len(current) != 1:
        return False
    names = {c.lower() for c, _ in _schema(con, current[0].path)}
    return set(_MATCH_COLUMNS) <= names


def _recency_sql(column: str | None, typ: str) -> str:
    if column is None:
        return "CAST(NULL AS DOUBLE)"
    c = qident(column)
    upper = typ.upper()
    if upper.startswith(("DATE", "TIMESTAMP")):
        return f"epoch(CAST({c} AS TIMESTAMP))"
    if upper.startswith(_NUMERIC_TYPES):
        return f"CAST({c} AS DOUBLE)"
    formats = ", ".join(qstr(f) for f in _DATE_FORMATS)
    text = f"trim(CAST({c} AS VARCHAR))"
    return f"epoch(coalesce(TRY_CAST({text} AS TIMESTAMP), try_strptime({text}, [{formats}])))"


def _golden_value(column: str, typ: str) -> str:
    """A column as it enters survivorship: text trimmed, blank text as null."""
    c = qident(column)
    return f"nullif(trim({c}), '') AS {c}" if typ.upper() == "VARCHAR" else c


def _load_golden_base(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    schema: list[tuple[str, str]],
    gp: _GoldenParams,
    sources: list[str],
) -> dict[str, Any]:
    """``__mm_gbase``: the matched records with recency, source rank and filled-column count."""
    types = dict(schema)
    columns = list(gp.rules)
    ranks = " ".join(f"WHEN {qstr(s)} THEN {i}" for i, s in enumerate(sources))
    priority = f"CASE {qident('source')} {ranks} ELSE {len(sources)} END" if sources else "0"
    filled = " + ".join(f"CAST({_present(qident(c))} AS INTEGER)" for c in columns) or "0"
    recency = _recency_sql(gp.recency_column, types.get(gp.recency_column or "", "VARCHAR"))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __mm_gbase AS SELECT cluster_id, {qident('source')} AS __mm_source, "
        f"{recency} AS __mm_rec, {priority} AS __mm_prio, {filled} AS __mm_filled"
        + "".join(f", {_golden_value(c, types.get(c, ''))}" for c in columns)
        + f" FROM {_parquet(path)}"
    )
    if gp.recency_column is None:
        return {}
    present, parsed = _one(
        con,
        f"SELECT count(*) FILTER (WHERE {_present(qident(gp.recency_column))}), count(__mm_rec) FROM __mm_gbase",
    )
    if present and not parsed:
        raise bad_param(GOLDEN_AGENT, "recency_column", gp.recency_column, "names a column without parseable dates")
    return {"recency_values_unparsed": int(present) - int(parsed)}


def _golden_sql(columns: list[str], rules: dict[str, str], names: dict[str, str]) -> str:
    """Golden records: a single record's cluster keeps its values; larger ones pick each column by its rule.

    Per column of a multi-record cluster: its distinct values with their frequency, length, latest recency,
    best source rank and most filled record, then ``arg_max`` by the rule's ordering; ``__mm_nv<i>`` counts
    the distinct values (more than one is a resolved conflict).
    """
    ctes = [
        "size AS (SELECT cluster_id, count(*) AS n FROM __mm_gbase GROUP BY cluster_id)",
        "multi AS (SELECT b.* FROM __mm_gbase b JOIN size USING (cluster_id) WHERE size.n > 1)",
        "base AS (SELECT cluster_id, CAST(count(*) AS BIGINT) AS record_count, "
        "string_agg(DISTINCT __mm_source, '; ' ORDER BY __mm_source) AS sources "
        "FROM multi GROUP BY cluster_id)",
    ]
    picks = ["base.cluster_id", "base.record_count", "base.sources"]
    single = ["b.cluster_id", "CAST(1 AS BIGINT) AS record_count", "b.__mm_source AS sources"]
    joins: list[str] = []
    for i, col in enumerate(columns):
        c = qident(col)
        ctes.append(
            f"v{i} AS (SELECT cluster_id, {c} AS v, count(*) AS f, length(CAST({c} AS VARCHAR)) AS len, "
            f"CAST({c} AS VARCHAR) AS sv, coalesce(max(__mm_rec), -1e300) AS rec, min(__mm_prio) AS pr, "
            f"max(__mm_filled) AS filled FROM multi WHERE {c} IS NOT NULL GROUP BY cluster_id, {c})"
        )
        ctes.append(
            f"g{i} AS (SELECT cluster_id, arg_max(v, ({_ORDERINGS[rules[col]]})) AS v, count(*) AS nv "
            f"FROM v{i} GROUP BY cluster_id)"
        )
        picks += [f"g{i}.v AS {qident(names[col])}", f"coalesce(g{i}.nv, 0) AS __mm_nv{i}"]
        single += [f"b.{c} AS {qident(names[col])}", f"0 AS __mm_nv{i}"]
        joins.append(f"LEFT JOIN g{i} USING (cluster_id)")
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(picks)} FROM base {' '.join(joins)} "
        f"UNION ALL BY NAME SELECT {', '.join(single)} FROM __mm_gbase b JOIN size USING (cluster_id) "
        "WHERE size.n = 1"
    )


def _output_names(columns: list[str]) -> dict[str, str]:
    """Output names of the value columns, clear of ``cluster_id``, ``record_count`` and ``sources``."""
    taken = set(_GOLDEN_COLUMNS)
    names: dict[str, str] = {}
    for col in columns:
        name = _fresh_name(col, taken) if col.lower() in taken else col
        taken.add(name.lower())
        names[col] = name
    return names


def _build_golden(
    con: duckdb.DuckDBPyConnection, gp: _GoldenParams, workdir: Path
) -> tuple[dict[str, Any], Path, Path]:
    columns = list(gp.rules)
    names = _output_names(columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mm_gout AS {_golden_sql(columns, gp.rules, names)}")
    conflicts: dict[str, int] = {}
    if columns:
        counts = ", ".join(f"count(*) FILTER (WHERE __mm_nv{i} > 1)" for i in range(len(columns)))
        row = _one(con, f"SELECT {counts} FROM __mm_gout")
        conflicts = {names[c]: int(n) for c, n in zip(columns, row, strict=True) if n}
    parquet, csv = workdir / "golden_records.parquet", workdir / "golden_records.csv"
    select = ", ".join(qident(c) for c in [*_GOLDEN_COLUMNS, *names.values()])
    con.execute(f"COPY (SELECT {select} FROM __mm_gout ORDER BY cluster_id) TO {qstr(str(parquet))} (FORMAT parquet)")
    con.execute(f"COPY (SELECT {select} FROM {_parquet(parquet)}) TO {qstr(str(csv))} (HEADER, DELIMITER ',')")
    (clusters,) = _one(con, "SELECT count(*) FROM __mm_gout")
    stats = {
        "golden_records": int(clusters),
        "conflicts_resolved": sum(conflicts.values()),
        "conflicts_by_column": conflicts,
        "renamed_columns": {c: n for c, n in names.items() if c != n},
    }
    return stats, parquet, csv


def golden_record_builder(ctx: AgentContext) -> AgentResult:
    """One golden record per matched cluster, each column chosen by a survivorship rule."""
    started = time.monotonic()
    con = ctx.con
    params = parse_params(GOLDEN_AGENT, GoldenRecordBuilderParams, ctx.params)
    inline = not _is_matched(con, ctx.current)
    if inline:
        u = _union(con, ctx.current)
        _match_params(params, u, GOLDEN_AGENT)  # fail fast on the matcher's column names too
        columns = u.names
    else:
        columns = [c for c, _ in _schema(con, ctx.current[0].path) if c.lower() not in _MATCH_COLUMNS]
    gp = _golden_params(params, columns)
    files: dict[str, Path] = {}
    matching: dict[str, Any] | None = None
    matched = ctx.current[0]
    if inline:
        result = _match(ctx, GOLDEN_AGENT, params, lambda f, m: ctx.report(0.7 * f, m))
        matched, matching, files = result.dataset, result.summary, dict(result.files)
    ctx.report(0.75, "choosing surviving values")
    schema = _schema(con, matched.path)
    sources = [
        str(r[0])
        for r in con.execute(f"SELECT DISTINCT {qident('source')} FROM {_parquet(matched.path)} ORDER BY 1").fetchall()
    ]
    priority = _resolve_sources(gp.source_priority, sources)
    try:
        recency = _load_golden_base(con, matched.path, schema, gp, priority)
        (records,) = _one(con, "SELECT count(*) FROM __mm_gbase")
        stats, parquet, csv = _build_golden(con, gp, ctx.workdir)
    finally:
        _drop(con, ["__mm_gbase", "__mm_gout"])
    summary: dict[str, Any] = {
        "clusters": stats["golden_records"],
        "records_in": int(records),
        "golden_records": stats["golden_records"],
        "conflicts_resolved": stats["conflicts_resolved"],
        "matched_inline": inline,
        "rules": gp.rules,
        "conflicts_by_column": stats["conflicts_by_column"],
        "recency_column": gp.recency_column,
        "source_priority": priority,
        "renamed_columns": stats["renamed_columns"],
        **recency,
        "seconds": round(time.monotonic() - started, 3),
    }
    if matching is not None:
        summary["matching"] = {
            k: matching[k] for k in ("records", "clusters", "matched_pairs", "pairs_by_rule", "seconds")
        }
    files["golden_records.csv"] = csv
    ctx.report(1.0, f"{summary['golden_records']} golden records from {summary['records_in']} records")
    return AgentResult(summary=summary, current=[Dataset("golden_records", parquet)], files=files)
