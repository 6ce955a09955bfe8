"""The clean-my-data agents: six transforming agents that rewrite the chained datasets.

Each agent reads every dataset of ``ctx.current`` with DuckDB (``read_parquet``), writes one new Parquet file
per dataset under ``ctx.workdir`` with a single ``COPY (SELECT ...) TO`` (the dataset keeps its name and its
row order) and returns the new files as ``AgentResult.current``. Only aggregates, a reservoir sample of at
most :data:`SAMPLE_ROWS` rows (to detect types, number styles, date orders and e-mail columns), the distinct
values of low-cardinality columns and a few example rows reach Python, so million-row files take seconds.
Counts of what changed are read by a ``POSITIONAL JOIN`` of the input and the output file, which relies on
DuckDB's default ``preserve_insertion_order = true`` (and on never planning a join in the writing query).

Summaries are JSON-safe: ``{"agent", "params", "datasets": {name: {...}}}`` with per-column counts and a few
``[before, after]`` examples (strings clipped to :data:`VALUE_CHARS` characters). "Text" means a ``VARCHAR``
column (what CSV input gives). "Null-like" means a text value that, trimmed of whitespace and lower-cased,
is one of :data:`NULL_LIKE` (``''`` included, so whitespace-only too); only values of up to 12 characters
or starting with whitespace are tested, so a long value padded at its end only is not seen as null-like.

Bad params raise ``BadInput(code="BAD_PARAMS")`` naming the agent, the param and the value. A column param
naming a column that no current dataset has is a bad param too; a dataset that lacks a column another dataset
has lists it under ``missing_columns``.

``null-handler``
    Null-like text values (and NaN in float columns) become NULL. Params: ``strategy``: ``keep``
    (default), ``drop_rows`` (drop rows with a null in ``columns``, default all), ``fill`` (fill the nulls
    of ``columns``: numeric columns, and text columns whose values (>= 90 %) are numbers, with
    ``fill_numeric``: ``mean``, ``median`` (default), ``zero`` or a number, written in the column's number
    style; other text columns with ``fill_text``, default ``"unknown"``; other types are left alone) or
    ``drop_columns_over`` (only drop columns, threshold 0.5 unless given). ``drop_columns_over``: number
    0..1, with any strategy: drop columns (of ``columns``) whose null share after normalising exceeds it
    (never every column). Summary: rows in/out/dropped, null-likes normalised, values filled, columns
    dropped, and per column with nulls: SQL nulls, null-likes (with the commonest spellings), fill value.

``type-fixer``
    Converts text columns where at least ``min_parse_rate`` (number in (0, 1], default 0.9) of the
    non-null-like values parse: booleans (``true/false yes/no y/n t/f 1/0``, any case) to BOOLEAN; numbers
    with thousands separators (``,`` ``'`` or space; ``.`` or space in European style, chosen only when some
    values are European-only and none US-only), currency symbols/codes and ``(1.5)`` negatives to BIGINT
    (all integral) or DOUBLE; dates to DATE, or TIMESTAMP when any value has a time (``10:30``,
    ``10:30:15.5``, ``3:04 PM``; a zone suffix is dropped, keeping the local time). Dates: ISO
    (``2024-01-31``, ``2024/01/31``, ``2024.01.31``), ``d/m/Y`` or ``m/d/Y`` with ``/ - .`` and 2- or
    4-digit years, ``12 Jan 2024``, ``12-Jan-24``, ``Jan 12, 2024``, ``Mon, 12th January 2024`` and
    ``20240131``. Numeric dates are read day or month first per separator, from the column's values (a first
    part > 12 means day first, a second part > 12 month first; undecided separators follow the whole column,
    then day first). The kind parsing the most values wins, ties going to the first of boolean, integer,
    double, date (so ``0``/``1`` is boolean and a column of ``20240131``-style values stays an integer).
    Integer-looking values with leading zeros (``007``) keep a column text. Null-like values become NULL;
    other values that fail become NULL and are counted, with examples. Params: ``min_parse_rate``;
    ``columns`` (default all text columns); ``date_order``: ``auto`` (default), ``dmy`` or ``mdy`` (all
    separators). Summary per converted column: from, to, format, parse rate (on the sample), values
    converted, failed (with examples) and null-like; per column left alone that looked partly parseable:
    the best kind (boolean, number or date) and its rate.

``field-standardizer``
    For text columns (``columns``, default all): trim and collapse whitespace; apply explicit ``mappings``
    ``{column: {from: to}}`` (``from`` matched ignoring case and surrounding whitespace); apply ``case``
    (``lower``, ``upper``, ``title`` or ``keep``; a string sets every column, ``{column: mode}`` some;
    columns named like e-mail are lower-cased unless the object form names them; the rest default to
    ``keep``); then, for columns with at most ``max_categories`` (int 0..1000, default 50; 0 disables)
    distinct values, merge spellings equal after normalising case, whitespace, punctuation and accents and,
    where values repeat (distinct spellings at most half the non-null values), spellings whose normalised
    forms have a rapidfuzz ratio >= ``threshold`` (0..100, default 90) and the same digits, into the group's
    most frequent spelling (an explicit mapping target wins). Values without letters and e-mail columns are
    never merged. Summary per changed column: values changed, case mode, the mapping used, examples.

``duplicate-resolver``
    Removes exact duplicate rows, then near-duplicates: rows equal on ``key_columns`` (default all columns)
    once text is lower-cased, accent- and punctuation-stripped, trimmed and whitespace-collapsed (an empty
    result counts as NULL). Params: ``key_columns``; ``keep``: ``first`` (default) or ``most_complete``
    (the row with the fewest nulls, then the first); ``near``: bool (default true; false removes exact
    duplicates only). Summary: rows in/out, exact and near duplicates removed, up to three sample groups
    (near ones first: the kept row and up to two removed ones).

``outlier-flagger``
    Numeric columns (``columns``, default every numeric column and every text column whose values
    (>= 90 %) are numbers, except id-like names (``id``, ``uuid``, ``key``, ``*_id``) and codes with leading
    zeros). ``method``: ``iqr`` (default; bounds ``q1 - k*iqr`` and ``q3 + k*iqr``, ``k`` in (0, 100],
    default 1.5) or ``zscore`` (``|x - mean| / stddev > threshold``, in (0, 100], default 3). Infinities are
    outliers, NaN and nulls are not. ``action``: ``flag`` (default: adds BOOLEAN ``<col>_is_outlier``, false
    for nulls, replacing a column of that name) or ``drop`` (removes flagged rows, adds nothing). Summary
    per column: quartiles or mean/stddev, bounds, values below/above, the flagged range.

``email-validator``
    Columns named like e-mail, text columns whose values are mostly (>= 50 %) e-mail shaped, or ``columns``.
    A value is valid when, trimmed, it matches ``local@domain.tld`` (RFC 5322 atom characters, no spaces,
    no leading/trailing/consecutive dots, labels of letters/digits/hyphens, a TLD of >= 2 letters, local
    part <= 64 and address <= 254 characters). Valid values are written trimmed with the domain
    lower-cased. Adds BOOLEAN ``<col>_valid`` and ``<col>_disposable`` (the domain, or a domain it is a
    subdomain of, in :data:`DISPOSABLE_DOMAINS` or ``disposable_domains``), both NULL where the value is
    null or null-like (``_disposable`` also where invalid). Params: ``columns``; ``action``: ``flag``
    (default) or ``null_invalid`` (invalid values become NULL); ``disposable_domains``: extra domains (list
    of strings). Summary per column: values checked, valid, invalid (with examples), disposable (with the
    commonest domains) and rewritten (with examples).
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
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
SAMPLE_ROWS = 20_000
#: Examples kept per column in summaries.
EXAMPLES = 3
#: Longest example string kept in summaries.
VALUE_CHARS = 80
#: Built-in disposable e-mail domains (a subdomain of one counts too).
DISPOSABLE_DOMAINS: frozenset[str] = frozenset(
    """10minutemail.com 20minutemail.com burnermail.io discard.email dispostable.com emailondeck.com
    fakeinbox.com getairmail.com getnada.com guerrillamail.com guerrillamail.net guerrillamailblock.com
    mailcatch.com maildrop.cc mailinator.com mailnesia.com mintemail.com mohmal.com moakt.com mytemp.email
    sharklasers.com spamgourmet.com temp-mail.org tempail.com tempmail.com tempmailo.com tempr.email
    throwawaymail.com trashmail.com yopmail.com""".split()
)

_WS = " \t\n\r\x0b\x0c\xa0"
_SHORT = 12
_NULL_RE = r"(?i)[\s\x{A0}]*(?:" + "|".join(re.escape(v) for v in NULL_LIKE if v) + r")?[\s\x{A0}]*"
_INT_TYPES = frozenset(
    "TINYINT SMALLINT INTEGER BIGINT HUGEINT UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT".split()
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})
_TRUE = ("true", "yes", "y", "t", "1")
_FALSE = ("false", "no", "n", "f", "0")
_CASES = ("keep", "lower", "upper", "title")

_CURRENCY = r"\s*(?:[$€£¥₹]|(?i:\b(?:usd|eur|gbp|chf|jpy|inr|cad|aud)\b))\s*"
_US_INT = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,3}(?: \d{3})+|\d+)"
_US_NUM = (
    r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:\.\d*)?|\.\d+)"
    r"(?:[eE][+-]?\d+)?"
)
_EU_INT = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?: \d{3})+|\d+)"
_EU_NUM = r"[+-]?(?:(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:,\d+)?|,\d+)"

_TIME = r"(?:,?[t ]+(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?\s*([ap]m)?)?"
_TIME_FIELDS = ("hh", "mi", "ss", "ap")
_NUM_DATE = r"^(\d{1,2})([-/.])(\d{1,2})[-/.](\d{4}|\d{2})" + _TIME + r"\s*(?:z|utc|[+-]\d{2}:?\d{2})?$"
_TEXT_DATE = (
    r"^(?:[a-z]+\.?,?\s+)?(?:(\d{1,2})(?:st|nd|rd|th)?[-/ .]+([a-z]+)\.?|([a-z]+)\.?[-/ .]+(\d{1,2})"
    r"(?:st|nd|rd|th)?)[-/ ,.]+(\d{4}|\d{2})" + _TIME + "$"
)
_NUMBER_SHAPE = r"[-+]?[0-9.,' ]*[0-9][0-9.,' ]*(?:[eE][-+]?[0-9]+)?"
_COMPACT_DATE = r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_ISO_SHAPE = r"^\d{4}[-/.]\d{1,2}[-/.]\d"
_NUMERIC_DATE_SHAPE = r"^\d{1,2}[-/.]\d{1,2}[-/.]\d"
_ODD_WS = r"[\t\n\r\x{0B}\x{0C}\x{A0}]"
_ANY_WS = r"[\s\x{0B}\x{A0}]+"
_PUNCT = r"\p{P}+"
_SEPARATORS = ("/", ".", "-")
_MONTH_HINT = r"(?i)(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = _MONTHS + (
    "january", "february", "march", "april", "june", "july", "august", "september", "sept", "october",
    "november", "december",
)  # fmt: skip

_EMAIL = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_EMAIL_SHAPE = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_EMAIL_NAME = re.compile(r"e[-_ ]?mail", re.IGNORECASE)


# ------------------------------------------------------------------------------------------------ SQL
def qident(name: str) -> str:
    """Quote an SQL identifier (column names may contain spaces or quotes)."""
    return '"' + name.replace('"', '""') + '"'


def qstr(text: str) -> str:
    """Quote an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(qstr(v) for v in values) + ")"


