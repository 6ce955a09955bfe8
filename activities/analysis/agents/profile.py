"""The profile-my-data agents: column profiles, PII and quality risk, and drift between two files.

Every statistic is computed by DuckDB over ``read_parquet(...)``; only aggregated rows (one per query, or a
few top values) ever reach Python, so million-row files profile in seconds. Each agent writes its JSON file
under ``ctx.workdir`` and returns the same content as its summary (the profiler's summary keeps at most 5
top values per column, shortened). A missing or null param takes its default; a bad one raises
``BadInput(code="BAD_PARAMS")`` naming it.

``unified-profiler`` (output ``profile.json``)
    For each dataset of ``ctx.current`` and each column: storage type and inferred type, row count, SQL
    nulls, null-like strings (``''``, whitespace, ``NA``, ``N/A``, ``null``, ``None``, ``-``; compared
    case-insensitively after trimming) counted separately, unique count, top values, and the table's
    duplicate-row count (rows minus distinct rows). Numeric columns get min/max/mean/stddev (sample) and
    interpolated quantiles p05/p25/p50/p75/p95 (NaN/inf ignored); date columns get min/max; booleans their
    true/false counts. Text columns get string lengths (non-null-like values), parse rates and the share of
    values matching each pattern (email, phone, url, date, uuid, postal_code, credit_card, ip_address, ssn).
    A text column whose non-null-like values parse as boolean/integer/float/date/datetime at a rate of at
    least :data:`INFER_THRESHOLD` is reported as that type with ``parse_rate``, and its statistics are
    computed on the parsed values (integer-looking codes with leading zeros stay ``string``).
    Dates are read as ISO (``2024-01-31``) first, then day-first (``31/01/2024``), then month-first.

    Params: ``top_n`` (int, 1..100, default 5): how many top values to keep per column.

``score-risk`` (output ``risk.json``)
    Uses the ``unified-profiler`` summary from ``ctx.previous`` when it covers the dataset, else profiles.
    PII: each column gets a confidence per PII kind, ``1 - (1 - name_score) * (1 - value_share)``, where
    ``name_score`` is 0.6 when the column name hints at that kind (email, phone, ssn, person name, address,
    postal code, date of birth, ip, credit card, passport) and ``value_share`` is the share of values
    matching its pattern (times 0.4 for postal codes, whose pattern alone is weak); the best kind is
    reported when its confidence is > 0 and >= ``pii_threshold``.
    Quality: 100 minus deductions, floored at 0: per column null share (incl. null-like) >= 1% costs
    ``min(10, 20 * share)`` (all such columns together at most 40), null-like placeholders 1, a text column
    mixing numbers/dates (50%..<100% parse) and text 5 (at most 25 together), whitespace-padded values
    (>= 1%) 1, a constant column 2 (these two at most 20 together); duplicate rows cost
    ``min(20, 2 + 50 * share)``; no rows costs 100. A capped category is scaled down proportionally.
    Levels: good >= 90, fair >= 70, else poor.

    Params: ``pii_threshold`` (number, 0..1, default 0.5).

``drift-detector`` (output ``drift.json``)
    Compares the first two files of ``ctx.inputs`` (baseline, then current); fewer than two raise
    ``BadInput(code="DRIFT_NEEDS_TWO_FILES")``. Schema drift: columns added, removed, and type-changed
    (by type family: integer, float, boolean, date, datetime, string, other). For columns in both files:
    numeric and temporal (as epoch seconds) columns get PSI over the baseline's quantile bins, the exact
    two-sample KS statistic, Jensen-Shannon divergence (base 2) over the same bins, and the mean/stddev
    shift; categorical columns (text, boolean, other; null-like strings as null) get PSI and
    Jensen-Shannon over the baseline's top ``bins`` categories plus "other", and new/missing categories.
    Empty bins are floored at 0.0001 for PSI. Drift level by PSI: none < 0.1 <= low < 0.15 <= medium
    < 0.25 <= high. A type change makes a column at least medium (int/float, date/datetime) or high
    (anything else). The overall level is the highest column level; a removed column or an incompatible
    type change makes it high, an added column at least low.

    Params: ``bins`` (int, 2..100, default 10): quantile bins (numeric) and top categories (categorical).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from conveyor.errors import BadInput

Report = Callable[[float, str], None]

#: Values (trimmed, lower-cased) counted as null-like in text columns.
NULL_LIKE: tuple[str, ...] = ("", "na", "n/a", "null", "none", "-")
#: Share of non-null-like values that must parse for a text column to be reported as the parsed type.
INFER_THRESHOLD = 0.8
#: Quantiles reported for numeric columns.
QUANTILES: tuple[tuple[str, float], ...] = (
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
)
#: PSI floors for the drift levels low, medium and high.
DRIFT_THRESHOLDS: dict[str, float] = {"low": 0.1, "medium": 0.15, "high": 0.25}
DRIFT_LEVELS: tuple[str, ...] = ("none", "low", "medium", "high")
PSI_EPSILON = 1e-4
SUMMARY_TOP_VALUES = 5
SUMMARY_VALUE_CHARS = 80
FILE_VALUE_CHARS = 200
SUMMARY_MAX_BYTES = 512 * 1024
NAME_HINT_SCORE = 0.6

_WS = "' ' || chr(9) || chr(10) || chr(13)"
_DATE_ISO = r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
_DATE_DMY = r"[0-9]{1,2}[-/.][0-9]{1,2}[-/.]([0-9]{4}|[0-9]{2})"
_MONTHS = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_TEXT = rf"[0-9]{{1,2}} {_MONTHS},? [0-9]{{4}}|{_MONTHS} [0-9]{{1,2}},? [0-9]{{4}}"
_TIME = r"[T ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?( ?(Z|z|UTC|[+-][0-9]{2}(:?[0-9]{2})?))?"
_DATE_FORMATS = (
    "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%y",
    "%d-%m-%y", "%d.%m.%y", "%m/%d/%y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%b %d %Y",
)  # fmt: skip
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_TIME_FORMATS = (" %H:%M:%S", " %H:%M")

#: RE2 patterns, matched in full against trimmed text values.
REGEX: dict[str, str] = {
    "integer": r"[+-]?[0-9]+|[+-]?[0-9]{1,3}(,[0-9]{3})+",
    "number": r"[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?"
    r"|[+-]?[0-9]{1,3}(,[0-9]{3})+([.][0-9]+)?",
    "leading_zero": r"[+-]?0[0-9]+",
    "date": f"{_DATE_ISO}|{_DATE_DMY}|{_DATE_TEXT}",
    "datetime": f"({_DATE_ISO}|{_DATE_DMY}){_TIME}",
    "email": r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
    "phone_shape": r"\+?\(?[0-9][0-9 ().\-]{5,}[0-9]",
    "url": r"(?i:(https?|ftp)://[^\s/?#]+[^\s]*|www\.[^\s/?#]+\.[a-z]{2,}[^\s]*)",
    "uuid": r"(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
    "postal_code": r"[0-9]{5}(-[0-9]{4})?|(?i:[a-z]{1,2}[0-9][a-z0-9]? ?[0-9][a-z]{2})"
    r"|(?i:[a-z][0-9][a-z] ?[0-9][a-z][0-9])",
    "credit_card": r"[0-9]{4}([ \-]?[0-9]{4}){2}[ \-]?[0-9]{1,7}|3[47][0-9]{2}[ \-]?[0-9]{6}[ \-]?[0-9]{5}",
    "ipv4": rf"({_OCTET}\.){{3}}{_OCTET}",
    "ipv6": r"(?i:([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}"
    r"|(([0-9a-f]{1,4}:){1,6}|:):(([0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4})?)",
    "ssn": r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
}
#: Patterns reported per text column (share of non-null-like values).
PATTERNS: tuple[str, ...] = (
    "email", "phone", "url", "date", "uuid", "postal_code", "credit_card", "ip_address", "ssn",
)  # fmt: skip
_TRUE_WORDS = ("true", "t", "yes", "y")
_BOOL_WORDS = (*_TRUE_WORDS, "false", "f", "no", "n")

_INTEGER_TYPES = frozenset(
    "TINYINT SMALLINT INTEGER BIGINT HUGEINT UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT".split()
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})
_NUMERIC_KINDS = frozenset({"integer", "float"})
_TEMPORAL_KINDS = frozenset({"date", "datetime"})


# --------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Col:
    """One column of a Parquet file: its name, DuckDB type and type family."""

    name: str
    storage: str
    kind: str

    @property
    def ident(self) -> str:
        """The column as a quoted SQL identifier."""
        return qident(self.name)


def qident(name: str) -> str:
    """Quote an SQL identifier (column names may contain spaces or quotes)."""
    return '"' + name.replace('"', '""') + '"'


def qstr(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _source(ds: Dataset) -> str:
    return f"read_parquet({qstr(str(ds.path))})"


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(qstr(v) for v in values) + ")"


def _match(expr: str, pattern: str) -> str:
    return f"regexp_full_match({expr}, {qstr(REGEX[pattern])})"


def _trimmed(expr: str) -> str:
    return f"trim(CAST({expr} AS VARCHAR), {_WS})"


def _kind(storage: str) -> str:
    """Type family of a DuckDB type: integer, float, boolean, date, datetime, text or other."""
    t = storage.upper()
    if t in _INTEGER_TYPES:
        return "integer"
    if t.startswith("DECIMAL"):
        return "integer" if t.replace(" ", "").endswith(",0)") else "float"
    if t in _FLOAT_TYPES:
        return "float"
    if t == "BOOLEAN":
        return "boolean"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP") or t == "DATETIME":
        return "datetime"
    if t in ("VARCHAR", "UUID", "JSON") or t.startswith("ENUM"):
        return "text"
    return "other"


def _type_name(kind: str) -> str:
    return {"text": "string", "other": "string"}.get(kind, kind)


def _describe(con: duckdb.DuckDBPyConnection, src: str) -> list[_Col]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    return [_Col(str(r[0]), str(r[1]), _kind(str(r[1]))) for r in rows]


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = con.execute(sql).fetchone()
    if row is None:  # an aggregate query always returns a row
        raise RuntimeError("aggregate query returned no row")
    return tuple(row)


def _aggregate(
    con: duckdb.DuckDBPyConnection, sql_from: str, exprs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """Run one aggregate query over ``sql_from``; result values by key."""
    if not exprs:
        return {}
    select = ",\n  ".join(expr for _, expr in exprs)
    row = _one(con, f"SELECT\n  {select}\nFROM {sql_from}")
    return {key: value for (key, _), value in zip(exprs, row, strict=True)}


def _by_column(flat: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Split ``{"3.min": v}`` aggregate results into ``{3: {"min": v}}`` (keys without a dot are skipped)."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        if "." in key:
            idx, stat = key.split(".", 1)
            out.setdefault(int(idx), {})[stat] = value
    return out


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: NaN/inf to None, decimals to float, dates and others to str."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, timedelta | UUID):
        return str(value)
    return str(value)


def _num(value: Any, digits: int = 6) -> float | None:
    """A finite float rounded to ``digits`` decimals, or None."""
    if value is None:
        return None
    f = float(value)
    return round(f, digits) if math.isfinite(f) else None


def _share(part: int | None, whole: int | None) -> float:
    return round((part or 0) / whole, 4) if whole else 0.0


def _clip(value: Any, chars: int) -> Any:
    if isinstance(value, str) and len(value) > chars:
        return value[: chars - 1] + "…"
    return value


def _unique_names(datasets: Sequence[Dataset]) -> list[str]:
    """Dataset names, made unique with a ``(2)``, ``(3)``… suffix where the user gave two the same name."""
    seen: dict[str, int] = {}
    names: list[str] = []
    for ds in datasets:
        seen[ds.name] = seen.get(ds.name, 0) + 1
        names.append(ds.name if seen[ds.name] == 1 else f"{ds.name} ({seen[ds.name]})")
    return names


def _write_json(workdir: Path, filename: str, payload: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / filename
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    return path


def _int_param(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name)
    value = default if value is None else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(
            f"param '{name}' must be an integer from {low} to {high}, got {value!r}", code="BAD_PARAMS"
        )
    return value


def _float_param(params: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = params.get(name)
    value = default if value is None else value
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise BadInput(
            f"param '{name}' must be a number from {low} to {high}, got {value!r}", code="BAD_PARAMS"
        )
    return float(value)


def _scaled(report: Report, start: float, end: float) -> Report:
    """A progress callback mapping [0, 1] onto [start, end] of ``report``."""
    return lambda fraction, message: report(start + (end - start) * min(max(fraction, 0.0), 1.0), message)


# ------------------------------------------------------------------------------------------ profiling


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


def _base_stats(
    con: duckdb.DuckDBPyConnection, src: str, cols: Sequence[_Col]
) -> tuple[int, list[dict[str, Any]]]:
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
    parse = {
        k: _share(int(stats[f"{k}_count"]), real) for k in ("integer", "number", "bool", "date", "datetime")
    }
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
        prof.update(
            {"true_count": int(base["true_count"]), "false_count": non_null - int(base["true_count"])}
        )
    elif col.kind == "text":
        prof.update(_text_fields(values))
        if inferred == "boolean":
            true_count = int(values["true_count"])
            prof.update({"true_count": true_count, "false_count": int(values["bool_count"]) - true_count})
    return prof


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
        parsed = (
            f"coalesce(TRY_CAST({t} AS TIMESTAMP), try_strptime({t}, {stamps}), try_strptime({t}, {dates}))"
        )
        x = f"(CASE WHEN {_match(t, 'date')} OR {_match(t, 'datetime')} THEN {parsed} END)"
    return [(f"{i}.min", f"CAST(min({x}) AS VARCHAR)"), (f"{i}.max", f"CAST(max({x}) AS VARCHAR)")]


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


def _duplicate_rows(con: duckdb.DuckDBPyConnection, src: str, rows: int) -> int:
    (distinct,) = _one(con, f"SELECT count(*) FROM (SELECT DISTINCT * FROM {src})")
    return rows - int(distinct)


def _profile_dataset(
    con: duckdb.DuckDBPyConnection, ds: Dataset, top_n: int, report: Report
) -> dict[str, Any]:
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
    top_n = _int_param(ctx.params, "top_n", 5, 1, 100)
    datasets = _profile_all(ctx, ctx.current, top_n, 0.0, 0.95)
    profile = jsonable({"top_n": top_n, "datasets": datasets})
    path = _write_json(ctx.workdir, "profile.json", profile)
    ctx.report(1.0, "profile written")
    return AgentResult(summary=_compact(profile), files={"profile.json": path})


# ------------------------------------------------------------------------------------------------ risk

#: PII kinds by column-name hint: a regex over the name's lower-case tokens joined by "_".
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("email", r"(^|_)(e_?mail|mail)(_|$)|email"),
    ("phone", r"(^|_)(phone|mobile|cell|tel|telephone|fax|msisdn)(_|$)|phone"),
    ("ssn", r"(^|_)(ssn|sin|nino|social_security|national_id|tax_id|tin)(_|$)|socialsecurity"),
    ("credit_card", r"(^|_)(cc|card|pan|ccnum|cc_number|card_number)(_|$)|creditcard"),
    ("ip_address", r"(^|_)ip(_|$)|(^|_)ip_?addr|ipaddress"),
    ("date_of_birth", r"(^|_)(dob|born|birthday|birthdate)(_|$)|birth"),
    ("passport", r"passport"),
    ("postal_code", r"(^|_)(zip|zipcode|zip_code|postcode|post_code|postal|postal_code)(_|$)"),
    ("address", r"(^|_)(address|addr|street|address_line)(_|$)|address"),
    ("person_name", r"(^|_)(name|first_name|last_name|full_name|given_name|family_name|middle_name)(_|$)"),
    ("person_name", r"(^|_)(firstname|lastname|fullname|surname|forename|givenname|maiden_name)(_|$)"),
)
#: Name qualifiers that make a "*_name" column something other than a person's name.
_NOT_PERSON = frozenset(
    "product company file table column host domain brand item category city country street business org "
    "organization organisation store shop app project display model device dataset event team group "
    "account bank field server campaign database schema class type tag sheet".split()
)
#: Value pattern that evidences each PII kind.
_KIND_PATTERN: dict[str, str] = {
    "email": "email", "phone": "phone", "ssn": "ssn", "credit_card": "credit_card",
    "ip_address": "ip_address", "postal_code": "postal_code",
}  # fmt: skip
#: Weight of value evidence for kinds whose pattern alone is weak (any 5-digit code looks like a ZIP code).
_VALUE_WEIGHT: dict[str, float] = {"postal_code": 0.4}


def _name_tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _name_hints(name: str) -> set[str]:
    """PII kinds the column name hints at."""
    tokens = _name_tokens(name)
    joined = "_".join(tokens)
    kinds = {kind for kind, pattern in _NAME_HINTS if re.search(pattern, joined)}
    if "person_name" in kinds and _NOT_PERSON.intersection(tokens):
        kinds.discard("person_name")
    if "ip_address" in kinds:
        kinds.discard("address")
    if "email" in kinds:
        kinds.discard("address")
    return kinds


def _pii_finding(column: str, prof: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    """The most likely PII kind of a column, or None when below the threshold."""
    hints = _name_hints(column)
    patterns: dict[str, float] = prof.get("patterns") or {}
    best: tuple[float, str, list[str]] | None = None
    for kind in dict.fromkeys([*_KIND_PATTERN, *sorted(hints)]):
        name_score = NAME_HINT_SCORE if kind in hints else 0.0
        value_share = float(patterns.get(_KIND_PATTERN.get(kind, ""), 0.0))
        confidence = 1 - (1 - name_score) * (1 - value_share * _VALUE_WEIGHT.get(kind, 1.0))
        evidence = []
        if name_score:
            evidence.append(f"column name suggests {kind.replace('_', ' ')}")
        if value_share:
            evidence.append(
                f"{value_share * 100:.1f}% of values look like {_KIND_PATTERN[kind].replace('_', ' ')}"
            )
        if confidence > 0 and (best is None or confidence > best[0]):
            best = (confidence, kind, evidence)
    if best is None or best[0] < threshold:
        return None
    return {"column": column, "kind": best[1], "confidence": round(best[0], 3), "evidence": best[2]}


def _deduction(reason: str, points: float, column: str | None = None) -> dict[str, Any]:
    return {"reason": reason, "deduction": round(float(points), 1), "column": column}


def _null_deductions(column: str, prof: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    missing = int(prof.get("null_count", 0)) + int(prof.get("null_like_count", 0))
    share = missing / rows if rows else 0.0
    if share >= 0.01:
        what = f"is empty ({share * 100:.1f}% null)" if share >= 1 else f"is {share * 100:.1f}% null"
        like = int(prof.get("null_like_count", 0))
        extra = f" (incl. {like} null-like strings)" if like else ""
        out.append(_deduction(f"column {column!r} {what}{extra}", min(10.0, 20 * share), column))
    placeholders = [v for v in (prof.get("null_like_values") or {}) if v.strip()]
    if placeholders:
        shown = ", ".join(repr(v) for v in placeholders[:3])
        out.append(_deduction(f"column {column!r} encodes missing values as text ({shown})", 1.0, column))
    return out


def _mixed_deduction(column: str, prof: dict[str, Any]) -> dict[str, Any] | None:
    rates: dict[str, float] = prof.get("parse_rates") or {}
    number = float(rates.get("number", 0.0))
    dates = float(rates.get("date", 0.0)) + float(rates.get("datetime", 0.0))
    rate, what = max((number, "numbers"), (dates, "dates"))
    if 0.5 <= rate < 1:
        label = "numeric" if what == "numbers" else "dates"
        return _deduction(f"column {column!r} mixes {what} and text ({rate * 100:.1f}% {label})", 5.0, column)
    return None


def _column_deductions(column: str, prof: dict[str, Any], rows: int) -> dict[str, list[dict[str, Any]]]:
    """This column's deductions, grouped by capped category."""
    groups: dict[str, list[dict[str, Any]]] = {"nulls": _null_deductions(column, prof, rows), "mixed": []}
    mixed = _mixed_deduction(column, prof)
    if mixed:
        groups["mixed"].append(mixed)
    other: list[dict[str, Any]] = []
    padded = int(prof.get("padded_count", 0))
    if rows and padded / rows >= 0.01:
        other.append(
            _deduction(f"column {column!r} has {padded} values with leading/trailing spaces", 1, column)
        )
    if rows > 1 and int(prof.get("unique_count", 0)) == 1 and int(prof.get("null_count", 0)) == 0:
        other.append(_deduction(f"column {column!r} has a single value", 2.0, column))
    groups["other"] = other
    return groups


