"""SQL building blocks: quoting, null-like tests, layered rewrites, column types, aggregate queries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from activities.analysis.agents.clean.summaries import EXAMPLES, clip
from activities.analysis.sql import qident, qstr

Stage = Callable[[str], str]
"""One SQL rewriting step: the expression of a column's value in, the rewritten expression out."""


#: Text values (trimmed, lower-cased) that mean "no value".
NULL_LIKE: tuple[str, ...] = ("", "na", "n/a", "null", "none", "nan", "-", "?", "#n/a", "<na>")


_WS = " \t\n\r\x0b\x0c\xa0"


_SHORT = 12


_NULL_RE = r"(?i)[\s\x{A0}]*(?:" + "|".join(re.escape(v) for v in NULL_LIKE if v) + r")?[\s\x{A0}]*"


_INT_TYPES = frozenset("TINYINT SMALLINT INTEGER BIGINT HUGEINT UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT".split())


_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})


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
