"""SQL over Parquet files in DuckDB: quoting, column type families, and one-row aggregate queries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from activities.analysis.agents.base import Dataset
from activities.analysis.agents.profile.patterns import REGEX
from activities.analysis.sql import qident, qstr

_WS = "' ' || chr(9) || chr(10) || chr(13)"

_INTEGER_TYPES = frozenset(
    "TINYINT SMALLINT INTEGER BIGINT HUGEINT UTINYINT USMALLINT UINTEGER UBIGINT UHUGEINT".split()
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})
_NUMERIC_KINDS = frozenset({"integer", "float"})
_TEMPORAL_KINDS = frozenset({"date", "datetime"})


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


def _aggregate(con: duckdb.DuckDBPyConnection, sql_from: str, exprs: Sequence[tuple[str, str]]) -> dict[str, Any]:
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