_CAPS: dict[str, float] = {"nulls": 40.0, "mixed": 25.0, "other": 20.0}


def _quality(ds: dict[str, Any]) -> dict[str, Any]:
    """Quality score 0..100 of a profiled dataset, with the reasons and their deductions."""
    rows = int(ds["rows"])
    if rows == 0:
        reasons = [_deduction("dataset has no rows", 100.0)]
    else:
        grouped: dict[str, list[dict[str, Any]]] = {k: [] for k in _CAPS}
        for column, prof in ds["columns"].items():
            for key, items in _column_deductions(column, prof, rows).items():
                grouped[key] += items
        reasons = []
        for key, items in grouped.items():
            total = sum(d["deduction"] for d in items)
            if total > _CAPS[key]:  # scale the category down to its cap
                for d in items:
                    d["deduction"] = round(d["deduction"] * _CAPS[key] / total, 1)
            reasons += items
        dups = int(ds.get("duplicate_rows", 0))
        if dups:
            points = min(20.0, 2 + 50 * dups / rows)
            noun = "row" if dups == 1 else "rows"
            reasons.append(_deduction(f"{dups} duplicate {noun} ({dups / rows * 100:.1f}%)", points))
    score = round(max(0.0, 100 - sum(d["deduction"] for d in reasons)), 1)
    level = "good" if score >= 90 else "fair" if score >= 70 else "poor"
    return {"quality_score": score, "quality_level": level, "reasons": reasons}


