"""Exact matching: records whose normalised key (email, phone, other id) agrees, as pairs in ``__mm_pairs``."""

from __future__ import annotations

from typing import Any

import duckdb

from activities.analysis.agents.master.columns import _key_kind
from activities.analysis.agents.master.common import _drop
from activities.analysis.agents.master.match_params import _MatchParams
from activities.analysis.agents.master.normalise import _normalised
from activities.analysis.sql import qident, qstr


def _exact_pairs(con: duckdb.DuckDBPyConnection, column: str, priority: int, p: _MatchParams) -> dict[str, Any]:
    """Link records whose normalised key agrees: each to its group's first record (of another dataset).

    Groups larger than ``max_block_size`` are skipped (usually placeholder values) and reported.
    """
    norm = _normalised(qident(column), _key_kind(column))
    sources = "" if p.within_sources else " AND mixed"
    con.execute(
        # no WHERE on the key: the filter would normalise every value twice (null keys never join anyway)
        f"CREATE OR REPLACE TEMP TABLE __mm_k AS SELECT __mm_rid AS rid, __mm_src AS src, {norm} AS key "
        "FROM __mm_records"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_kg AS SELECT key, count(*) AS n, min(src) <> max(src) AS mixed, "
        "min(rid) AS a FROM __mm_k WHERE key IS NOT NULL GROUP BY key"
    )
    anchor = "g.a" if p.within_sources else "CASE WHEN k.src <> g.a_src THEN g.a ELSE g.a2 END"
    con.execute(
        f"""
        INSERT INTO __mm_pairs
        WITH ok AS (
            SELECT kg.key, kg.a, ka.src AS a_src FROM __mm_kg kg JOIN __mm_k ka ON ka.rid = kg.a
            WHERE kg.n BETWEEN 2 AND {p.max_block_size}{sources}
        ), g AS (
            SELECT ok.key, any_value(ok.a) AS a, any_value(ok.a_src) AS a_src,
                   min(k.rid) FILTER (WHERE k.src <> ok.a_src) AS a2
            FROM ok JOIN __mm_k k USING (key) GROUP BY ok.key
        )
        SELECT least({anchor}, k.rid), greatest({anchor}, k.rid), {qstr("exact:" + column)}, 100.0, {priority}
        FROM __mm_k k JOIN g USING (key) WHERE k.rid <> g.a
        """
    )
    big = con.execute(
        f"SELECT CAST(key AS VARCHAR), n FROM __mm_kg WHERE n > {p.max_block_size}{sources} ORDER BY n DESC, key"
    ).fetchall()
    _drop(con, ["__mm_k", "__mm_kg"])
    return {
        "oversized_groups": len(big),
        "records_in_oversized_groups": sum(int(n) for _, n in big),
        "oversized_samples": [{"value": str(v)[:60], "records": int(n)} for v, n in big[:3]],
    }
