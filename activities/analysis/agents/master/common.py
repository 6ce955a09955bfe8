"""Helpers the master agents share: SQL quoting, Parquet reads, small queries, dataset labels, JSON outputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from activities.analysis.agents.base import Dataset
from activities.analysis.sql import qident, qstr

Report = Callable[[float, str], None]
"""A progress callback: fraction done (0-1) and a message."""


def _parquet(path: Path, *, row_numbers: bool = False) -> str:
    extra = ", file_row_number = true" if row_numbers else ""
    return f"read_parquet({qstr(str(path))}{extra})"


def _schema(con: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {_parquet(path)}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    rows = con.execute(sql).fetchall()  # fetchall, not fetchone: it leaves no unfinished result behind
    if not rows:  # aggregate queries always return a row
        raise RuntimeError("query returned no row")
    return tuple(rows[0])


def _present(col_sql: str) -> str:
    """SQL predicate: the value is neither null nor blank."""
    return f"({col_sql} IS NOT NULL AND trim(CAST({col_sql} AS VARCHAR)) <> '')"


def _drop(con: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> None:
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {qident(table)}")


def _labels(datasets: Sequence[Dataset]) -> list[str]:
    """Dataset names, made unique (``name#2`` for a repeated name)."""
    labels: list[str] = []
    for ds in datasets:
        label, n = ds.name, 1
        while label in labels:
            n += 1
            label = f"{ds.name}#{n}"
        labels.append(label)
    return labels


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