def _profiles_for_risk(ctx: AgentContext) -> tuple[dict[str, Any], str]:
    """Dataset profiles from the profiler's summary where it covers them; the rest profiled here."""
    previous = ctx.previous.get("unified-profiler") or {}
    known = previous.get("datasets") if not previous.get("truncated") else None
    known = known if isinstance(known, dict) else {}
    names = _unique_names(ctx.current)
    out: dict[str, Any] = {}
    own = 0
    for k, (name, ds) in enumerate(zip(names, ctx.current, strict=True)):
        prof = known.get(name)
        if isinstance(prof, dict) and isinstance(prof.get("columns"), dict):
            out[name] = prof
        else:
            report = _scaled(ctx.report, 0.8 * k / len(names), 0.8 * (k + 1) / len(names))
            out[name] = jsonable(_profile_dataset(ctx.con, ds, 1, report))
            own += 1
    source = "unified-profiler" if own == 0 else "own" if own == len(names) else "mixed"
    return out, source


def score_risk(ctx: AgentContext) -> AgentResult:
    """Find PII columns and score data quality per dataset; writes ``risk.json``."""
    threshold = _float_param(ctx.params, "pii_threshold", 0.5, 0.0, 1.0)
    ctx.report(0.0, "loading profiles")
    profiles, source = _profiles_for_risk(ctx)
    datasets: dict[str, Any] = {}
    for k, (name, ds) in enumerate(profiles.items()):
        ctx.report(0.8 + 0.15 * k / max(len(profiles), 1), f"{name}: scoring risk")
        pii = [
            f for col, prof in ds["columns"].items() if (f := _pii_finding(col, prof, threshold)) is not None
        ]
        datasets[name] = {"rows": ds["rows"], **_quality(ds), "pii_columns": pii}
    result = jsonable(
        {
            "pii_threshold": threshold,
            "profile_source": source,
            "pii_column_count": sum(len(d["pii_columns"]) for d in datasets.values()),
            "datasets": datasets,
        }
    )
    path = _write_json(ctx.workdir, "risk.json", result)
    ctx.report(1.0, "risk written")
    return AgentResult(summary=result, files={"risk.json": path})


# ----------------------------------------------------------------------------------------------- drift


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
        exprs += [
            (f"{i}.le{j}", f"count_if({x} <= CAST({e!r} AS DOUBLE))") for j, e in enumerate(edges[col.name])
        ]
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
    bins = _int_param(ctx.params, "bins", 10, 2, 100)
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
    numeric = [
        (a, b) for a, b in pairs if _compatible(a.kind, b.kind) and a.kind in _NUMERIC_KINDS | _TEMPORAL_KINDS
    ]
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