def _one_of(expr: str, values: Sequence[str]) -> str:
    """SQL condition: ``expr`` is one of ``values``. DuckDB plans an ``IN`` list of five or more constants
    as a join evaluated on every row (even inside a ``CASE`` branch few rows reach), so lists of four."""
    chunks = [f"{expr} IN {_sql_list(values[k : k + 4])}" for k in range(0, len(values), 4)]
    return f"({' OR '.join(chunks)})"


def _rx(expr: str, pattern: str, full: bool = False) -> str:
    return f"regexp_{'full_match' if full else 'matches'}({expr}, {qstr(pattern)})"


def _trim_ws(expr: str) -> str:
    return f"trim({expr}, {qstr(_WS)})"


def null_like(e: str) -> str:
    """SQL condition: the text value is null-like. The regular expression only runs on short values and
    values starting with whitespace, so a long value padded at its end only is not seen as null-like."""
    maybe = f"strlen({e}) <= {_SHORT} OR {e} < '!' OR {e} >= {qstr(chr(160))}"
    return f"(({maybe}) AND {_rx(e, _NULL_RE, full=True)})"


def clean_text(e: str) -> str:
    """The text value trimmed of whitespace, NULL where it is null-like."""
    odd = f"{e} < '!' OR {e} >= {qstr(chr(160))}"  # leading whitespace other than a space, or non-ASCII
    return f"CASE WHEN {null_like(e)} THEN NULL WHEN {odd} THEN {_trim_ws(e)} ELSE trim({e}) END"


