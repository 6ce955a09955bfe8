"""The profiler's DuckDB aggregates: whole-table, per-value, and parsed-value statistics of columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from activities.analysis.agents.profile.patterns import (
    _BOOL_WORDS,
    _DATE_FORMATS,
    _TIME_FORMATS,
    _TRUE_WORDS,
    NULL_LIKE,
)
from activities.analysis.agents.profile.sql import (
    _NUMERIC_KINDS,
    _TEMPORAL_KINDS,
    _aggregate,
    _by_column,
    _Col,
    _match,
    _one,
    _sql_list,
    _trimmed,
)
from activities.analysis.sql import qstr

#: Quantiles reported for numeric columns.
QUANTILES: tuple[tuple[str, float], ...] = (
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
)


def _base_exprs(i: int, col: _Col) -> list[tuple[str, str]]:
    """Whole-table aggregates of one column (computed for all columns in a single pass)."""
    c = col.ident
    exprs = [(f"{i}.non_null", f"count({c})")]
    if col.kind in _NUMERIC_KINDS:
        x = f"CAST({c} AS DOUBLE)"
        fin = f"FILTER (WHERE isfinite({x}))"
        if col.kind == "integer" and not col.storage.upper().startswith("DECIMAL"):
            exprs += [(f"{i}.min", f"min({c})"), (f"{i}.max", f"max({c})")]
        else:
            exprs += [(f"{i}.min", f"min({x}) {fin}"), (f"{i}.max", f"max({x}) {fin}")]
            exprs.append((f"{i}.non_finite", f"count_if(NOT isfinite({x}))"))
        qs = ", ".join(str(q) for _, q in QUANTILES)
        exprs += [
            (f"{i}.mean", f"avg({x}) {fin}"),
            (f"{i}.stddev", f"stddev_samp({x}) {fin}"),
            (f"{i}.quantiles", f"quantile_cont({x}, [{qs}]) {fin}"),
        ]
    elif col.kind in _TEMPORAL_KINDS:
        exprs += [(f"{i}.min", f"CAST(min({c}) AS VARCHAR)"), (f"{i}.max", f"CAST(max({c}) AS VARCHAR)")]
    elif col.kind == "boolean":
        exprs.append((f"{i}.true_count", f"count_if({c})"))
    return exprs


def _base_stats(con: duckdb.DuckDBPyConnection, src: str, cols: Sequence[_Col]) -> tuple[int, list[dict[str, Any]]]:
    """Row count and per-column whole-table aggregates, in one query."""
    exprs: list[tuple[str, str]] = [("rows", "count(*)")]
    for i, col in enumerate(cols):
        exprs += _base_exprs(i, col)
    flat = _aggregate(con, src, exprs)
    per_col = _by_column(flat)
    return int(flat["rows"]), [per_col.get(i, {}) for i in range(len(cols))]


def _top_values_sql(top_n: int) -> str:
    return (
        "(SELECT list({'value': v, 'count': n} ORDER BY n DESC, v) "
        f"FROM (SELECT v, n FROM g ORDER BY n DESC, v LIMIT {top_n}))"
    )


def _text_flags_sql() -> str:
    """Per distinct value ``t`` (trimmed): booleans for every parse form and pattern."""
    digits = "length(t) - length(translate(t, '0123456789', ''))"
    return f"""
        v, n, t, lower(t) IN {_sql_list(NULL_LIKE)} AS nl, t <> v AS padded,
        lower(t) IN {_sql_list(_BOOL_WORDS)} AS is_bool, lower(t) IN {_sql_list(_TRUE_WORDS)} AS is_true,
        {_match("t", "integer")} AS is_int, {_match("t", "number")} AS is_num,
        {_match("t", "leading_zero")} AS is_lz,
        {_match("t", "date")} AS is_date, {_match("t", "datetime")} AS is_dt,
        {_match("t", "email")} AS is_email, {_match("t", "url")} AS is_url, {_match("t", "uuid")} AS is_uuid,
        {_match("t", "postal_code")} AS is_postal, {_match("t", "credit_card")} AS is_card,
        {_match("t", "ipv4")} OR {_match("t", "ipv6")} AS is_ip, {_match("t", "ssn")} AS is_ssn,
        CASE WHEN {_match("t", "phone_shape")} THEN {digits} BETWEEN 7 AND 15 ELSE false END AS phone_shape"""


def _text_value_stats(con: duckdb.DuckDBPyConnection, src: str, col: _Col, top_n: int) -> dict[str, Any]:
    """Distinct count, top values, null-like values, lengths, parse counts and patterns of a text column."""
    real = "FILTER (WHERE NOT nl)"
    phone = "phone_shape AND NOT (is_num OR is_date OR is_dt OR is_ip OR is_ssn)"
    phone += " AND (starts_with(t, '+') OR regexp_matches(t, '[ ().\\-]'))"
    counts = {
        "null_like_count": "nl", "real_count": "NOT nl", "padded_count": "padded AND NOT nl",
        "bool_count": "is_bool", "true_count": "is_true", "integer_count": "is_int", "number_count": "is_num",
        "leading_zero_count": "is_lz", "date_count": "is_date", "datetime_count": "is_dt",
        "email": "is_email", "phone": phone, "url": "is_url", "date": "is_date OR is_dt", "uuid": "is_uuid",
        "postal_code": "is_postal", "credit_card": "is_card", "ip_address": "is_ip", "ssn": "is_ssn",
    }  # fmt: skip
    exprs = [
        ("unique_count", "(SELECT count(*) FROM g)"),
        ("top_values", _top_values_sql(top_n)),
        ("null_like_values", "list({'value': v, 'count': n} ORDER BY n DESC, v) FILTER (WHERE nl)"),
        ("len_total", f"sum(n * length(v)) {real}"),
        ("len_min", f"min(length(v)) {real}"),
        ("len_max", f"max(length(v)) {real}"),
    ]
    exprs += [(key, f"coalesce(sum(n) FILTER (WHERE {cond}), 0)") for key, cond in counts.items()]
    sql_from = f"""(SELECT {_text_flags_sql()}
        FROM (SELECT v, n, {_trimmed("v")} AS t FROM g))"""
    group = f"g AS MATERIALIZED (SELECT CAST({col.ident} AS VARCHAR) AS v, count(*) AS n FROM {src} "
    group += f"WHERE {col.ident} IS NOT NULL GROUP BY ALL)"
    select = ",\n  ".join(expr for _, expr in exprs)
    row = _one(con, f"WITH {group}\nSELECT\n  {select}\nFROM {sql_from}")
    return {key: value for (key, _), value in zip(exprs, row, strict=True)}


def _plain_value_stats(con: duckdb.DuckDBPyConnection, src: str, col: _Col, top_n: int) -> dict[str, Any]:
    """Distinct count and top values of a non-text column."""
    v = col.ident  # numbers and booleans stay native; dates, lists, blobs… are shown as text
    if col.storage.upper().startswith("DECIMAL"):
        v = f"CAST({col.ident} AS {'HUGEINT' if col.kind == 'integer' else 'DOUBLE'})"
    elif col.kind not in _NUMERIC_KINDS | {"boolean"}:
        v = f"CAST({col.ident} AS VARCHAR)"
    sql = (
        f"WITH g AS MATERIALIZED (SELECT {v} AS v, count(*) AS n FROM {src} "
        f"WHERE {col.ident} IS NOT NULL GROUP BY ALL)\n"
        f"SELECT (SELECT count(*) FROM g), {_top_values_sql(top_n)}"
    )
    unique_count, top = _one(con, sql)
    return {"unique_count": unique_count, "top_values": top}


def _parsed_exprs(i: int, col: _Col, inferred: str) -> list[tuple[str, str]]:
    """Aggregates over the parsed values of a text column inferred as a number or date."""
    t = _trimmed(col.ident)
    if inferred in _NUMERIC_KINDS:
        x = f"(CASE WHEN {_match(t, 'number')} THEN TRY_CAST(replace({t}, ',', '') AS DOUBLE) END)"
        qs = ", ".join(str(q) for _, q in QUANTILES)
        return [
            (f"{i}.min", f"min({x})"),
            (f"{i}.max", f"max({x})"),
            (f"{i}.mean", f"avg({x})"),
            (f"{i}.stddev", f"stddev_samp({x})"),
            (f"{i}.quantiles", f"quantile_cont({x}, [{qs}])"),
        ]
    dates = "[" + ", ".join(qstr(f) for f in _DATE_FORMATS) + "]"
    stamps = "[" + ", ".join(qstr(d + tf) for d in _DATE_FORMATS[:11] for tf in _TIME_FORMATS) + "]"
    if inferred == "date":
        x = f"CAST(CASE WHEN {_match(t, 'date')} THEN try_strptime({t}, {dates}) END AS DATE)"
    else:
        parsed = f"coalesce(TRY_CAST({t} AS TIMESTAMP), try_strptime({t}, {stamps}), try_strptime({t}, {dates}))"
        x = f"(CASE WHEN {_match(t, 'date')} OR {_match(t, 'datetime')} THEN {parsed} END)"
    return [(f"{i}.min", f"CAST(min({x}) AS VARCHAR)"), (f"{i}.max", f"CAST(max({x}) AS VARCHAR)")]


def _duplicate_rows(con: duckdb.DuckDBPyConnection, src: str, rows: int) -> int:
    (distinct,) = _one(con, f"SELECT count(*) FROM (SELECT DISTINCT * FROM {src})")
    return rows - int(distinct)
