"""Blocking: records sharing a phonetic name key (and address start) form blocks; small ones give candidate pairs."""

from __future__ import annotations

from typing import Any

import duckdb

from activities.analysis.agents.master.common import _one
from activities.analysis.agents.master.match_params import _MatchParams
from activities.analysis.agents.master.scoring import _ADDRESS_WEIGHT, _name_floor
from activities.analysis.sql import qident


def _name_sql(groups: list[list[str]]) -> str:
    """SQL for a record's normalised name: the first name group that is not blank ('' when none is)."""
    parts = [f"trim(concat_ws(' ', {', '.join(f'__mm_text({qident(c)})' for c in g)}))" for g in groups]
    return parts[0] if len(parts) == 1 else f"coalesce(list_filter([{', '.join(parts)}], lambda v: v <> '')[1], '')"


def _address_sql(columns: list[str]) -> str:
    """SQL for a record's normalised address ('' when it has none)."""
    if not columns:
        return "''"
    return f"trim(concat_ws(' ', {', '.join(f'__mm_address({qident(c)})' for c in columns)}))"


def _block_keys(p: _MatchParams) -> str:
    """SQL list of a record's block keys, coarse to fine, from its first (``f``) and last (``l``) name tokens.

    ``a``: soundex of one token + the other's initial; ``b``: both soundex codes; ``d``: one token exactly +
    the other's first two letters (so one typo anywhere but the start still meets); with an address, the
    ``b``/``d`` keys again with the address start, for common names whose coarser blocks are too large.
    """
    keys = [
        "'a' || sl || left(f, 1)",
        "'a' || sf || left(l, 1)",
        "'b' || least(sf, sl) || greatest(sf, sl)",
        "'d' || f || '|' || left(l, 2)",
        "'d' || l || '|' || left(f, 2)",
    ]
    if p.address_columns:
        keys += [f"CASE WHEN ad <> '' THEN '+' || {k} || '|' || left(ad, 4) END" for k in keys[2:]]
    return f"list_distinct([{', '.join(keys)}])"


def _build_blocks(con: duckdb.DuckDBPyConnection, p: _MatchParams) -> dict[str, Any]:
    """Blocks of records sharing a name key; candidate pairs inside the small ones (``__mm_cand``).

    A record is in several blocks (see :func:`_block_keys`), so an oversized coarse block is covered by
    finer ones; blocks above ``max_block_size`` are not compared and are reported.
    """
    # two steps: a filter or a reused alias in the same SELECT would normalise the names twice
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_names AS "
        f"SELECT __mm_rid AS rid, __mm_src AS src, {_name_sql(p.name_groups)} AS nm, "
        f"{_address_sql(p.address_columns)} AS ad FROM __mm_records"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_names AS SELECT rid, src, nm, ad, "
        "regexp_extract(ad, '[0-9]+') AS an, string_split(nm, ' ')[1] AS f, string_split(nm, ' ')[-1] AS l "
        "FROM __mm_names WHERE nm <> ''"
    )
    # soundex once per distinct token: names repeat, and the code is the costly part
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_sx AS SELECT tok, __mm_soundex(tok) AS sx FROM "
        "(SELECT f AS tok FROM __mm_names UNION SELECT l FROM __mm_names)"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE __mm_bk AS
        SELECT * FROM (
            SELECT rid, src, unnest({_block_keys(p)}) AS bkey FROM (
                SELECT n.rid, n.src, n.f, n.l, n.ad, a.sx AS sf, b.sx AS sl
                FROM __mm_names n JOIN __mm_sx a ON a.tok = n.f JOIN __mm_sx b ON b.tok = n.l
            )
        ) WHERE bkey IS NOT NULL
        """
    )
    sources = "" if p.within_sources else " AND mixed"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_bs AS SELECT bkey, count(*) AS n, min(src) <> max(src) AS mixed "
        f"FROM __mm_bk GROUP BY bkey HAVING n >= 2{sources}"
    )
    cross = "" if p.within_sources else " AND x.src <> y.src"
    cap = p.max_block_size
    # pairs whose name lengths alone keep them under the threshold are dropped here (Indel bound), and so
    # are pairs whose house numbers differ when the name alone cannot reach it; a pair sharing several
    # blocks appears once per block (cheaper than DISTINCT; matches are grouped later)
    conflict = "x.an <> '' AND y.an <> '' AND x.an <> y.an"
    hopeless = f" AND NOT ({conflict})" if p.threshold > 100 * (1 - _ADDRESS_WEIGHT) else ""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE __mm_cand AS
        WITH b AS (
            SELECT rid, src, bkey FROM __mm_bk WHERE bkey IN (SELECT bkey FROM __mm_bs WHERE n <= {cap})
        ), pairs AS (
            SELECT x.rid AS l, y.rid AS r FROM b x JOIN b y ON x.bkey = y.bkey AND x.rid < y.rid{cross}
        )
        SELECT p.l, p.r, x.nm AS nl, y.nm AS nr, x.ad AS al, y.ad AS ar, x.ad <> '' AND y.ad <> '' AS ad2,
               {conflict} AS an_x
        FROM pairs p JOIN __mm_names x ON x.rid = p.l JOIN __mm_names y ON y.rid = p.r
        WHERE 200.0 * least(length(x.nm), length(y.nm)) / (length(x.nm) + length(y.nm)) >= CASE
            WHEN x.ad <> '' AND y.ad <> '' THEN {_name_floor(p.threshold)} ELSE {p.threshold} END{hopeless}
        """
    )
    return _block_stats(con, p)


def _block_stats(con: duckdb.DuckDBPyConnection, p: _MatchParams) -> dict[str, Any]:
    """Block counts; ``records_in_oversized_finest_blocks`` counts records some of whose possible partners
    went uncompared: they share a block of the finest kind (no finer fallback) that was too large."""
    cap = p.max_block_size
    finest = "bkey[1] = '+'" if p.address_columns else "bkey[1] IN ('b', 'd')"
    blocks, small, oversized, biggest = _one(
        con,
        f"SELECT count(*), count(*) FILTER (WHERE n <= {cap}), count(*) FILTER (WHERE n > {cap}), "
        "coalesce(max(n), 0) FROM __mm_bs",
    )
    (uncompared,) = _one(
        con,
        "SELECT count(DISTINCT rid) FROM __mm_bk "
        f"WHERE bkey IN (SELECT bkey FROM __mm_bs WHERE n > {cap} AND {finest})",
    )
    samples = con.execute(f"SELECT bkey, n FROM __mm_bs WHERE n > {cap} ORDER BY n DESC, bkey LIMIT 5").fetchall()
    (named,) = _one(con, "SELECT count(*) FROM __mm_names")
    (pairs,) = _one(con, "SELECT count(*) FROM __mm_cand")
    return {
        "records_with_names": int(named),
        "shared_blocks": int(blocks),
        "blocks_compared": int(small),
        "oversized_blocks": int(oversized),
        "largest_block": int(biggest),
        "records_in_oversized_finest_blocks": int(uncompared),
        "oversized_block_samples": [{"block": str(k), "records": int(n)} for k, n in samples],
        "candidate_pairs": int(pairs),
    }