def _layered(src: str, stages: dict[str, list[Stage]]) -> str:
    """``SELECT *`` from ``src`` with each listed column rewritten by its stages, one subquery per step."""
    sql = f"SELECT * FROM {src}"
    for d in range(max((len(s) for s in stages.values()), default=0)):
        repl = [f"{s[d](qident(name))} AS {qident(name)}" for name, s in stages.items() if d < len(s)]
        sql = f"SELECT * REPLACE ({', '.join(repl)}) FROM ({sql})"
    return sql


def _nest(expr: str, stages: Sequence[Stage]) -> str:
    """All stages applied in one expression (fine for samples; :func:`_layered` for whole files)."""
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
    return dict(zip(exprs, _row(con, f"SELECT {', '.join(exprs.values())} FROM {sql_from}"), strict=True))


def _by_column(flat: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Split ``{"3.min": v}`` aggregate results into ``{3: {"min": v}}``."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        idx, stat = key.split(".", 1)
        out.setdefault(int(idx), {})[stat] = value
    return out


def _row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """The one row of an aggregate query."""
    row = con.execute(sql).fetchone()
    if row is None:  # an aggregate query always returns a row
        raise RuntimeError("aggregate query returned no row")
    return tuple(row)


def write_parquet(con: duckdb.DuckDBPyConnection, select: str, out: Path) -> int:
    """Write the rows of ``select`` to a Parquet file; returns how many were written."""
    row = con.execute(f"COPY ({select}) TO {qstr(str(out))} (FORMAT parquet)").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _temp_table(con: duckdb.DuckDBPyConnection, select: str) -> Iterator[str]:
    """A temporary table holding the rows of ``select``, dropped afterwards."""
    name = f"__clean_{uuid.uuid4().hex}"
    con.execute(f"CREATE TEMP TABLE {name} AS {select}")
    try:
        yield name
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def _pairs(con: duckdb.DuckDBPyConnection, sql: str, limit: int = EXAMPLES) -> list[list[Any]]:
    """Distinct ``[before, after]`` rows of a two-column query (reads a few dozen rows at most)."""
    out: list[list[Any]] = []
    for row in con.execute(f"{sql} LIMIT {limit * 8}").fetchall():
        pair = [clip(v) for v in row]
        if pair not in out:
            out.append(pair)
        if len(out) == limit:
            break
    return out


def _values(con: duckdb.DuckDBPyConnection, sql: str, limit: int = 5) -> list[Any]:
    """Distinct values of a one-column query (reads a few dozen rows at most)."""
    return [p[0] for p in _pairs(con, f"SELECT *, 0 FROM ({sql})", limit)]


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

    def number(self, name: str, default: float, low: float, high: float, open_low: bool = False) -> float:
        """A finite number in ``[low, high]`` (``(low, high]`` when ``open_low``)."""
        value = self.optional_number(name, low, high, open_low)
        return default if value is None else value

    def optional_number(self, name: str, low: float, high: float, open_low: bool = False) -> float | None:
        """Like :meth:`number`, None when absent."""
        value = self.raw.get(name)
        if value is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < value if open_low else low <= value) or value > high:
            raise self.bad(name, value, f"must be a number in {'(' if open_low else '['}{low:g}, {high:g}]")
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
        """Column names that some current dataset has; None when the param is absent."""
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

    @property
    def paired(self) -> str:
        """Input (alias ``i``) and output (alias ``o``) side by side, row by row."""
        return f"{self.src} AS i POSITIONAL JOIN read_parquet({qstr(str(self.out))}) AS o"

    def sample(self, cols: Sequence[Col]) -> AbstractContextManager[str]:
        """A temporary table with a reservoir sample (at most :data:`SAMPLE_ROWS` rows) of ``cols``."""
        sample = f"USING SAMPLE reservoir({SAMPLE_ROWS} ROWS) REPEATABLE (42)"
        return _temp_table(
            self.con, f"SELECT {', '.join(c.ident for c in cols) or '*'} FROM {self.src} {sample}"
        )


def _frame(sample: str, cols: Sequence[Col], dates: bool = False) -> str:
    """``sample`` with each column cleaned (``__v{i}``), as a number string (``__n{i}``) and, when
    ``dates``, prepared for date parsing (``__d{i}``)."""
    cleaned = ", ".join(f"{clean_text(c.ident)} AS __v{i}" for i, c in enumerate(cols))
    extra = [_numstr(f"__v{i}") + f" AS __n{i}" for i in range(len(cols))]
    extra += [_date_prep(f"__v{i}") + f" AS __d{i}" for i in range(len(cols)) if dates]
    return f"(SELECT *, {', '.join(extra)} FROM (SELECT *, {cleaned} FROM {sample}))"


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
    return AgentResult(
        summary=jsonable({"agent": agent, "params": params, "datasets": datasets}), current=current
    )


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


# ------------------------------------------------------------------------------------------- numbers
def _numstr(v: str) -> str:
    """A number string without currency symbols/codes, with ``(x)`` written ``-x``."""
    unwrapped = f"CASE WHEN {v} LIKE '(%)' THEN '-' || substr({v}, 2, length({v}) - 2) ELSE {v} END"
    return f"trim(regexp_replace({unwrapped}, {qstr(_CURRENCY)}, '', 'g'))"


def _fast_number(v: str, style: str, integer: bool) -> str:
    """DuckDB's own cast where it cannot misread the style (no thousands separators)."""
    if integer:
        plain = f"strpos({v}, '.') = 0" + (f" AND strpos({v}, ',') = 0" if style == "eu" else "")
        return f"CASE WHEN {plain} THEN TRY_CAST({v} AS BIGINT) END"
    if style == "eu":
        return f"CASE WHEN strpos({v}, '.') = 0 THEN TRY_CAST(replace({v}, ',', '.') AS DOUBLE) END"
    return f"TRY_CAST({v} AS DOUBLE)"


def _slow_number(ns: str, style: str, integer: bool) -> str:
    """A :func:`_numstr` string with thousands separators checked and removed, cast; else NULL."""
    if style == "eu":
        pattern, plain = (
            (_EU_INT if integer else _EU_NUM),
            f"replace(replace(replace({ns}, '.', ''), ' ', ''), ',', '.')",
        )
    else:
        pattern, plain = (
            (_US_INT if integer else _US_NUM),
            f"replace(replace(replace({ns}, ',', ''), '''', ''), ' ', '')",
        )
    cast = "BIGINT" if integer else "DOUBLE"
    return f"CASE WHEN {_rx(ns, pattern, full=True)} THEN TRY_CAST({plain} AS {cast}) END"


