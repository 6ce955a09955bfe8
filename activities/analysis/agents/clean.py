"""The clean-my-data agents: six transforming agents that rewrite the chained datasets.

Each agent reads every dataset of ``ctx.current`` with DuckDB (``read_parquet``), writes one new Parquet file
per dataset under ``ctx.workdir`` with a single ``COPY (SELECT ...) TO`` (the dataset keeps its name and row
order) and returns the new files as ``AgentResult.current``. Only aggregates, a sample of at most
:data:`SAMPLE_ROWS` rows (used to detect types, formats and number styles), the distinct values of
low-cardinality columns and a few example rows ever reach Python, so million-row files take seconds.

Summaries are JSON-safe: ``{"agent", "params", "datasets": {name: {...}}}`` with per-column counts and a few
``[before, after]`` examples (strings clipped to :data:`VALUE_CHARS` characters). "Text" means a ``VARCHAR``
column (what CSV input gives); "null-like" means a text value that, trimmed and lower-cased, is one of
:data:`NULL_LIKE` (``''`` and whitespace-only included).

Bad params raise ``BadInput(code="BAD_PARAMS")`` naming the agent, the param and the value. A column param
naming a column that no current dataset has is a bad param too; a dataset that lacks a column another dataset
has lists it under ``missing_columns``.

``null-handler``
    Null-like text values (and NaN in float columns) become NULL. Params: ``strategy``: ``keep``
    (default), ``drop_rows`` (drop rows with a null in ``columns``, default all), ``fill`` (fill the nulls
    of ``columns``: numeric columns, text columns whose values (>= 90 %) are numbers included, with
    ``fill_numeric``: ``mean``, ``median`` (default), ``zero`` or a number, written in the column's number
    style; other text columns with ``fill_text``, default ``"unknown"``; other types are left alone) or
    ``drop_columns_over`` (only drop columns, threshold 0.5 unless given). ``drop_columns_over``: number
    0..1, with any strategy: drop columns (of ``columns``) whose null share after normalising exceeds it
    (never every column).

``type-fixer``
    Converts text columns where at least ``min_parse_rate`` (number in (0, 1], default 0.9) of the non-null
    values parse: booleans (``true/false yes/no y/n t/f 1/0``, any case) to BOOLEAN; numbers with thousands
    separators (``,`` ``'`` or space; ``.`` or space in European style, chosen only when some values are
    European-only and none US-only), currency symbols/codes and ``(1.5)`` negatives to BIGINT (all integral)
    or DOUBLE; dates (ISO ``2024-01-31``/``2024/01/31``; ``d/m/Y`` or ``m/d/Y`` with ``/ - .`` and 2- or
    4-digit years, the order read from the column (a first part > 12 means day first, a second part > 12
    month first; day first when undecided); ``12 Jan 2024``, ``12-Jan-24``, ``Jan 12, 2024``, ``Mon, 12th
    January 2024``) to DATE, or TIMESTAMP when any value has a time (``10:30``, ``10:30:15.5``, ``3:04 PM``;
    a ``Z``/``UTC``/``+02:00`` suffix is dropped, keeping the local time). Ties go to the first of boolean,
    integer, double, date. Integer-looking values with leading zeros (``007``) keep a column text. Values
    that fail become NULL and are counted, with examples. Params: ``min_parse_rate``; ``columns`` (default
    all text columns); ``date_order``: ``auto`` (default), ``dmy`` or ``mdy``.

``field-standardizer``
    For text columns (``columns``, default all): trim and collapse whitespace; apply explicit ``mappings``
    ``{column: {from: to}}`` (``from`` matched ignoring case and surrounding whitespace); apply ``case``
    (``lower``, ``upper``, ``title`` or ``keep``; a string for every column or ``{column: mode}``; columns
    whose name contains "email" default to ``lower``, the rest to ``keep``); then, for columns with at most
    ``max_categories`` (int 0..1000, default 50; 0 disables) distinct values, merge spellings equal after
    normalising case, whitespace, punctuation and accents, and (where values repeat: distinct spellings at
    most half the non-null values) spellings whose normalised forms have a rapidfuzz ratio >= ``threshold``
    (0..100, default 90) and the same digits, into the group's most frequent spelling (an explicit mapping
    target wins). Values without letters and e-mail columns are never merged.

``duplicate-resolver``
    Removes exact duplicate rows, then near-duplicates: rows equal on ``key_columns`` (default all columns)
    once text is lower-cased, accent- and punctuation-stripped, trimmed and whitespace-collapsed (an empty
    result counts as NULL). Params: ``key_columns``; ``keep``: ``first`` (default) or ``most_complete`` (the
    row with the fewest nulls, then the first); ``near``: bool (default true; false removes exact duplicates
    only).

``outlier-flagger``
    Numeric columns (``columns``, default every numeric column and every text column whose values (>= 90 %)
    are plain numbers, except id-like names and codes with leading zeros). ``method``: ``iqr`` (default;
    bounds ``q1 - k*iqr``, ``q3 + k*iqr``, ``k`` > 0 default 1.5) or ``zscore`` (``|x - mean| / stddev >
    threshold``, default 3). Infinities are outliers, NaN and nulls are not. ``action``: ``flag`` (default:
    adds BOOLEAN ``<col>_is_outlier``, false for nulls) or ``drop`` (removes flagged rows, adds nothing).

``email-validator``
    Columns named like e-mail, text columns whose values are mostly (>= 50 %) e-mail shaped, or ``columns``.
    A value is valid when, trimmed, it matches ``local@domain.tld`` (RFC 5322 atom characters, no spaces, no
    leading/trailing/consecutive dots, labels of letters/digits/hyphens, a TLD of >= 2 letters, local part
    <= 64 and address <= 254 characters). Valid values are written trimmed with the domain lower-cased.
    Adds BOOLEAN ``<col>_valid`` and ``<col>_disposable`` (domain or its parent in :data:`DISPOSABLE_DOMAINS`
    or ``disposable_domains``), both NULL where the value is null or null-like (``_disposable`` also where
    invalid). Params: ``columns``; ``action``: ``flag`` (default) or ``null_invalid`` (invalid values become
    NULL); ``disposable_domains``: extra domains (list of strings).
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from rapidfuzz import fuzz

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from conveyor.errors import BadInput

Report = Callable[[float, str], None]
Stage = Callable[[str], str]
"""One SQL rewriting step: the expression of a column's value in, the rewritten expression out."""

#: Text values (trimmed, lower-cased) that mean "no value".
NULL_LIKE: tuple[str, ...] = ("", "na", "n/a", "null", "none", "nan", "-", "?", "#n/a", "<na>")
#: Rows sampled to detect types, number styles, date orders and e-mail columns.
SAMPLE_ROWS = 100_000
#: Examples kept per column in summaries.
EXAMPLES = 3
#: Longest example string kept in summaries.
VALUE_CHARS = 80
#: Built-in disposable e-mail domains (a subdomain of one counts too).
DISPOSABLE_DOMAINS: frozenset[str] = frozenset(
    {
        "10minutemail.com", "20minutemail.com", "burnermail.io", "discard.email", "dispostable.com",
        "emailondeck.com", "fakeinbox.com", "getairmail.com", "getnada.com", "guerrillamail.com",
        "guerrillamail.net", "guerrillamailblock.com", "mailcatch.com", "maildrop.cc", "mailinator.com",
        "mailnesia.com", "mintemail.com", "mohmal.com", "moakt.com", "mytemp.email", "sharklasers.com",
        "spamgourmet.com", "temp-mail.org", "tempail.com", "tempmail.com", "tempmailo.com", "tempr.email",
        "throwawaymail.com", "trashmail.com", "yopmail.com",
    }
)  # fmt: skip

_WS = " \t\n\r\x0b\x0c\xa0"
_INT_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
     "UHUGEINT"}
)  # fmt: skip
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})
_TRUE = ("true", "yes", "y", "t", "1")
_FALSE = ("false", "no", "n", "f", "0")

