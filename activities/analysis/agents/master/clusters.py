"""Clustering of matched pairs (union-find) into ``cluster_id``s, cluster statistics and the matcher's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from activities.analysis.agents.master.common import _one
from activities.analysis.agents.master.match_params import _MatchParams
from activities.analysis.agents.master.records import _Union
from activities.analysis.sql import qident, qstr


def _components(lefts: list[int], rights: list[int]) -> dict[int, int]:
    """Union-find over the pairs: each linked record -> the smallest record id of its cluster."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(lefts, rights, strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def _assign_clusters(con: duckdb.DuckDBPyConnection) -> None:
    """``__mm_cid``: a dense ``cluster_id`` per record, in order of each cluster's first record."""
    pairs = con.execute("SELECT l, r FROM __mm_final").fetchnumpy()
    reps = _components(pairs["l"].tolist(), pairs["r"].tolist())
    mapping = {
        "rid": np.fromiter(reps.keys(), dtype=np.int64, count=len(reps)),
        "rep": np.fromiter(reps.values(), dtype=np.int64, count=len(reps)),
    }
    con.register("__mm_map", mapping)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __mm_cid AS SELECT r.__mm_rid AS rid, "
            "CAST(dense_rank() OVER (ORDER BY coalesce(m.rep, r.__mm_rid)) AS BIGINT) AS cluster_id "
            "FROM __mm_records r LEFT JOIN __mm_map m ON m.rid = r.__mm_rid"
        )
    finally:
        con.unregister("__mm_map")


def _cluster_stats(con: duckdb.DuckDBPyConnection, p: _MatchParams) -> dict[str, Any]:
    clusters, multi, records, biggest = _one(
        con,
        "SELECT count(*), count(*) FILTER (WHERE n > 1), coalesce(sum(n) FILTER (WHERE n > 1), 0), "
        "coalesce(max(n), 0) FROM (SELECT cluster_id, count(*) AS n FROM __mm_cid GROUP BY cluster_id)",
    )
    shown = list(dict.fromkeys(p.match_keys + p.name_columns + p.address_columns))[:6]
    values = "".join(f", left(CAST({qident(c)} AS VARCHAR), 60) AS {qident(c)}" for c in shown)
    rows = con.execute(
        f"""
        WITH top AS (
            SELECT cluster_id, count(*) AS n FROM __mm_cid GROUP BY cluster_id HAVING n > 1
            ORDER BY n DESC, cluster_id LIMIT 5
        )
        SELECT c.cluster_id, r."source", r.source_row{values}
        FROM __mm_cid c JOIN top USING (cluster_id) JOIN __mm_records r ON r.__mm_rid = c.rid
        QUALIFY row_number() OVER (PARTITION BY c.cluster_id ORDER BY r.__mm_rid) <= 10
        ORDER BY top.n DESC, c.cluster_id, r.__mm_rid
        """
    ).fetchall()
    samples: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        record = {"source": row[1], "source_row": int(row[2]), **dict(zip(shown, row[3:], strict=True))}
        samples.setdefault(int(row[0]), []).append(record)
    return {
        "clusters": int(clusters),
        "multi_record_clusters": int(multi),
        "records_in_multi_record_clusters": int(records),
        "largest_cluster": int(biggest),
        "sample_clusters": [{"cluster_id": k, "records": v} for k, v in samples.items()],
    }


def _write_matched(con: duckdb.DuckDBPyConnection, u: _Union, workdir: Path) -> tuple[Path, Path]:
    matched, matches = workdir / "matched.parquet", workdir / "matches.csv"
    cols = "".join(f", r.{qident(c)}" for c in u.names)
    con.execute(
        f"COPY (SELECT r.{qident('source')}, r.source_row, c.cluster_id{cols} FROM __mm_records r "
        "JOIN __mm_cid c ON c.rid = r.__mm_rid ORDER BY c.cluster_id, r.__mm_rid) "
        f"TO {qstr(str(matched))} (FORMAT parquet)"
    )
    con.execute(
        f"""
        COPY (
            SELECT a."source" AS left_source, a.source_row AS left_row, b."source" AS right_source,
                   b.source_row AS right_row, p.rule, p.score, c.cluster_id
            FROM __mm_final p JOIN __mm_records a ON a.__mm_rid = p.l JOIN __mm_records b ON b.__mm_rid = p.r
            JOIN __mm_cid c ON c.rid = p.l ORDER BY c.cluster_id, p.l, p.r
        ) TO {qstr(str(matches))} (HEADER, DELIMITER ',')
        """
    )
    return matched, matches