def _number_stages(style: str, integer: bool) -> list[Stage]:
    """Stages from a cleaned text value to BIGINT/DOUBLE (NULL when it is no number of that style)."""
    return [
        lambda v: f"CASE WHEN {_fast_number(v, style, integer)} IS NULL THEN {_numstr(v)} ELSE {v} END",
        lambda v: f"coalesce({_fast_number(v, style, integer)}, {_slow_number(v, style, integer)})",
    ]


def _number_stats(i: int, v: str, ns: str) -> dict[str, str]:
    """Sample aggregates (over cleaned ``v`` and its :func:`_numstr` ``ns``) deciding numbers and style."""
    us, eu = _rx(ns, _US_NUM, full=True), _rx(ns, _EU_NUM, full=True)
    exprs = {
        f"{i}.us_only": f"count(*) FILTER (WHERE {us} AND NOT {eu})",
        f"{i}.eu_only": f"count(*) FILTER (WHERE {eu} AND NOT {us})",
        f"{i}.lead0": f"count(*) FILTER (WHERE {_rx(ns, '^[+-]?0[0-9]')})",
    }
    for style in ("us", "eu"):
        for kind, integer in (("n", False), ("i", True)):
            parsed = f"coalesce({_fast_number(v, style, integer)}, {_slow_number(ns, style, integer)})"
            exprs[f"{i}.{kind}_{style}"] = f"count({parsed})"
    return exprs


def _reaches(count: int, total: int, rate: float) -> bool:
    """Whether ``count`` (> 0) of ``total`` values is at least the share ``rate``."""
    return count > 0 and count / total >= rate - 1e-9


def _number_style(stats: dict[str, Any]) -> str:
    return "eu" if stats["eu_only"] > 0 and stats["us_only"] == 0 else "us"


def _format_number(value: float, style: str) -> str:
    text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(round(value, 6))
    return text.replace(".", ",") if style == "eu" else text


def _numeric_text(job: _Job, cols: Sequence[Col]) -> dict[str, str]:
    """The text columns (of ``cols``) holding numbers (>= 90 % of values, no leading zeros), by style."""
    if not cols:
        return {}
    with job.sample(cols) as sample:
        exprs: dict[str, str] = {}
        for i in range(len(cols)):
            exprs |= {f"{i}.nn": f"count(__v{i})"} | _number_stats(i, f"__v{i}", f"__n{i}")
        stats = _by_column(_aggregate(job.con, _frame(sample, cols), exprs))
    out: dict[str, str] = {}
    for i, c in enumerate(cols):
        s, style = stats[i], _number_style(stats[i])
        if not s["lead0"] and _reaches(s[f"n_{style}"], s["nn"], 0.9):
            out[c.name] = style
    return out


# --------------------------------------------------------------------------------------------- dates
def _date_prep(v: str) -> str:
    """A struct of the cleaned value ``v`` and, where it has that shape, its numeric (``n``) or
    month-name (``t``) date parts; :func:`_date_build` turns it into a TIMESTAMP."""
    num = f"regexp_extract(lower({v}), {qstr(_NUM_DATE)}, {list(('a', 'sep', 'b', 'y') + _TIME_FIELDS)})"
    text_fields = ("d1", "m1", "m2", "d2", "y") + _TIME_FIELDS
    text = f"regexp_extract(lower({v}), {qstr(_TEXT_DATE)}, {list(text_fields)})"
    numeric_shape = _rx(v, _NUMERIC_DATE_SHAPE)
    compact = f"CASE WHEN {_rx(v, _COMPACT_DATE, full=True)} THEN {v} END"
    return (
        f"struct_pack(v := {v}, n := CASE WHEN {numeric_shape} THEN {num} END, "
        f"t := CASE WHEN {_rx(v, _MONTH_HINT)} AND {_rx(v, '[0-9]')} THEN {text} END, c := {compact})"
    )


def _year4(y: str) -> str:
    return (
        f"CASE WHEN length({y}) = 2 THEN (CASE WHEN {y} < '70' THEN '20' ELSE '19' END) || {y} ELSE {y} END"
    )


def _clock(p: str) -> str:
    """`` HH:MM:SS`` from the time fields of a parts struct ``p`` ('' when it has no time)."""
    hour = (
        f"CASE WHEN {p}.ap = '' THEN {p}.hh ELSE CAST(TRY_CAST({p}.hh AS INTEGER) % 12 "
        f"+ CASE WHEN {p}.ap = 'pm' THEN 12 ELSE 0 END AS VARCHAR) END"
    )
    seconds = f"CASE WHEN {p}.ss = '' THEN '00' ELSE {p}.ss END"
    return f"CASE WHEN {p}.hh = '' THEN '' ELSE ' ' || {hour} || ':' || {p}.mi || ':' || {seconds} END"


def _date_build(x: str, orders: str) -> str:
    """TIMESTAMP from a :func:`_date_prep` struct; ``orders``: ``d``/``m`` (day/month first) for each of
    :data:`_SEPARATORS` in numeric dates."""
    iso_shape = f"{x}.n IS NULL AND {x}.t IS NULL AND {_rx(f'{x}.v', _ISO_SHAPE)}"
    dotted = f"regexp_replace({x}.v, '^(\\d{{4}})[./](\\d{{1,2}})[./]', '\\1-\\2-')"
    iso = f"coalesce(TRY_CAST({x}.v AS TIMESTAMP), TRY_CAST({dotted} AS TIMESTAMP))"
    iso = f"CASE WHEN {iso_shape} THEN {iso} END"
    n, t = f"{x}.n", f"{x}.t"
    month_first = [sep for sep, o in zip(_SEPARATORS, orders, strict=True) if o == "m"]
    if len(month_first) in (0, len(_SEPARATORS)):
        month, day = (f"{n}.a", f"{n}.b") if month_first else (f"{n}.b", f"{n}.a")
    else:
        first = _one_of(f"{n}.sep", month_first)
        month, day = (
            f"CASE WHEN {first} THEN {n}.a ELSE {n}.b END",
            f"CASE WHEN {first} THEN {n}.b ELSE {n}.a END",
        )
    num = f"TRY_CAST({_year4(f'{n}.y')} || '-' || {month} || '-' || {day} || {_clock(n)} AS TIMESTAMP)"
    name = f"({t}.m1 || {t}.m2)"
    month_no = f"list_position({list(_MONTHS)}, left({name}, 3))"
    text = (
        f"CASE WHEN {_one_of(name, _MONTH_NAMES)} THEN TRY_CAST({_year4(f'{t}.y')} || '-' || {month_no} "
        f"|| '-' || ({t}.d1 || {t}.d2) || {_clock(t)} AS TIMESTAMP) END"
    )
    c = f"{x}.c"
    compact = (
        f"TRY_CAST(substr({c}, 1, 4) || '-' || substr({c}, 5, 2) || '-' || substr({c}, 7, 2) AS TIMESTAMP)"
    )
    parts = f"CASE WHEN {n}.y <> '' THEN {num} END, CASE WHEN {t}.y <> '' THEN {text} END"
    return f"coalesce({iso}, {parts}, CASE WHEN {c} IS NOT NULL THEN {compact} END)"