_CURRENCY = r"[$€£¥₹]|(?i:\b(?:usd|eur|gbp|chf|jpy|inr|cad|aud)\b)"
_US_INT = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,3}(?: \d{3})+|\d+)"
_US_NUM = (
    r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:\.\d*)?|\.\d+)"
    r"(?:[eE][+-]?\d+)?"
)
_EU_INT = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?: \d{3})+|\d+)"
_EU_NUM = r"[+-]?(?:(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:,\d+)?|,\d+)"
_ISO_DATE = (
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:\s*(?:Z|UTC|[+-]\d{2}:?\d{2}))?"
)
_NUM_DATE = (
    r"(\d{1,2})[-/.](\d{1,2})[-/.](?:\d{2}|\d{4})"
    r"(?:[T ]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp][Mm])?)?"
)
_TIMES = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", " %I:%M %p", " %I:%M:%S %p")
_TEXT_DATES = ("%d %b", "%d %B", "%b %d", "%B %d")
_TEXT_FORMATS = tuple(f"{p} {y}{t}" for y in ("%y", "%Y") for p in _TEXT_DATES for t in _TIMES)
_EMAIL_RE = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_EMAIL_SHAPE = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_CASES = ("keep", "lower", "upper", "title")


# ------------------------------------------------------------------------------------------------ SQL
def qident(name: str) -> str:
    """Quote an SQL identifier (column names may contain spaces or quotes)."""
    return '"' + name.replace('"', '""') + '"'


