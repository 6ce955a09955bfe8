"""The matcher's input: the datasets' columns aligned by name, loaded as one table of records (``__mm_records``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from activities.analysis.agents.base import Dataset
from activities.analysis.agents.master.common import _labels, _one, _parquet, _schema
from activities.analysis.sql import qident, qstr

_MATCH_COLUMNS = ("source", "source_row", "cluster_id")


@dataclass(frozen=True)
class _Union:
    """The input datasets' columns aligned by name (case-insensitive), with their output names."""

    datasets: list[Dataset]
    labels: list[str]
    rows: list[int]
    columns: list[tuple[str, str]]
    """Output column name and type; differing types across datasets become VARCHAR."""
    sources: list[dict[str, tuple[str, str]]]
    """Per dataset: output name -> (actual column name, its type)."""
    lookup: dict[str, str]
    """Lowercased user-facing name (original or output) -> output name."""
    renamed: dict[str, str]

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]


def _fresh_name(base: str, taken: set[str]) -> str:
    name, n = f"{base}_original", 1
    while name.lower() in taken:
        n += 1
        name = f"{base}_original{n}"
    return name


def _union(con: duckdb.DuckDBPyConnection, datasets: Sequence[Dataset]) -> _Union:
    """Align the datasets' columns by name; reserved output names in the data get an ``_original`` suffix."""
    out_of: dict[str, str] = {}
    types: dict[str, list[str]] = {}
    taken = set(_MATCH_COLUMNS)
    renamed: dict[str, str] = {}
    sources: list[dict[str, tuple[str, str]]] = []
    rows: list[int] = []
    for ds in datasets:
        mapping: dict[str, tuple[str, str]] = {}
        for col, typ in _schema(con, ds.path):
            low = col.lower()
            if low in out_of and out_of[low] in mapping:  # the same name twice in one file
                low = f"{low}\0{len(mapping)}"
            if low not in out_of:
                reserved = low in _MATCH_COLUMNS or low.startswith("__mm_") or low == "file_row_number"
                out = _fresh_name(col, taken | set(out_of)) if reserved or col.lower() in taken else col
                out_of[low], types[out] = out, []
                taken.add(out.lower())
                if out != col:
                    renamed[col] = out
            mapping[out_of[low]] = (col, typ)
            types[out_of[low]].append(typ)
        sources.append(mapping)
        rows.append(int(_one(con, f"SELECT count(*) FROM {_parquet(ds.path)}")[0]))
    columns = [(o, t[0] if len(set(t)) == 1 else "VARCHAR") for o, t in types.items()]
    lookup = {o.lower(): o for o, _ in columns}
    lookup.update({orig.lower(): out for orig, out in renamed.items()})
    return _Union(list(datasets), _labels(datasets), rows, columns, sources, lookup, renamed)


def _load_records(con: duckdb.DuckDBPyConnection, u: _Union) -> None:
    """``__mm_records``: every record with a global ``__mm_rid``, its dataset, source, row and columns."""
    selects: list[str] = []
    offset = 0
    for i, ds in enumerate(u.datasets):
        cols: list[str] = []
        for out, typ in u.columns:
            actual = u.sources[i].get(out)
            if actual is None:
                expr = f"CAST(NULL AS {typ})"
            else:
                expr = qident(actual[0]) if actual[1] == typ else f"CAST({qident(actual[0])} AS {typ})"
            cols.append(f"{expr} AS {qident(out)}")
        selects.append(
            f"SELECT CAST({offset} + file_row_number AS BIGINT) AS __mm_rid, {i} AS __mm_src, "
            f"{qstr(u.labels[i])} AS {qident('source')}, CAST(file_row_number + 1 AS BIGINT) AS source_row"
            + "".join(f", {c}" for c in cols)
            + f" FROM {_parquet(ds.path, row_numbers=True)}"
        )
        offset += u.rows[i]
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mm_records AS {' UNION ALL '.join(selects)}")