# -------------------------------------------------------------------------------------- null-handler
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
    drop_over = p.optional_number("drop_columns_over", 0.0, 1.0)
    if strategy == "drop_columns_over" and drop_over is None:
        drop_over = 0.5
    columns, fill_numeric, fill_text = (
        p.columns("columns"),
        _fill_numeric_param(p),
        p.text("fill_text", "unknown"),
    )
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
    drop = [
        c
        for i, c in enumerate(job.cols)
        if (scope is None or c.name in scope) and _nulls(stats[i]) / rows > limit
    ]
    return [] if len(drop) == len(job.cols) else drop


def _fill_values(job: _Job, opts: _NullOptions, cols: Sequence[Col]) -> dict[str, Any]:
    """The value to fill each column's nulls with (columns of other types are left out)."""
    numeric_text = _numeric_text(job, [c for c in cols if c.is_text])
    stat = {"mean": "avg", "median": "median"}.get(str(opts.fill_numeric))
    exprs: dict[str, str] = {}
    for i, c in enumerate(cols):
        if stat and c.name in numeric_text:
            exprs[f"{i}.v"] = (
                f"{stat}({_nest(c.ident, [clean_text, *_number_stages(numeric_text[c.name], False)])})"
            )
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


def _null_columns(
    job: _Job, rows: int, stats: dict[int, dict[str, Any]], fills: dict[str, Any]
) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------- type-fixer
def _to_boolean(v: str) -> str:
    low = f"lower({v})"
    return f"CASE WHEN {_one_of(low, _TRUE)} THEN true WHEN {_one_of(low, _FALSE)} THEN false END"


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

    @property
    def label(self) -> str:
        """The detected format in words."""
        if self.kind in ("integer", "double"):
            return {"us": "1,234.5", "eu": "1.234,5"}[self.fmt]
        if self.kind not in ("date", "timestamp"):
            return ""
        if len(set(self.fmt)) == 1:
            return "day first" if self.fmt[0] == "d" else "month first"
        return ", ".join(
            f"{'day' if o == 'd' else 'month'} first with '{sep}'"
            for sep, o in zip(_SEPARATORS, self.fmt, strict=True)
        )

    def stages(self) -> list[Stage]:
        """Stages from the raw text value to the converted value."""
        if self.kind == "boolean":
            return [clean_text, _to_boolean]
        if self.kind in ("integer", "double"):
            return [clean_text, *_number_stages(self.fmt, self.kind == "integer")]
        if self.kind == "date":
            return [clean_text, _date_prep, lambda x: f"CAST({_date_build(x, self.fmt)} AS DATE)"]
        return [clean_text, _date_prep, lambda x: _date_build(x, self.fmt)]


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


def _type_stats(job: _Job, sample: str, cols: Sequence[Col], opts: _TypeOptions) -> dict[int, dict[str, Any]]:
    """Sample counts deciding each column's type: cheap shape counts first, parses only where they may win."""
    exprs: dict[str, str] = {}
    for i in range(len(cols)):
        v, ns, d = f"__v{i}", f"__n{i}", f"__d{i}"
        exprs |= {
            f"{i}.nn": f"count({v})",
            f"{i}.lead0": f"count(*) FILTER (WHERE {_rx(ns, '^[+-]?0[0-9]')})",
        }
        exprs[f"{i}.bool"] = f"count(*) FILTER (WHERE {_one_of(f'lower({v})', _TRUE + _FALSE)})"
        exprs[f"{i}.numeric"] = f"count(*) FILTER (WHERE {_rx(ns, _NUMBER_SHAPE, full=True)})"
        shaped = f"{d}.n.y <> '' OR {d}.t.y <> '' OR {d}.c IS NOT NULL OR {_rx(v, _ISO_SHAPE)}"
        exprs[f"{i}.dated"] = f"count(*) FILTER (WHERE {shaped})"
        exprs[f"{i}.timed"] = f"count(*) FILTER (WHERE {_rx(v, '[0-9]:[0-5][0-9]')})"
        for j, sep in enumerate(_SEPARATORS):  # a part > 12 cannot be the month
            for order, part in (("dmy", "a"), ("mdy", "b")):
                where = (
                    f"{d}.n.sep = {qstr(sep)} AND TRY_CAST({d}.n.{part} AS INTEGER) > 12 AND {d}.n.y <> ''"
                )
                exprs[f"{i}.{order}{j}"] = f"count(*) FILTER (WHERE {where})"
    frame = _frame(sample, cols, dates=True)
    stats = _by_column(_aggregate(job.con, frame, exprs))
    exprs = {}
    for i, s in stats.items():
        if _reaches(s["numeric"], s["nn"], opts.min_rate):
            exprs |= _number_stats(i, f"__v{i}", f"__n{i}")
        if _reaches(s["dated"], s["nn"], opts.min_rate):
            s["order"] = _date_order(s, opts)
            exprs[f"{i}.dates"] = f"count({_date_build(f'__d{i}', s['order'])})"
    for i, more in _by_column(_aggregate(job.con, frame, exprs)).items():
        stats[i] |= more
    return stats


def _date_order(stats: dict[str, Any], opts: _TypeOptions) -> str:
    """Day (``d``) or month (``m``) first for each of :data:`_SEPARATORS`: read from the values written
    with that separator, else from all numeric dates, else day first."""
    if opts.date_order != "auto":
        return opts.date_order[0] * len(_SEPARATORS)
    seps = range(len(_SEPARATORS))
    overall = "m" if sum(stats[f"mdy{j}"] for j in seps) > sum(stats[f"dmy{j}"] for j in seps) else "d"
    return "".join(
        "m"
        if stats[f"mdy{j}"] > stats[f"dmy{j}"]
        else "d"
        if stats[f"dmy{j}"] > stats[f"mdy{j}"]
        else overall
        for j in seps
    )