def qstr(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(qstr(v) for v in values) + ")"


def _trim(expr: str) -> str:
    return f"trim({expr}, {qstr(_WS)})"


def _null_like(expr: str) -> str:
    """SQL condition: the text value is null-like (NULL when the value is NULL)."""
    return f"lower({_trim(expr)}) IN {_sql_list(NULL_LIKE)}"


def _clean_text(expr: str) -> str:
    """The trimmed text value, NULL where it is null-like."""
    return f"CASE WHEN {_null_like(expr)} THEN NULL ELSE {_trim(expr)} END"


def _regex(expr: str, pattern: str, full: bool = True) -> str:
    return f"regexp_{'full_match' if full else 'matches'}({expr}, {qstr(pattern)})"


def _layered(src: str, stages: dict[str, list[Stage]]) -> str:
    """``SELECT *`` from ``src`` with each listed column rewritten by its stages, one subquery per step."""
    sql = f"SELECT * FROM {src}"
    depth = max((len(s) for s in stages.values()), default=0)
    for d in range(depth):
        repl = [f"{s[d](qident(name))} AS {qident(name)}" for name, s in stages.items() if d < len(s)]
        if repl:
            sql = f"SELECT * REPLACE ({', '.join(repl)}) FROM ({sql})"
    return sql


def _traced(src: str, stages: Sequence[list[Stage]], cols: Sequence[Col]) -> str:
    """Every stage's value of each column as ``__s{i}_{d}`` (``d`` = 0 the raw value), for counting."""
    depth = max((len(s) for s in stages), default=0)
    sql = "SELECT " + ", ".join(f"{c.ident} AS __s{i}_0" for i, c in enumerate(cols)) + f" FROM {src}"
    for d in range(depth):
        step = [
            f"{s[d](f'__s{i}_{d}') if d < len(s) else f'__s{i}_{d}'} AS __s{i}_{d + 1}"
            for i, s in enumerate(stages)
        ]
        sql = f"SELECT *, {', '.join(step)} FROM ({sql})"
    return sql


def _nest(expr: str, stages: Sequence[Stage]) -> str:
    for stage in stages:
        expr = stage(expr)
    return expr


@dataclass(frozen=True)
class Col:
    """One column of a Parquet file: name and DuckDB type."""

    name: str
    type: str

    @property
    def ident(self) -> str:
        """The column as a quoted SQL identifier."""
        return qident(self.name)

    @property
    def is_text(self) -> bool:
        """Whether the column holds strings."""
        return self.type == "VARCHAR"

    @property
    def is_float(self) -> bool:
        """Whether the column is FLOAT/DOUBLE (may hold NaN)."""
        return self.type in _FLOAT_TYPES

    @property
    def is_numeric(self) -> bool:
        """Whether the column has a numeric (not boolean) type."""
        return self.type in _INT_TYPES or self.is_float or self.type.startswith("DECIMAL")


def _describe(con: duckdb.DuckDBPyConnection, path: Path) -> list[Col]:
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({qstr(str(path))})").fetchall()
    return [Col(str(r[0]), str(r[1])) for r in rows]


def _aggregate(con: duckdb.DuckDBPyConnection, sql_from: str, exprs: dict[str, str]) -> dict[str, Any]:
    """One aggregate query over ``sql_from``; results by key."""
    if not exprs:
        return {}
    row = con.execute(f"SELECT {', '.join(exprs.values())} FROM {sql_from}").fetchone()
    if row is None:  # an aggregate query always returns a row
        raise RuntimeError("aggregate query returned no row")
    return dict(zip(exprs, row, strict=True))


def write_parquet(con: duckdb.DuckDBPyConnection, select: str, out: Path) -> int:
    """Write the result of ``select`` to a Parquet file; returns the number of rows written."""
    row = con.execute(f"COPY ({select}) TO {qstr(str(out))} (FORMAT parquet)").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _temp_table(con: duckdb.DuckDBPyConnection, select: str) -> Iterator[str]:
    """A temporary table holding ``select``'s rows, dropped afterwards."""
    name = f"__clean_{uuid.uuid4().hex}"
    con.execute(f"CREATE TEMP TABLE {name} AS {select}")
    try:
        yield name
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _sample(job: _Job, cols: Sequence[Col]) -> Any:
    """A temporary table with a reservoir sample (at most :data:`SAMPLE_ROWS`) of ``cols``."""
    select = ", ".join(c.ident for c in cols) or "*"
    return _temp_table(
        job.con, f"SELECT {select} FROM {job.src} USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (42)"
    )


def _pairs(con: duckdb.DuckDBPyConnection, sql: str, limit: int = EXAMPLES) -> list[list[Any]]:
    """Distinct ``[before, after]`` rows of a two-column query (reads at most a few dozen rows)."""
    out: list[list[Any]] = []
    for row in con.execute(f"{sql} LIMIT {limit * 8}").fetchall():
        pair = [clip(v) for v in row]
        if pair not in out:
            out.append(pair)
        if len(out) == limit:
            break
    return out


def _values(con: duckdb.DuckDBPyConnection, sql: str, limit: int = 5) -> list[Any]:
    """Distinct values of a one-column query (reads at most a few dozen rows)."""
    return [p[0] for p in _pairs(con, sql, limit)]


# ------------------------------------------------------------------------------------------ summaries
def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: NaN/inf to None, decimals to float, dates to ISO strings."""
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
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


def clip(value: Any) -> Any:
    """A JSON-safe value with strings cut to :data:`VALUE_CHARS` characters."""
    value = jsonable(value)
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return value[: VALUE_CHARS - 1] + "…"
    return value


def _num(value: Any, digits: int = 6) -> float | None:
    if value is None:
        return None
    f = float(value)
    return round(f, digits) if math.isfinite(f) else None


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _unique_names(datasets: Sequence[Dataset]) -> list[str]:
    seen: dict[str, int] = {}
    names: list[str] = []
    for ds in datasets:
        seen[ds.name] = seen.get(ds.name, 0) + 1
        names.append(ds.name if seen[ds.name] == 1 else f"{ds.name} ({seen[ds.name]})")
    return names


def _file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")
    return stem[:60] or "data"


# ------------------------------------------------------------------------------------------- params
class _Params:
    """Validated access to an agent's params; every failure is ``BadInput(code="BAD_PARAMS")``."""

    def __init__(self, agent: str, raw: dict[str, Any], schemas: Sequence[Sequence[Col]]) -> None:
        self.agent = agent
        self.raw = raw
        self.known = {c.name for cols in schemas for c in cols}

    def bad(self, name: str, value: Any, expected: str) -> BadInput:
        """The error for a bad value of param ``name``."""
        shown = clip(repr(value))
        return BadInput(
            f"{self.agent}: param '{name}' {expected}, got {shown}",
            code="BAD_PARAMS",
            details={"agent": self.agent, "param": name, "value": shown},
        )

    def choice(self, name: str, options: Sequence[str], default: str) -> str:
        """One of ``options`` (case-insensitive)."""
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise self.bad(name, value, "must be one of " + ", ".join(options))
        return value.strip().lower()

    def number(
        self, name: str, default: float | None, low: float, high: float, open_low: bool = False
    ) -> Any:
        """A finite number in ``[low, high]`` (``(low, high]`` when ``open_low``), or ``default``."""
        value = self.raw.get(name)
        if value is None:
            return default
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < value if open_low else low <= value) or value > high:
            interval = f"{'(' if open_low else '['}{low:g}, {high:g}]"
            raise self.bad(name, value, f"must be a number in {interval}")
        return float(value)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        value = self.raw.get(name, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.bad(name, value, f"must be an integer from {low} to {high}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        """A boolean."""
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.bad(name, value, "must be true or false")
        return value

    def text(self, name: str, default: str) -> str:
        """A string."""
        value = self.raw.get(name, default)
        if not isinstance(value, str):
            raise self.bad(name, value, "must be a string")
        return value

    def strings(self, name: str) -> list[str]:
        """A list of non-empty strings (a single string is a list of one)."""
        value = self.raw.get(name)
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise self.bad(name, value, "must be a list of non-empty strings")
        return list(dict.fromkeys(items))

    def columns(self, name: str) -> list[str] | None:
        """Column names that some current dataset has, or None when the param is absent."""
        if self.raw.get(name) is None:
            return None
        names = self.strings(name)
        self.check_columns(name, names)
        return names

    def check_columns(self, name: str, names: Iterable[str]) -> None:
        """Raise unless every name is a column of some current dataset."""
        missing = [n for n in names if n not in self.known]
        if missing:
            raise self.bad(name, missing if len(missing) > 1 else missing[0], "names no column of the data")

    def table(self, name: str) -> dict[str, Any]:
        """A JSON object (``{}`` when absent)."""
        value = self.raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.bad(name, value, "must be an object")
        return value


def _missing(cols: Sequence[Col], wanted: Iterable[str] | None) -> list[str]:
    names = {c.name for c in cols}
    return [w for w in wanted or () if w not in names]


# -------------------------------------------------------------------------------------------- running
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

    def col(self, name: str) -> Col | None:
        """The column with this name, if the dataset has it."""
        return next((c for c in self.cols if c.name == name), None)


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
        start, end = k / total, (k + 1) / total

        def report(
            fraction: float, message: str, start: float = start, end: float = end, name: str = name
        ) -> None:
            ctx.report(start + (end - start) * min(max(fraction, 0.0), 1.0), f"{agent}: {name}: {message}")

        out = ctx.workdir / f"{k}_{_file_stem(ds.name)}.parquet"
        datasets[name] = step(_Job(ctx.con, name, ds.path, cols, out, report))
        report(1.0, "written")
        current.append(Dataset(ds.name, out))
    ctx.report(1.0, f"{agent}: done")
    summary = jsonable({"agent": agent, "params": params, "datasets": datasets})
    return AgentResult(summary=summary, current=current)


# ---------------------------------------------------------------------------------------- numbers
def _numstr(v: str) -> str:
    """A number string without currency, ``(x)`` as ``-x`` and no space after the sign."""
    s = f"regexp_replace({v}, '^\\((.*)\\)$', '-\\1')"
    s = _trim(f"regexp_replace({s}, {qstr(_CURRENCY)}, '', 'g')")
    return f"regexp_replace({s}, '^([+-])\\s+', '\\1')"


def _parse_number(ns: str, style: str, integer: bool) -> str:
    """BIGINT/DOUBLE from a :func:`_numstr` string in ``us`` or ``eu`` style, NULL if it is no number."""
    if style == "eu":
        pattern, plain = (
            (_EU_INT if integer else _EU_NUM),
            f"replace(regexp_replace({ns}, '[. ]', '', 'g'), ',', '.')",
        )
    else:
        pattern, plain = (_US_INT if integer else _US_NUM), f"regexp_replace({ns}, '[,'' ]', '', 'g')"
    return (
        f"CASE WHEN {_regex(ns, pattern)} THEN TRY_CAST({plain} AS {'BIGINT' if integer else 'DOUBLE'}) END"
    )


def _number_stats(i: int, ns: str) -> dict[str, str]:
    """Sample aggregates deciding whether a text column holds numbers, and in which style."""
    us, eu = _regex(ns, _US_NUM), _regex(ns, _EU_NUM)
    return {
        f"{i}.n_us": f"count({_parse_number(ns, 'us', False)})",
        f"{i}.i_us": f"count({_parse_number(ns, 'us', True)})",
        f"{i}.n_eu": f"count({_parse_number(ns, 'eu', False)})",
        f"{i}.i_eu": f"count({_parse_number(ns, 'eu', True)})",
        f"{i}.us_only": f"count(*) FILTER (WHERE {us} AND NOT {eu})",
        f"{i}.eu_only": f"count(*) FILTER (WHERE {eu} AND NOT {us})",
        f"{i}.lead0": f"count(*) FILTER (WHERE {_regex(ns, '^[+-]?0[0-9]', full=False)})",
    }


def _number_style(stats: dict[str, Any]) -> str:
    return "eu" if stats["eu_only"] > 0 and stats["us_only"] == 0 else "us"


def _format_number(value: float, style: str) -> str:
    text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(round(value, 6))
    return text.replace(".", ",") if style == "eu" else text


def _by_column(flat: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Split ``{"3.min": v}`` aggregate results into ``{3: {"min": v}}``."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        idx, stat = key.split(".", 1)
        out.setdefault(int(idx), {})[stat] = value
    return out


# ------------------------------------------------------------------------------------------- dates
def _iso_date(v: str) -> str:
    s = f"regexp_replace({v}, '^(\\d{{4}})[/.](\\d{{1,2}})[/.](\\d{{1,2}})', '\\1-\\2-\\3')"
    s = f"regexp_replace({s}, '\\s*(?:Z|UTC|[+-]\\d{{2}}:?\\d{{2}})$', '')"
    return f"TRY_CAST({s} AS TIMESTAMP)"


def _num_date(v: str, order: str) -> str:
    s = f"regexp_replace({v}, '^(\\d{{1,2}})[-/.](\\d{{1,2}})[-/.](\\d{{2,4}})[T ]*', '\\1/\\2/\\3 ')"
    dm = "%d/%m" if order == "dmy" else "%m/%d"
    formats = [f"{dm}/{y}{t}" for y in ("%y", "%Y") for t in _TIMES]
    return f"try_strptime(rtrim({s}), [{', '.join(qstr(f) for f in formats)}])"


def _text_date(v: str) -> str:
    s = f"regexp_replace(lower({v}), '^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\\.?,?\\s+', '')"
    s = f"regexp_replace({s}, '(\\d)(?:st|nd|rd|th)\\b', '\\1', 'g')"
    s = f"regexp_replace(regexp_replace({s}, '\\bsept\\b', 'sep', 'g'), '([a-z])\\.', '\\1', 'g')"
    s = f"trim(regexp_replace(regexp_replace({s}, '[-/,]+', ' ', 'g'), '\\s+', ' ', 'g'))"
    return f"try_strptime({s}, [{', '.join(qstr(f) for f in _TEXT_FORMATS)}])"


def _parse_temporal(v: str, order: str) -> str:
    """TIMESTAMP from a trimmed text date in any supported format (``order``: dmy or mdy), else NULL."""
    return (
        f"CASE WHEN {_regex(v, _ISO_DATE)} THEN {_iso_date(v)} "
        f"WHEN {_regex(v, _NUM_DATE)} THEN {_num_date(v, order)} "
        f"WHEN {_regex(v, '[A-Za-z]{3}', full=False)} AND {_regex(v, '[0-9]', full=False)} "
        f"THEN {_text_date(v)} END"
    )


def _date_stats(i: int, v: str) -> dict[str, str]:
    """Sample aggregates deciding whether a text column holds dates, their order and whether times."""
    first = f"TRY_CAST(regexp_extract({v}, '^(\\d{{1,2}})[-/.]', 1) AS INTEGER)"
    second = f"TRY_CAST(regexp_extract({v}, '^\\d{{1,2}}[-/.](\\d{{1,2}})[-/.]', 1) AS INTEGER)"
    shaped = _regex(v, _NUM_DATE)
    return {
        f"{i}.d_dmy": f"count({_parse_temporal(v, 'dmy')})",
        f"{i}.d_mdy": f"count({_parse_temporal(v, 'mdy')})",
        f"{i}.ev_dmy": f"count(*) FILTER (WHERE {shaped} AND {first} > 12)",
        f"{i}.ev_mdy": f"count(*) FILTER (WHERE {shaped} AND {second} > 12)",
        f"{i}.timed": f"count(*) FILTER (WHERE {_regex(v, '[0-9]:[0-5][0-9]', full=False)})",
    }


# ------------------------------------------------------------------------------------- null-handler
@dataclass(frozen=True)
class _NullOptions:
    strategy: str
    columns: list[str] | None
    drop_over: float | None
    fill_numeric: str | float
    fill_text: str


def _fill_numeric_param(p: _Params) -> str | float:
    value = p.raw.get("fill_numeric", "median")
    if isinstance(value, str) and value.strip().lower() in ("mean", "median", "zero"):
        return value.strip().lower()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise p.bad("fill_numeric", value, "must be mean, median, zero or a number")


def null_handler(ctx: AgentContext) -> AgentResult:
    """Turn null-like values into NULL, then keep, drop or fill nulls as ``strategy`` says."""
    schemas = _schemas(ctx)
    p = _Params("null-handler", ctx.params, schemas)
    strategy = p.choice("strategy", ("keep", "drop_rows", "fill", "drop_columns_over"), "keep")
    drop_over = p.number("drop_columns_over", None, 0.0, 1.0)
    if strategy == "drop_columns_over" and drop_over is None:
        drop_over = 0.5
    opts = _NullOptions(
        strategy, p.columns("columns"), drop_over, _fill_numeric_param(p), p.text("fill_text", "unknown")
    )
    echo = {"strategy": strategy, "columns": opts.columns, "drop_columns_over": drop_over}
    if strategy == "fill":
        echo |= {"fill_numeric": opts.fill_numeric, "fill_text": opts.fill_text}
    return _run(ctx, "null-handler", schemas, echo, lambda job: _null_dataset(job, opts))


def _null_norm(col: Col) -> Stage | None:
    if col.is_text:
        return lambda e: f"CASE WHEN {_null_like(e)} THEN NULL ELSE {e} END"
    if col.is_float:
        return lambda e: f"CASE WHEN isnan({e}) THEN NULL ELSE {e} END"
    return None


def _null_counts(job: _Job) -> tuple[int, dict[int, dict[str, Any]]]:
    exprs = {"rows": "count(*)"}
    for i, c in enumerate(job.cols):
        exprs[f"{i}.sql_nulls"] = f"count(*) - count({c.ident})"
        if c.is_text:
            exprs[f"{i}.null_like"] = f"count(*) FILTER (WHERE {_null_like(c.ident)})"
            exprs[f"{i}.values"] = f"approx_top_k({c.ident}, 5) FILTER (WHERE {_null_like(c.ident)})"
        elif c.is_float:
            exprs[f"{i}.null_like"] = f"count(*) FILTER (WHERE isnan({c.ident}))"
    flat = _aggregate(job.con, job.src, exprs)
    rows = int(flat.pop("rows"))
    return rows, _by_column(flat)


def _columns_to_drop(job: _Job, opts: _NullOptions, rows: int, stats: dict[int, dict[str, Any]]) -> list[Col]:
    if opts.drop_over is None or not rows:
        return []
    scope = opts.columns
    drop = [
        c for i, c in enumerate(job.cols)
        if (scope is None or c.name in scope) and _nulls(stats[i]) / rows > opts.drop_over
    ]  # fmt: skip
    return [] if len(drop) == len(job.cols) else drop


def _nulls(stats: dict[str, Any]) -> int:
    return int(stats["sql_nulls"]) + int(stats.get("null_like") or 0)


def _numeric_text(job: _Job, cols: Sequence[Col]) -> dict[str, str]:
    """The text columns (of ``cols``) holding numbers (>= 90 % of values), with their number style."""
    if not cols:
        return {}
    with _sample(job, cols) as sample:
        inner = ", ".join(f"{_numstr(_clean_text(c.ident))} AS __n{i}" for i, c in enumerate(cols))
        exprs = {f"{i}.nn": f"count(__n{i})" for i in range(len(cols))}
        for i in range(len(cols)):
            exprs |= _number_stats(i, f"__n{i}")
        stats = _by_column(_aggregate(job.con, f"(SELECT {inner} FROM {sample})", exprs))
    out: dict[str, str] = {}
    for i, c in enumerate(cols):
        s = stats[i]
        style = _number_style(s)
        if s["nn"] and not s["lead0"] and s[f"n_{style}"] >= 0.9 * s["nn"]:
            out[c.name] = style
    return out


def _fill_values(job: _Job, opts: _NullOptions, cols: Sequence[Col]) -> dict[str, Any]:
    """The value to fill each column's nulls with (columns of other types are left out)."""
    numeric_text = _numeric_text(job, [c for c in cols if c.is_text])
    stat = {"mean": "avg", "median": "median"}.get(str(opts.fill_numeric))
    exprs: dict[str, str] = {}
    for i, c in enumerate(cols):
        if stat and (c.is_numeric or c.name in numeric_text):
            x = c.ident
            if c.name in numeric_text:
                x = _parse_number(_numstr(_clean_text(c.ident)), numeric_text[c.name], False)
            elif c.is_float:
                x = f"CASE WHEN isnan({x}) THEN NULL ELSE {x} END"
            exprs[f"{i}.v"] = f"{stat}({x})"
    computed = _by_column(_aggregate(job.con, job.src, exprs))
    fills: dict[str, Any] = {}
    for i, c in enumerate(cols):
        if c.is_numeric or c.name in numeric_text:
            value = 0.0 if opts.fill_numeric == "zero" else opts.fill_numeric
            value = float(computed.get(i, {}).get("v") or 0.0) if stat else value
            fills[c.name] = _format_number(float(value), numeric_text[c.name]) if c.is_text else value
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
    stages: dict[str, list[Stage]] = {c.name: [s] for c in kept if (s := _null_norm(c)) is not None}
    fills: dict[str, Any] = {}
    if opts.strategy == "fill":
        job.report(0.3, "computing fill values")
        needy = [c for c in scope if _nulls(stats[job.cols.index(c)])]
        fills = _fill_values(job, opts, needy)
        for c in needy:
            if c.name in fills:
                stages.setdefault(c.name, []).append(_fill_stage(c, fills[c.name]))
    select = _layered(job.src, stages)
    keep_list = ", ".join(c.ident for c in kept)
    select = f"SELECT {keep_list} FROM ({select})"
    if opts.strategy == "drop_rows" and scope:
        select += " WHERE " + " AND ".join(f"{c.ident} IS NOT NULL" for c in scope)
    job.report(0.6, "writing")
    rows_out = write_parquet(job.con, select, job.out)
    return _null_summary(job, rows, rows_out, stats, dropped, fills)


def _null_summary(
    job: _Job,
    rows: int,
    rows_out: int,
    stats: dict[int, dict[str, Any]],
    dropped: list[Col],
    fills: dict[str, Any],
) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for i, c in enumerate(job.cols):
        s = stats[i]
        if not _nulls(s):
            continue
        entry: dict[str, Any] = {"sql_nulls": s["sql_nulls"], "null_like": s.get("null_like", 0)}
        entry |= {"nulls": _nulls(s), "null_share": _share(_nulls(s), rows)}
        if s.get("values"):
            entry["null_like_values"] = [clip(v) for v in s["values"]]
        if c.name in fills and c not in dropped:
            entry |= {"filled": _nulls(s), "fill_value": fills[c.name]}
        columns[c.name] = entry
    return {
        "rows_in": rows,
        "rows_out": rows_out,
        "rows_dropped": rows - rows_out,
        "null_like_normalised": sum(int(s.get("null_like") or 0) for s in stats.values()),
        "values_filled": sum(v.get("filled", 0) for v in columns.values()),
        "columns_dropped": [
            {"column": c.name, "null_share": _share(_nulls(stats[job.cols.index(c)]), rows)} for c in dropped
        ],
        "columns": columns,
    }


# ---------------------------------------------------------------------------------------- type-fixer
@dataclass(frozen=True)
class _Conversion:
    """What a text column becomes: ``kind`` (boolean, integer, double, date, timestamp) and its format."""

    kind: str
    fmt: str
    rate: float

    @property
    def sql_type(self) -> str:
        """The DuckDB type written."""
        return {"integer": "BIGINT"}.get(self.kind, self.kind.upper())

    def stages(self) -> list[Stage]:
        """Stages from the raw text value to the converted value."""
        first: list[Stage] = [_clean_text]
        if self.kind == "boolean":
            return first + [
                lambda v: (
                    f"CASE WHEN lower({v}) IN {_sql_list(_TRUE)} THEN true "
                    f"WHEN lower({v}) IN {_sql_list(_FALSE)} THEN false END"
                )
            ]
        if self.kind in ("integer", "double"):
            return first + [_numstr, lambda v: _parse_number(v, self.fmt, self.kind == "integer")]
        if self.kind == "date":
            return first + [lambda v: f"CAST({_parse_temporal(v, self.fmt)} AS DATE)"]
        return first + [lambda v: _parse_temporal(v, self.fmt)]


@dataclass(frozen=True)
class _TypeOptions:
    min_rate: float
    columns: list[str] | None
    date_order: str


def type_fixer(ctx: AgentContext) -> AgentResult:
    """Convert text columns holding numbers, dates or booleans to those types."""
    schemas = _schemas(ctx)
    p = _Params("type-fixer", ctx.params, schemas)
    opts = _TypeOptions(
        p.number("min_parse_rate", 0.9, 0.0, 1.0, open_low=True),
        p.columns("columns"),
        p.choice("date_order", ("auto", "dmy", "mdy"), "auto"),
    )
    echo = {"min_parse_rate": opts.min_rate, "columns": opts.columns, "date_order": opts.date_order}
    return _run(ctx, "type-fixer", schemas, echo, lambda job: _type_dataset(job, opts))


def _type_stats(job: _Job, sample: str, cols: Sequence[Col]) -> dict[int, dict[str, Any]]:
    cleaned = ", ".join(f"{_clean_text(c.ident)} AS __v{i}" for i, c in enumerate(cols))
    numbers = ", ".join(_numstr(f"__v{i}") + f" AS __n{i}" for i in range(len(cols)))
    inner = f"SELECT *, {numbers} FROM (SELECT {cleaned} FROM {sample})"
    exprs: dict[str, str] = {}
    for i in range(len(cols)):
        v = f"__v{i}"
        exprs[f"{i}.nn"] = f"count({v})"
        exprs[f"{i}.bool"] = f"count(*) FILTER (WHERE lower({v}) IN {_sql_list(_TRUE + _FALSE)})"
        exprs |= _number_stats(i, f"__n{i}") | _date_stats(i, v)
    return _by_column(_aggregate(job.con, f"({inner})", exprs))


def _decide(stats: dict[str, Any], opts: _TypeOptions) -> tuple[_Conversion | None, dict[str, Any] | None]:
    """The conversion for one column (or None), and a note when the best candidate fell short."""
    nn = int(stats["nn"])
    if not nn:
        return None, None
    style = _number_style(stats)
    order = opts.date_order
    if order == "auto":
        order = "mdy" if stats["ev_mdy"] > stats["ev_dmy"] else "dmy"
    numeric = 0 if stats["lead0"] else 1
    candidates = [
        ("boolean", "", stats["bool"]),
        ("integer", style, numeric * stats[f"i_{style}"]),
        ("double", style, numeric * stats[f"n_{style}"]),
        ("timestamp" if stats["timed"] else "date", order, stats[f"d_{order}"]),
    ]
    kind, fmt, count = max(candidates, key=lambda c: int(c[2]))  # the first of equals wins
    rate = round(int(count) / nn, 4)
    if count and rate >= opts.min_rate:
        return _Conversion(kind, fmt, rate), None
    note: dict[str, Any] = {"best": kind, "parse_rate": rate}
    if stats["lead0"]:
        note["leading_zeros"] = int(stats["lead0"])
    return None, (note if count or stats["lead0"] else None)


def _format_label(conv: _Conversion) -> str:
    if conv.kind in ("integer", "double"):
        return {"us": "1,234.5", "eu": "1.234,5"}[conv.fmt]
    return {"dmy": "day first", "mdy": "month first"}.get(conv.fmt, "")


def _type_dataset(job: _Job, opts: _TypeOptions) -> dict[str, Any]:
    targets = [c for c in job.cols if c.is_text and (opts.columns is None or c.name in opts.columns)]
    decided: dict[str, _Conversion] = {}
    notes: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    if targets:
        job.report(0.0, "sampling")
        with _sample(job, targets) as sample:
            stats = _type_stats(job, sample, targets)
            for i, c in enumerate(targets):
                conv, note = _decide(stats[i], opts)
                if conv is not None:
                    decided[c.name] = conv
                    examples[c.name] = _type_examples(job, sample, c, conv)
                elif note is not None:
                    notes[c.name] = note
    job.report(0.4, "writing")
    rows = write_parquet(
        job.con, _layered(job.src, {n: conv.stages() for n, conv in decided.items()}), job.out
    )
    job.report(0.8, "counting")
    converted = _type_counts(job, decided, examples)
    out: dict[str, Any] = {"rows": rows, "converted": converted, "not_converted": notes}
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _failures_sql(src: str, col: str, conv: _Conversion) -> str:
    """Values of ``col`` that are not null-like yet do not convert (two columns, for :func:`_values`)."""
    ident = qident(col)
    value = _nest(ident, conv.stages())
    return f"SELECT {ident}, 0 FROM {src} WHERE {_clean_text(ident)} IS NOT NULL AND {value} IS NULL"


def _type_examples(job: _Job, sample: str, col: Col, conv: _Conversion) -> dict[str, Any]:
    value = _nest(col.ident, conv.stages())
    changed = f"{value} IS NOT NULL AND {col.ident} <> CAST({value} AS VARCHAR)"
    pairs = _pairs(job.con, f"SELECT {col.ident}, {value} FROM {sample} WHERE {changed}")
    return {"examples": pairs, "failed_examples": _values(job.con, _failures_sql(sample, col.name, conv))}


def _type_counts(job: _Job, decided: dict[str, _Conversion], examples: dict[str, Any]) -> dict[str, Any]:
    if not decided:
        return {}
    exprs: dict[str, str] = {}
    for i, n in enumerate(decided):
        exprs |= {f"{i}.nn": f"count({_clean_text(qident(n))})", f"{i}.all": f"count({qident(n)})"}
    src = _by_column(_aggregate(job.con, job.src, exprs))
    written = f"read_parquet({qstr(str(job.out))})"
    out = _by_column(
        _aggregate(job.con, written, {f"{i}.n": f"count({qident(n)})" for i, n in enumerate(decided)})
    )
    result: dict[str, Any] = {}
    for i, (n, conv) in enumerate(decided.items()):
        nn, converted = int(src[i]["nn"]), int(out[i]["n"])
        entry: dict[str, Any] = {"from": "VARCHAR", "to": conv.sql_type, "format": _format_label(conv)}
        entry |= {"parse_rate": conv.rate, "converted": converted, "failed": nn - converted}
        entry |= {"null_like_to_null": int(src[i]["all"]) - nn, "examples": examples[n]["examples"]}
        if nn > converted:  # read the first few from the file when the sample had none
            fails = examples[n]["failed_examples"] or _values(job.con, _failures_sql(job.src, n, conv))
            entry["failed_examples"] = fails
        result[n] = entry
    return result


# -------------------------------------------------------------------------------- field-standardizer
@dataclass(frozen=True)
class _StdOptions:
    columns: list[str] | None
    case: dict[str, str]
    case_all: str | None
    max_categories: int
    threshold: float
    mappings: dict[str, dict[str, str]]

    def case_for(self, name: str) -> str:
        """The case mode of a column: its own, ``lower`` for e-mail names, else the global one."""
        if name in self.case:
            return self.case[name]
        if "email" in name.lower():
            return "lower"
        return self.case_all or "keep"


def _case_param(p: _Params) -> tuple[dict[str, str], str | None]:
    value = p.raw.get("case")
    if value is None:
        return {}, None
    if isinstance(value, str):
        return {}, p.choice("case", _CASES, "keep")
    if not isinstance(value, dict) or not all(
        isinstance(v, str) and v.lower() in _CASES for v in value.values()
    ):
        raise p.bad("case", value, "must be one of " + ", ".join(_CASES) + " or an object {column: mode}")
    p.check_columns("case", value)
    return {str(k): str(v).lower() for k, v in value.items()}, None


def _mappings_param(p: _Params) -> dict[str, dict[str, str]]:
    value = p.table("mappings")
    ok = all(
        isinstance(m, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
        for m in value.values()
    )
    if not ok:
        raise p.bad("mappings", value, "must be an object {column: {from: to}} of strings")
    p.check_columns("mappings", value)
    return {str(col): {str(k): str(v) for k, v in m.items()} for col, m in value.items()}


def field_standardizer(ctx: AgentContext) -> AgentResult:
    """Trim and collapse whitespace, apply case and mappings, merge category spellings."""
    schemas = _schemas(ctx)
    p = _Params("field-standardizer", ctx.params, schemas)
    case, case_all = _case_param(p)
    opts = _StdOptions(
        p.columns("columns"),
        case,
        case_all,
        p.integer("max_categories", 50, 0, 1000),
        p.number("threshold", 90.0, 0.0, 100.0),
        _mappings_param(p),
    )
    echo = {
        "columns": opts.columns, "case": case or case_all or "keep", "max_categories": opts.max_categories,
        "threshold": opts.threshold, "mappings": opts.mappings or None,
    }  # fmt: skip
    return _run(ctx, "field-standardizer", schemas, echo, lambda job: _std_dataset(job, opts))


def _collapse_ws(e: str) -> str:
    needs = _regex(e, "[\\t\\n\\r\\x{0B}\\x{0C}\\x{A0}]|  ", full=False)
    fixed = f"trim(regexp_replace({e}, '[\\s\\x{{0B}}\\x{{A0}}]+', ' ', 'g'), ' ')"
    return f"CASE WHEN {needs} THEN {fixed} ELSE trim({e}, ' ') END"


def _case_stage(mode: str) -> Stage:
    if mode == "lower":
        return lambda e: f"lower({e})"
    if mode == "upper":
        return lambda e: f"upper({e})"
    if mode == "title":
        word = "upper(left(__w, 1)) || lower(substr(__w, 2))"
        return lambda e: f"array_to_string(list_transform(string_split({e}, ' '), lambda __w: {word}), ' ')"
    return lambda e: e


def _python_case(value: str, mode: str) -> str:
    if mode == "lower":
        return value.lower()
    if mode == "upper":
        return value.upper()
    if mode == "title":
        return " ".join(w[:1].upper() + w[1:].lower() for w in value.split(" "))
    return value


def _map_stage(mapping: dict[str, str], on_lower: bool = False) -> Stage:
    """``CASE`` rewriting the listed values (compared lower-cased when ``on_lower``)."""
    if not mapping:
        return lambda e: e
    whens = " ".join(f"WHEN {qstr(k)} THEN {qstr(v)}" for k, v in mapping.items())
    return lambda e: f"CASE {f'lower({e})' if on_lower else e} {whens} ELSE {e} END"


def _explicit(mapping: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in mapping.items():
        out.setdefault(" ".join(k.split()).lower(), v)
    return out


def _std_stages(col: Col, opts: _StdOptions, categories: dict[str, str]) -> list[Stage]:
    """Whitespace, explicit mapping, case, category merge: always four stages."""
    explicit = _explicit(opts.mappings.get(col.name, {}))
    return [
        _collapse_ws,
        _map_stage(explicit, on_lower=True),
        _case_stage(opts.case_for(col.name)),
        _map_stage(categories),
    ]


def _category_key(value: str) -> str:
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return "".join(ch for ch in text if not (ch.isspace() or unicodedata.category(ch).startswith("P")))


def _close(a: str, b: str, threshold: float) -> bool:
    digits = [ch for ch in a if ch.isdigit()] == [ch for ch in b if ch.isdigit()]
    return digits and fuzz.ratio(a, b) >= threshold


def category_map(
    values: Sequence[tuple[str, int]], threshold: float, fuzzy: bool, prefer: set[str]
) -> dict[str, str]:
    """Spelling → canonical spelling for values equal after normalising (or fuzzily close when ``fuzzy``)."""
    by_key: dict[str, list[tuple[str, int]]] = {}
    for value, n in values:
        if any(ch.isalpha() for ch in value):
            by_key.setdefault(_category_key(value), []).append((value, n))
    clusters: list[list[str]] = []
    for key in sorted(by_key, key=lambda k: (-sum(n for _, n in by_key[k]), k)):
        home = next((c for c in clusters if fuzzy and _close(c[0], key, threshold)), None)
        if home is None:
            clusters.append([key])
        else:
            home.append(key)
    mapping: dict[str, str] = {}
    for cluster in clusters:
        members = [m for key in cluster for m in by_key[key]]
        canonical = min(members, key=lambda m: (m[0] not in prefer, -m[1], m[0]))[0]
        mapping |= {v: canonical for v, _ in members if v != canonical}
    return mapping


def _categories(job: _Job, cols: Sequence[Col], opts: _StdOptions) -> dict[str, dict[str, str]]:
    """Category merges per low-cardinality column."""
    if not opts.max_categories or not cols:
        return {}
    exprs = {f"{i}.approx": f"approx_count_distinct({c.ident})" for i, c in enumerate(cols)}
    exprs |= {f"{i}.nn": f"count({c.ident})" for i, c in enumerate(cols)}
    stats = _by_column(_aggregate(job.con, job.src, exprs))
    out: dict[str, dict[str, str]] = {}
    for i, c in enumerate(cols):
        if stats[i]["approx"] > max(20 * opts.max_categories, 1000) or re.search(
            r"e[-_ ]?mail", c.name, re.I
        ):
            continue
        value = _nest("r", _std_stages(c, opts, {})[:3])
        rows = job.con.execute(
            f"SELECT v, sum(n)::BIGINT FROM (SELECT {value} AS v, n FROM "
            f"(SELECT {c.ident} AS r, count(*) AS n FROM {job.src} GROUP BY r)) "
            "WHERE v IS NOT NULL GROUP BY v ORDER BY 2 DESC, 1 "
            f"LIMIT {opts.max_categories + 1}"
        ).fetchall()
        if len(rows) > opts.max_categories or sum("@" in str(v) for v, _ in rows) * 2 > len(rows):
            continue
        mode = opts.case_for(c.name)
        prefer = {_python_case(v, mode) for v in opts.mappings.get(c.name, {}).values()}
        fuzzy = len({_category_key(str(v)) for v, _ in rows}) * 2 <= int(stats[i]["nn"])
        merged = category_map([(str(v), int(n)) for v, n in rows], opts.threshold, fuzzy, prefer)
        if merged:
            out[c.name] = merged
    return out


def _std_dataset(job: _Job, opts: _StdOptions) -> dict[str, Any]:
    targets = [c for c in job.cols if c.is_text and (opts.columns is None or c.name in opts.columns)]
    job.report(0.0, "finding categories")
    categories = _categories(job, targets, opts)
    stages = [_std_stages(c, opts, categories.get(c.name, {})) for c in targets]
    job.report(0.3, "writing")
    rows = write_parquet(
        job.con, _layered(job.src, {c.name: s for c, s in zip(targets, stages, strict=True)}), job.out
    )
    job.report(0.6, "counting changes")
    columns = _std_counts(job, targets, stages, categories, opts)
    out: dict[str, Any] = {"rows": rows, "values_changed": sum(v["changed"] for v in columns.values())}
    out["columns"] = columns
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _std_counts(
    job: _Job, cols: Sequence[Col], stages: Sequence[list[Stage]], categories: dict[str, dict[str, str]],
    opts: _StdOptions,
) -> dict[str, Any]:  # fmt: skip
    if not cols:
        return {}
    steps = ("whitespace", "mapped", "recased", "merged")
    exprs: dict[str, str] = {}
    for i in range(len(cols)):
        for d, step in enumerate(steps):
            exprs[f"{i}.{step}"] = f"count(*) FILTER (WHERE __s{i}_{d + 1} <> __s{i}_{d})"
        exprs[f"{i}.changed"] = f"count(*) FILTER (WHERE __s{i}_4 <> __s{i}_0)"
    stats = _by_column(_aggregate(job.con, f"({_traced(job.src, stages, cols)})", exprs))
    out: dict[str, Any] = {}
    for i, c in enumerate(cols):
        s = stats[i]
        if not s["changed"]:
            continue
        entry: dict[str, Any] = {"changed": s["changed"], **{k: s[k] for k in steps if s[k]}}
        entry["case"] = opts.case_for(c.name)
        if c.name in categories:
            entry["mapping"] = dict(list(categories[c.name].items())[:20])
        traced = _traced(job.src, [stages[i]], [c])
        entry["examples"] = _pairs(job.con, f"SELECT __s0_0, __s0_4 FROM ({traced}) WHERE __s0_4 <> __s0_0")
        out[c.name] = entry
    return out


# -------------------------------------------------------------------------------- duplicate-resolver
@dataclass(frozen=True)
class _DupOptions:
    keys: list[str] | None
    keep: str
    near: bool


def duplicate_resolver(ctx: AgentContext) -> AgentResult:
    """Remove exact duplicate rows, then rows equal after normalising text (or on ``key_columns``)."""
    schemas = _schemas(ctx)
    p = _Params("duplicate-resolver", ctx.params, schemas)
    opts = _DupOptions(
        p.columns("key_columns"), p.choice("keep", ("first", "most_complete"), "first"), p.flag("near", True)
    )
    echo = {"key_columns": opts.keys, "keep": opts.keep, "near": opts.near}
    return _run(ctx, "duplicate-resolver", schemas, echo, lambda job: _dup_dataset(job, opts))


def _dedupe_key(e: str) -> str:
    s = f"regexp_replace(lower(strip_accents({e})), '\\p{{P}}+', '', 'g')"
    s = f"regexp_replace({s}, '[\\s\\x{{0B}}\\x{{A0}}]+', ' ', 'g')"
    return f"nullif(trim({s}), '')"


def _dup_keys(job: _Job, opts: _DupOptions) -> list[str]:
    """Grouping expressions: the normalised key columns, or every column as is when exact-only."""
    key_cols = [c for c in job.cols if c.name in opts.keys] if opts.keys else job.cols
    if not opts.near or not key_cols:
        return [c.ident for c in job.cols]
    return [_dedupe_key(c.ident) if c.is_text else c.ident for c in key_cols]


def _dup_dataset(job: _Job, opts: _DupOptions) -> dict[str, Any]:
    if any(c.name == "file_row_number" for c in job.cols):
        rn, src = "__clean_rn", f"(SELECT *, row_number() OVER () - 1 AS __clean_rn FROM {job.src})"
    else:
        rn, src = "file_row_number", f"read_parquet({qstr(str(job.path))}, file_row_number=true)"
    keys = _dup_keys(job, opts)
    cols = ", ".join(c.ident for c in job.cols)
    nulls = " + ".join(f"({c.ident} IS NULL)::BIGINT" for c in job.cols) or "0"
    keyed = ", ".join(f"{k} AS __k{j}" for j, k in enumerate(keys))
    inner = f"SELECT {rn} AS __rn, hash({cols}) AS __h, {nulls} AS __z, {keyed} FROM {src}"
    keeper = "min(__rn)" if opts.keep == "first" else "arg_min(__rn, __z * 4294967296 + __rn)"
    group = ", ".join(f"__k{j}" for j in range(len(keys)))
    job.report(0.0, "grouping rows")
    with _temp_table(
        job.con,
        f"SELECT {keeper} AS __rn, count(*) AS __n, count(DISTINCT __h) AS __d, hash({group}) AS __g "
        f"FROM ({inner}) GROUP BY {group}",
    ) as kept:
        sums = "coalesce(sum(__n), 0), coalesce(sum(__n - __d), 0), coalesce(sum(__d - 1), 0)"
        row = job.con.execute(f"SELECT {sums} FROM {kept}").fetchone()
        rows, exact, near = (int(v) for v in row or (0, 0, 0))
        job.report(0.5, "writing")
        rows_out = write_parquet(
            job.con,
            f"SELECT {cols} FROM {src} WHERE {rn} IN (SELECT __rn FROM {kept}) ORDER BY {rn}",
            job.out,
        )
        job.report(0.8, "sampling groups")
        samples = _dup_samples(job, kept, src, rn, keys) if exact or near else []
    out: dict[str, Any] = {"rows_in": rows, "rows_out": rows_out, "exact_duplicates_removed": exact}
    out |= {"near_duplicates_removed": near, "keep": opts.keep, "sample_groups": samples}
    out["compared_on"] = (
        opts.keys if opts.keys and opts.near else ("all columns, normalised" if opts.near else "all columns")
    )
    if opts.keys is not None:
        out["missing_columns"] = _missing(job.cols, opts.keys)
    return out


def _dup_samples(job: _Job, kept: str, src: str, rn: str, keys: list[str]) -> list[dict[str, Any]]:
    """Up to three groups (near-duplicate ones first): the kept row and up to three removed rows."""
    groups = job.con.execute(
        f"SELECT __g, __rn, __n FROM {kept} WHERE __n > 1 ORDER BY __d > 1 DESC, __rn LIMIT 3"
    ).fetchall()
    if not groups:
        return []
    names = [c.name for c in job.cols]
    cols = ", ".join(c.ident for c in job.cols)
    ids = ", ".join(str(int(g)) for g, _, _ in groups)
    rows = job.con.execute(
        f"SELECT * FROM (SELECT hash({', '.join(keys)}) AS __g, {rn} AS __rn, {cols} FROM {src}) "
        f"WHERE __g IN ({ids}) ORDER BY __rn LIMIT 60"
    ).fetchall()
    out: list[dict[str, Any]] = []
    for g, keeper, n in groups:
        members = [r for r in rows if r[0] == g]
        as_dict = [{name: clip(v) for name, v in zip(names, r[2:], strict=True)} for r in members]
        kept_row = next((d for d, r in zip(as_dict, members, strict=True) if r[1] == keeper), None)
        removed = [d for d, r in zip(as_dict, members, strict=True) if r[1] != keeper][:3]
        out.append({"rows": int(n), "kept": kept_row, "removed": removed})
    return out


# ----------------------------------------------------------------------------------- outlier-flagger
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
    p = _Params("outlier-flagger", ctx.params, schemas)
    opts = _OutlierOptions(
        p.columns("columns"),
        p.choice("method", ("iqr", "zscore"), "iqr"),
        p.number("k", 1.5, 0.0, 100.0, open_low=True),
        p.number("threshold", 3.0, 0.0, 100.0, open_low=True),
        p.choice("action", ("flag", "drop"), "flag"),
    )
    echo: dict[str, Any] = {"columns": opts.columns, "method": opts.method, "action": opts.action}
    echo |= {"k": opts.k} if opts.method == "iqr" else {"threshold": opts.threshold}
    return _run(ctx, "outlier-flagger", schemas, echo, lambda job: _outlier_dataset(job, opts))


def _id_like(name: str) -> bool:
    low = name.lower()
    return low in ("id", "uuid", "key") or low.endswith(("_id", " id", "-id"))


def _outlier_targets(job: _Job, opts: _OutlierOptions) -> tuple[list[tuple[Col, str]], dict[str, str]]:
    """The checked columns with their DOUBLE expression, and notes on named columns that are skipped."""
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
            targets.append((c, _parse_number(_numstr(_clean_text(c.ident)), styles[c.name], False)))
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
    high = (
        f"NOT isnan({x}) AND {x} > CAST({b['upper']!r} AS DOUBLE)"
        if b["upper"] is not None
        else f"{x} = 'inf'::DOUBLE"
    )
    return low, high


def _outlier_dataset(job: _Job, opts: _OutlierOptions) -> dict[str, Any]:
    job.report(0.0, "choosing columns")
    targets, notes = _outlier_targets(job, opts)
    exprs: dict[str, str] = {}
    for i, (_, x) in enumerate(targets):
        finite = f"FILTER (WHERE isfinite({x}))"
        exprs |= {f"{i}.n": f"count({x}) {finite}"}
        if opts.method == "iqr":
            exprs[f"{i}.q"] = f"quantile_cont({x}, [0.25, 0.75]) {finite}"
        else:
            exprs |= {f"{i}.mean": f"avg({x}) {finite}", f"{i}.std": f"stddev_samp({x}) {finite}"}
    job.report(0.1, "computing bounds")
    stats = _by_column(_aggregate(job.con, job.src, exprs))
    bounds = [_bounds(stats[i], opts) for i in range(len(targets))]
    conds = [_outlier_conditions(x, b) for (_, x), b in zip(targets, bounds, strict=True)]
    flags = {
        f"{c.name}_is_outlier": f"coalesce(({lo}) OR ({hi}), false)"
        for (c, _), (lo, hi) in zip(targets, conds, strict=True)
    }
    job.report(0.4, "counting outliers")
    counts = _outlier_counts(job, targets, conds)
    job.report(0.6, "writing")
    if opts.action == "drop":
        where = " OR ".join(f"({f})" for f in flags.values()) or "false"
        rows_out = write_parquet(job.con, f"SELECT * FROM {job.src} WHERE NOT ({where})", job.out)
    else:
        rows_out = write_parquet(
            job.con, f"SELECT {', '.join(_select_with(job.cols, flags))} FROM {job.src}", job.out
        )
    columns = {
        c.name: {"method": opts.method, "values": int(stats[i]["n"]), **_rounded(bounds[i]), **counts[i]}
        for i, (c, _) in enumerate(targets)
    }
    out: dict[str, Any] = {"rows_in": int(counts.get(-1, {}).get("rows", 0)), "rows_out": rows_out}
    out |= {"rows_flagged": int(counts.get(-1, {}).get("flagged", 0)), "columns": columns}
    if opts.action == "drop":
        out["rows_dropped"] = out["rows_in"] - rows_out
    else:
        out["columns_added"] = list(flags)
    if notes:
        out["skipped"] = notes
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _rounded(b: dict[str, Any]) -> dict[str, Any]:
    return {k: _num(v) for k, v in b.items()}


def _outlier_counts(
    job: _Job, targets: Sequence[tuple[Col, str]], conds: Sequence[tuple[str, str]]
) -> dict[int, dict[str, Any]]:
    exprs = {"-1.rows": "count(*)"}
    any_flag = " OR ".join(f"({lo}) OR ({hi})" for lo, hi in conds) or "false"
    exprs["-1.flagged"] = f"count(*) FILTER (WHERE {any_flag})"
    for i, ((_, x), (lo, hi)) in enumerate(zip(targets, conds, strict=True)):
        exprs |= {
            f"{i}.below": f"count(*) FILTER (WHERE {lo})",
            f"{i}.above": f"count(*) FILTER (WHERE {hi})",
        }
        exprs |= {f"{i}.min_flagged": f"min({x}) FILTER (WHERE ({lo}) OR ({hi}))"}
        exprs |= {f"{i}.max_flagged": f"max({x}) FILTER (WHERE ({lo}) OR ({hi}))"}
    stats = _by_column(_aggregate(job.con, job.src, exprs))
    for i in range(len(targets)):
        s = stats[i]
        s["outliers"] = int(s["below"]) + int(s["above"])
        s["min_flagged"], s["max_flagged"] = _num(s["min_flagged"]), _num(s["max_flagged"])
    return stats


def _select_with(cols: Sequence[Col], added: dict[str, str]) -> list[str]:
    """Select list of ``cols`` with ``added`` expressions replacing same-named columns or appended."""
    items = [f"{added[c.name]} AS {c.ident}" if c.name in added else c.ident for c in cols]
    names = {c.name for c in cols}
    return items + [f"{expr} AS {qident(name)}" for name, expr in added.items() if name not in names]


# ----------------------------------------------------------------------------------- email-validator
@dataclass(frozen=True)
class _EmailOptions:
    columns: list[str] | None
    action: str
    disposable: frozenset[str]


def email_validator(ctx: AgentContext) -> AgentResult:
    """Validate e-mail columns, lower-case their domains and flag disposable domains."""
    schemas = _schemas(ctx)
    p = _Params("email-validator", ctx.params, schemas)
    extra = p.strings("disposable_domains")
    opts = _EmailOptions(
        p.columns("columns"),
        p.choice("action", ("flag", "null_invalid"), "flag"),
        DISPOSABLE_DOMAINS | {d.strip().lower() for d in extra},
    )
    echo = {"columns": opts.columns, "action": opts.action, "disposable_domains": extra or None}
    return _run(ctx, "email-validator", schemas, echo, lambda job: _email_dataset(job, opts))


def _email_targets(job: _Job, opts: _EmailOptions) -> tuple[list[Col], dict[str, str]]:
    if opts.columns is not None:
        chosen = [c for c in job.cols if c.name in opts.columns]
        return [c for c in chosen if c.is_text], {
            c.name: f"not text ({c.type})" for c in chosen if not c.is_text
        }
    text = [c for c in job.cols if c.is_text]
    named = [c for c in text if re.search(r"e[-_ ]?mail", c.name, re.I)]
    others = [c for c in text if c not in named]
    if not others:
        return named, {}
    with _sample(job, others) as sample:
        exprs = {f"{i}.nn": f"count({_clean_text(c.ident)})" for i, c in enumerate(others)}
        exprs |= {
            f"{i}.shaped": f"count(*) FILTER (WHERE {_regex(_trim(c.ident), _EMAIL_SHAPE)})"
            for i, c in enumerate(others)
        }
        stats = _by_column(_aggregate(job.con, sample, exprs))
    shaped = [c for i, c in enumerate(others) if stats[i]["nn"] and stats[i]["shaped"] * 2 >= stats[i]["nn"]]
    return [c for c in text if c in named or c in shaped], {}


def _email_exprs(i: int, col: Col, opts: _EmailOptions) -> dict[str, str]:
    """Expressions over :func:`_email_source` for the rewritten value and the two flag columns."""
    t, v, d = f"__clean_t{i}", f"__clean_v{i}", f"__clean_d{i}"
    parent = f"regexp_replace({d}, '^[^.]+\\.', '')"
    listed = _sql_list(sorted(opts.disposable))
    otherwise = f"WHEN NOT {v} THEN NULL " if opts.action == "null_invalid" else ""
    return {
        "value": f"CASE WHEN {v} THEN split_part({t}, '@', 1) || '@' || {d} {otherwise}ELSE {col.ident} END",
        "valid": v,
        "disposable": f"CASE WHEN {v} THEN ({d} IN {listed} OR {parent} IN {listed}) END",
    }


def _email_source(job: _Job, cols: Sequence[Col]) -> str:
    """``job.src`` plus, per column, the cleaned value, its validity and its lower-cased domain."""
    cleaned = ", ".join(f"{_clean_text(c.ident)} AS __clean_t{i}" for i, c in enumerate(cols))
    checks = []
    for i in range(len(cols)):
        t = f"__clean_t{i}"
        ok = f"{_regex(t, _EMAIL_RE)} AND length({t}) <= 254 AND strpos({t}, '@') <= 65"
        checks.append(f"CASE WHEN {t} IS NULL THEN NULL ELSE {ok} END AS __clean_v{i}")
        checks.append(f"lower(split_part({t}, '@', 2)) AS __clean_d{i}")
    return f"(SELECT *, {', '.join(checks)} FROM (SELECT *, {cleaned} FROM {job.src}))"


def _email_dataset(job: _Job, opts: _EmailOptions) -> dict[str, Any]:
    job.report(0.0, "finding e-mail columns")
    targets, notes = _email_targets(job, opts)
    source = _email_source(job, targets)
    exprs = [_email_exprs(i, c, opts) for i, c in enumerate(targets)]
    replaced = {c.name: e["value"] for c, e in zip(targets, exprs, strict=True)}
    for c, e in zip(targets, exprs, strict=True):
        replaced |= {f"{c.name}_valid": e["valid"], f"{c.name}_disposable": e["disposable"]}
    job.report(0.2, "writing")
    rows = write_parquet(
        job.con, f"SELECT {', '.join(_select_with(job.cols, replaced))} FROM {source}", job.out
    )
    job.report(0.6, "counting")
    columns = _email_counts(job, source, targets, exprs)
    out: dict[str, Any] = {"rows": rows, "columns": columns}
    out["columns_added"] = [n for c in targets for n in (f"{c.name}_valid", f"{c.name}_disposable")]
    if notes:
        out["skipped"] = notes
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _email_counts(
    job: _Job, source: str, cols: Sequence[Col], exprs: Sequence[dict[str, str]]
) -> dict[str, Any]:
    if not cols:
        return {}
    agg: dict[str, str] = {}
    for i, (c, e) in enumerate(zip(cols, exprs, strict=True)):
        v = f"__clean_v{i}"
        agg |= {f"{i}.checked": f"count({v})", f"{i}.valid": f"count(*) FILTER (WHERE {v})"}
        agg |= {
            f"{i}.invalid": f"count(*) FILTER (WHERE NOT {v})",
            f"{i}.disposable": f"count(*) FILTER (WHERE {e['disposable']})",
        }
        agg[f"{i}.normalised"] = f"count(*) FILTER (WHERE {v} AND {e['value']} <> {c.ident})"
    stats = _by_column(_aggregate(job.con, source, agg))
    out: dict[str, Any] = {}
    for i, (c, e) in enumerate(zip(cols, exprs, strict=True)):
        s: dict[str, Any] = {k: int(v) for k, v in stats[i].items()}
        v = f"__clean_v{i}"
        if s["invalid"]:
            s["invalid_examples"] = _values(job.con, f"SELECT {c.ident}, 0 FROM {source} WHERE NOT {v}")
        if s["normalised"]:
            s["normalised_examples"] = _pairs(
                job.con,
                f"SELECT {c.ident}, {e['value']} FROM {source} WHERE {v} AND {e['value']} <> {c.ident}",
            )
        if s["disposable"]:
            rows = job.con.execute(
                f"SELECT __clean_d{i}, count(*) FROM {source} WHERE {e['disposable']} "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"
            ).fetchall()
            s["disposable_domains"] = {str(d): int(n) for d, n in rows}
        out[c.name] = s
    return out