def _decide(stats: dict[str, Any], opts: _TypeOptions) -> tuple[_Conversion | None, dict[str, Any] | None]:
    """The conversion for one column (or None), and a note on the best candidate when it fell short."""
    nn = int(stats["nn"])
    if not nn:
        return None, None
    style = _number_style(stats) if "us_only" in stats else "us"
    numeric = 0 if stats["lead0"] else 1
    candidates = [
        ("boolean", "", int(stats["bool"])),
        ("integer", style, numeric * int(stats.get(f"i_{style}", 0))),
        ("double", style, numeric * int(stats.get(f"n_{style}", 0))),
        ("timestamp" if stats["timed"] else "date", stats.get("order", "ddd"), int(stats.get("dates", 0))),
    ]
    kind, fmt, count = max(candidates, key=lambda c: c[2])  # the first of equals wins
    if _reaches(count, nn, opts.min_rate):
        return _Conversion(kind, fmt, round(count / nn, 4)), None
    shapes = [  # parses were only tried where the shapes reached the rate: else the shapes estimate them
        ("boolean", int(stats["bool"])),
        ("number", int(stats.get("n_us", stats["numeric"])) if "us_only" in stats else int(stats["numeric"])),
        ("date", int(stats.get("dates", stats["dated"]))),
    ]
    best, count = max(shapes, key=lambda c: c[1])
    note: dict[str, Any] = {"best": best, "parse_rate": round(count / nn, 4)}
    if stats["lead0"]:
        note["leading_zeros"] = int(stats["lead0"])
    return None, (note if count else None)


def _before_after(src: str, col: Col, stages: list[Stage]) -> str:
    """``__before`` (the raw value) and ``__after`` (rewritten by ``stages``) of one column of ``src``."""
    inner = f"(SELECT {col.ident} AS __before, {col.ident} FROM {src})"
    return f"SELECT __before, {col.ident} AS __after FROM ({_layered(inner, {col.name: stages})})"


def _failures_sql(src: str, col: Col, conv: _Conversion) -> str:
    """Values that are not null-like yet do not convert."""
    both = _before_after(src, col, conv.stages())
    return f"SELECT __before FROM ({both}) WHERE __after IS NULL AND {clean_text('__before')} IS NOT NULL"


def _type_examples(job: _Job, sample: str, col: Col, conv: _Conversion) -> dict[str, Any]:
    both = _before_after(sample, col, conv.stages())
    changed = f"SELECT * FROM ({both}) WHERE __after IS NOT NULL AND __before <> CAST(__after AS VARCHAR)"
    return {
        "examples": _pairs(job.con, changed),
        "failed_examples": _values(job.con, _failures_sql(sample, col, conv)),
    }


def _type_dataset(job: _Job, opts: _TypeOptions) -> dict[str, Any]:
    targets = [c for c in job.cols if c.is_text and (opts.columns is None or c.name in opts.columns)]
    decided: dict[str, _Conversion] = {}
    notes: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    if targets:
        job.report(0.0, "sampling")
        with job.sample(targets) as sample:
            stats = _type_stats(job, sample, targets, opts)
            for i, c in enumerate(targets):
                conv, note = _decide(stats[i], opts)
                if conv is not None:
                    decided[c.name] = conv
                    examples[c.name] = _type_examples(job, sample, c, conv)
                elif note is not None:
                    notes[c.name] = note
    job.report(0.3, "writing")
    rows = write_parquet(
        job.con, _layered(job.src, {n: conv.stages() for n, conv in decided.items()}), job.out
    )
    job.report(0.8, "counting")
    out: dict[str, Any] = {
        "rows": rows,
        "converted": _type_counts(job, decided, examples),
        "not_converted": notes,
    }
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _type_counts(job: _Job, decided: dict[str, _Conversion], examples: dict[str, Any]) -> dict[str, Any]:
    """Per converted column: values converted, failed and null-like (input and output side by side)."""
    exprs: dict[str, str] = {}
    for i, name in enumerate(decided):
        before, after = f"i.{qident(name)}", f"o.{qident(name)}"
        exprs |= {
            f"{i}.all": f"count({before})",
            f"{i}.null_like": f"count(*) FILTER (WHERE {null_like(before)})",
        }
        exprs[f"{i}.converted"] = f"count({after})"
    stats = _by_column(_aggregate(job.con, job.paired, exprs))
    result: dict[str, Any] = {}
    for i, (name, conv) in enumerate(decided.items()):
        nn, converted = int(stats[i]["all"]) - int(stats[i]["null_like"]), int(stats[i]["converted"])
        entry: dict[str, Any] = {"from": "VARCHAR", "to": conv.sql_type, "format": conv.label}
        entry |= {"parse_rate": conv.rate, "converted": converted, "failed": nn - converted}
        entry |= {"null_like_to_null": int(stats[i]["null_like"]), "examples": examples[name]["examples"]}
        if nn > converted:  # the first few from the file when the sample had none
            col = Col(name, "VARCHAR")
            fails = examples[name]["failed_examples"] or _values(job.con, _failures_sql(job.src, col, conv))
            entry["failed_examples"] = fails
        result[name] = entry
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
        if _EMAIL_NAME.search(name):
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
        raise p.bad("case", value, f"must be one of {', '.join(_CASES)} or an object {{column: mode}}")
    p.check_columns("case", value)
    return {str(k): str(v).lower() for k, v in value.items()}, None


def _mappings_param(p: _Params) -> dict[str, dict[str, str]]:
    value = p.table("mappings")
    for m in value.values():
        if not isinstance(m, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.items()
        ):
            raise p.bad("mappings", value, "must be an object {column: {from: to}} of strings")
    p.check_columns("mappings", value)
    return {str(col): {str(k): str(v) for k, v in m.items()} for col, m in value.items()}


def field_standardizer(ctx: AgentContext) -> AgentResult:
    """Trim and collapse whitespace, apply mappings and case, merge category spellings."""
    schemas = _schemas(ctx)
    p = _Params("field-standardizer", ctx.params, schemas)
    case, case_all = _case_param(p)
    max_categories, threshold = (
        p.integer("max_categories", 50, 0, 1000),
        p.number("threshold", 90.0, 0.0, 100.0),
    )
    opts = _StdOptions(p.columns("columns"), case, case_all, max_categories, threshold, _mappings_param(p))
    echo: dict[str, Any] = {
        "columns": opts.columns,
        "case": case or case_all or "keep",
        "max_categories": max_categories,
    }
    echo |= {"threshold": threshold, "mappings": opts.mappings or None}
    return _run(ctx, "field-standardizer", schemas, echo, lambda job: _std_dataset(job, opts))


def _collapse_ws(e: str) -> str:
    needs = f"strpos({e}, '  ') > 0 OR {_rx(e, _ODD_WS)}"
    return f"CASE WHEN {needs} THEN trim(regexp_replace({e}, {qstr(_ANY_WS)}, ' ', 'g')) ELSE trim({e}) END"


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
    """A ``CASE`` rewriting the listed values (compared lower-cased when ``on_lower``)."""
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
    """Whitespace, explicit mapping, case, category merge."""
    explicit = _map_stage(_explicit(opts.mappings.get(col.name, {})), on_lower=True)
    return [_collapse_ws, explicit, _case_stage(opts.case_for(col.name)), _map_stage(categories)]


def _category_key(value: str) -> str:
    text = "".join(
        ch for ch in unicodedata.normalize("NFKD", value) if not unicodedata.combining(ch)
    ).casefold()
    return "".join(ch for ch in text if not (ch.isspace() or unicodedata.category(ch).startswith("P")))


def _close(a: str, b: str, threshold: float) -> bool:
    same_digits = [ch for ch in a if ch.isdigit()] == [ch for ch in b if ch.isdigit()]
    return same_digits and fuzz.ratio(a, b) >= threshold


def category_map(
    values: Sequence[tuple[str, int]], threshold: float, fuzzy: bool, prefer: set[str]
) -> dict[str, str]:
    """Spelling → canonical spelling, for values equal after normalising (or close, when ``fuzzy``)."""
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


def _spellings(job: _Job, col: Col, opts: _StdOptions) -> list[tuple[str, int]]:
    """Distinct values after whitespace, mapping and case, with counts (at most max_categories + 1)."""
    value = _nest("__clean_r", _std_stages(col, opts, {})[:3])
    grouped = f"SELECT {col.ident} AS __clean_r, count(*) AS __clean_n FROM {job.src} GROUP BY 1"
    spelled = f"SELECT {value} AS __clean_v, __clean_n FROM ({grouped})"
    rows = job.con.execute(
        f"SELECT __clean_v, sum(__clean_n)::BIGINT FROM ({spelled}) WHERE __clean_v IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {opts.max_categories + 1}"
    ).fetchall()
    return [(str(v), int(n)) for v, n in rows]


def _categories(job: _Job, cols: Sequence[Col], opts: _StdOptions) -> dict[str, dict[str, str]]:
    """Category merges per low-cardinality column."""
    if not opts.max_categories or not cols:
        return {}
    exprs = {f"{i}.approx": f"approx_count_distinct({c.ident})" for i, c in enumerate(cols)}
    exprs |= {f"{i}.nn": f"count({c.ident})" for i, c in enumerate(cols)}
    stats = _by_column(_aggregate(job.con, job.src, exprs))
    out: dict[str, dict[str, str]] = {}
    for i, c in enumerate(cols):
        if stats[i]["approx"] > max(20 * opts.max_categories, 1000) or _EMAIL_NAME.search(c.name):
            continue
        values = _spellings(job, c, opts)
        if len(values) > opts.max_categories or sum("@" in v for v, _ in values) * 2 > len(values):
            continue
        prefer = {_python_case(v, opts.case_for(c.name)) for v in opts.mappings.get(c.name, {}).values()}
        fuzzy = len({_category_key(v) for v, _ in values}) * 2 <= int(stats[i]["nn"])
        merged = category_map(values, opts.threshold, fuzzy, prefer)
        if merged:
            out[c.name] = merged
    return out


def _std_dataset(job: _Job, opts: _StdOptions) -> dict[str, Any]:
    targets = [c for c in job.cols if c.is_text and (opts.columns is None or c.name in opts.columns)]
    job.report(0.0, "finding categories")
    categories = _categories(job, targets, opts)
    stages = {c.name: _std_stages(c, opts, categories.get(c.name, {})) for c in targets}
    job.report(0.3, "writing")
    rows = write_parquet(job.con, _layered(job.src, stages), job.out)
    job.report(0.7, "counting changes")
    columns = _std_counts(job, targets, categories, opts)
    out: dict[str, Any] = {"rows": rows, "values_changed": sum(v["changed"] for v in columns.values())}
    out["columns"] = columns
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _std_counts(
    job: _Job, cols: Sequence[Col], categories: dict[str, dict[str, str]], opts: _StdOptions
) -> dict[str, Any]:
    """Per changed column: values changed, case mode, category mapping and a few examples."""
    changed = {f"{i}.n": f"count(*) FILTER (WHERE i.{c.ident} <> o.{c.ident})" for i, c in enumerate(cols)}
    stats = _by_column(_aggregate(job.con, job.paired, changed))
    out: dict[str, Any] = {}
    for i, c in enumerate(cols):
        if not stats[i]["n"]:
            continue
        entry: dict[str, Any] = {"changed": int(stats[i]["n"]), "case": opts.case_for(c.name)}
        if c.name in categories:
            entry["mapping"] = dict(list(categories[c.name].items())[:20])
        pairs = f"SELECT i.{c.ident}, o.{c.ident} FROM {job.paired} WHERE i.{c.ident} <> o.{c.ident}"
        out[c.name] = entry | {"examples": _pairs(job.con, pairs)}
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
    keys, keep = p.columns("key_columns"), p.choice("keep", ("first", "most_complete"), "first")
    opts = _DupOptions(keys, keep, p.flag("near", True))
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
        rows, groups_left = (
            int(v) for v in _row(job.con, f"SELECT coalesce(sum(__n), 0), count(*) FROM {kept}")
        )
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
    compared = (
        opts.keys if opts.keys and opts.near else ("all columns, normalised" if opts.near else "all columns")
    )
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
    rows = {
        int(r[0]): {c.name: clip(v) for c, v in zip(job.cols, r[1:], strict=True)} for r in fetched.fetchall()
    }
    out: list[dict[str, Any]] = []
    for keep, first, last, n in groups:
        removed = [rows[r] for r in dict.fromkeys((int(first), int(last))) if r != keep and r in rows]
        out.append({"rows": int(n), "kept": rows.get(int(keep)), "removed": removed})
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
    columns, action = p.columns("columns"), p.choice("action", ("flag", "null_invalid"), "flag")
    opts = _EmailOptions(columns, action, DISPOSABLE_DOMAINS | {d.strip().lower() for d in extra})
    echo = {"columns": columns, "action": action, "disposable_domains": extra or None}
    return _run(ctx, "email-validator", schemas, echo, lambda job: _email_dataset(job, opts))


def _email_targets(job: _Job, opts: _EmailOptions) -> tuple[list[Col], dict[str, str]]:
    """The e-mail columns, and why named columns were skipped."""
    if opts.columns is not None:
        chosen = [c for c in job.cols if c.name in opts.columns]
        return [c for c in chosen if c.is_text], {
            c.name: f"not text ({c.type})" for c in chosen if not c.is_text
        }
    text = [c for c in job.cols if c.is_text]
    others = [c for c in text if not _EMAIL_NAME.search(c.name)]
    if not others:
        return text, {}
    with job.sample(others) as sample:
        exprs = {f"{i}.nn": f"count({clean_text(c.ident)})" for i, c in enumerate(others)}
        exprs |= {
            f"{i}.shaped": f"count(*) FILTER (WHERE {_rx(f'trim({c.ident})', _EMAIL_SHAPE, full=True)})"
            for i, c in enumerate(others)
        }
        stats = _by_column(_aggregate(job.con, sample, exprs))
    shaped = {
        c.name for i, c in enumerate(others) if stats[i]["nn"] and stats[i]["shaped"] * 2 >= stats[i]["nn"]
    }
    return [c for c in text if c not in others or c.name in shaped], {}


def _email_frame(job: _Job, cols: Sequence[Col], disposable: frozenset[str]) -> str:
    """The input plus, per e-mail column ``i``: trimmed value ``__t{i}``, validity ``__v{i}``, local part
    ``__l{i}``, domain as written ``__r{i}`` and lower-cased ``__d{i}``, and disposability ``__x{i}``."""
    cleaned = ", ".join(f"{clean_text(c.ident)} AS __t{i}" for i, c in enumerate(cols))
    parts, checks = [], []
    for i in range(len(cols)):
        t, at = f"__t{i}", f"strpos(__t{i}, '@')"
        parts += [f"left({t}, {at} - 1) AS __l{i}", f"substr({t}, {at} + 1) AS __r{i}"]
        ok = f"{_rx(t, _EMAIL, full=True)} AND strlen({t}) <= 254 AND {at} <= 65"
        checks += [f"CASE WHEN {t} IS NULL THEN NULL ELSE {ok} END AS __v{i}", f"lower(__r{i}) AS __d{i}"]
    # one regular expression, not a long IN list: DuckDB would plan that as a join, which loses row order
    listed = r"(?:[^@]*\.)?(?:" + "|".join(re.escape(d) for d in sorted(disposable)) + ")"
    flags = [
        f"CASE WHEN __v{i} THEN {_rx(f'__d{i}', listed, full=True)} END AS __x{i}" for i in range(len(cols))
    ]
    inner = f"SELECT *, {', '.join(parts)} FROM (SELECT *, {cleaned} FROM {job.src})"
    return f"(SELECT *, {', '.join(flags)} FROM (SELECT *, {', '.join(checks)} FROM ({inner})))"


def _email_dataset(job: _Job, opts: _EmailOptions) -> dict[str, Any]:
    job.report(0.0, "finding e-mail columns")
    targets, notes = _email_targets(job, opts)
    added: dict[str, str] = {}
    for i, c in enumerate(targets):
        otherwise = f"WHEN NOT __v{i} THEN NULL " if opts.action == "null_invalid" else ""
        rewrite = f"__v{i} AND (__t{i} <> {c.ident} OR __r{i} <> __d{i})"  # else keep the value as it is
        added[c.name] = f"CASE WHEN {rewrite} THEN __l{i} || '@' || __d{i} {otherwise}ELSE {c.ident} END"
        added |= {f"{c.name}_valid": f"__v{i}", f"{c.name}_disposable": f"__x{i}"}
    job.report(0.2, "writing")
    source = _email_frame(job, targets, opts.disposable) if targets else job.src
    rows = write_parquet(job.con, f"SELECT {', '.join(_select_with(job.cols, added))} FROM {source}", job.out)
    job.report(0.6, "counting")
    out: dict[str, Any] = {"rows": rows, "columns": _email_counts(job, targets)}
    out["columns_added"] = [n for c in targets for n in (f"{c.name}_valid", f"{c.name}_disposable")]
    if notes:
        out["skipped"] = notes
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _email_refs(col: Col) -> tuple[str, str, str, str]:
    """The raw value, the written value, validity and disposability of a column in :attr:`_Job.paired`."""
    flag = f"o.{qident(col.name + '_valid')}", f"o.{qident(col.name + '_disposable')}"
    return f"i.{col.ident}", f"o.{col.ident}", *flag


def _email_counts(job: _Job, cols: Sequence[Col]) -> dict[str, Any]:
    """Per e-mail column: values checked, valid, invalid, disposable and rewritten, with examples."""
    exprs: dict[str, str] = {}
    for i, c in enumerate(cols):
        raw, value, valid, disp = _email_refs(c)
        exprs |= {f"{i}.checked": f"count({valid})", f"{i}.valid": f"count(*) FILTER (WHERE {valid})"}
        exprs[f"{i}.invalid"] = f"count(*) FILTER (WHERE NOT {valid})"
        exprs[f"{i}.disposable"] = f"count(*) FILTER (WHERE {disp})"
        exprs[f"{i}.normalised"] = f"count(*) FILTER (WHERE {valid} AND {value} <> {raw})"
    stats = _by_column(_aggregate(job.con, job.paired, exprs))
    out: dict[str, Any] = {}
    for i, c in enumerate(cols):
        s: dict[str, Any] = {k: int(v) for k, v in stats[i].items()}
        raw, value, valid, disp = _email_refs(c)
        if s["invalid"]:
            s["invalid_examples"] = _values(job.con, f"SELECT {raw} FROM {job.paired} WHERE NOT {valid}")
        if s["normalised"]:
            changed = f"SELECT {raw}, {value} FROM {job.paired} WHERE {valid} AND {value} <> {raw}"
            s["normalised_examples"] = _pairs(job.con, changed)
        if s["disposable"]:
            domain = f"lower(split_part({value}, '@', 2))"
            top = f"SELECT {domain}, count(*) FROM {job.paired} WHERE {disp} GROUP BY 1"
            rows = job.con.execute(f"{top} ORDER BY 2 DESC, 1 LIMIT 5").fetchall()
            s["disposable_domains"] = {str(d): int(n) for d, n in rows}
        out[c.name] = s
    return out
