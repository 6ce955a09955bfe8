"""``entity-matcher``: the matcher's steps in order (load, exact keys, blocking, scoring, clusters, outputs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.master.blocking import _build_blocks
from activities.analysis.agents.master.clusters import _assign_clusters, _cluster_stats, _write_matched
from activities.analysis.agents.master.common import Report, _drop, _write_json
from activities.analysis.agents.master.exact import _exact_pairs
from activities.analysis.agents.master.match_params import _match_params, _MatchParams
from activities.analysis.agents.master.normalise import _install_macros
from activities.analysis.agents.master.params import EntityMatcherParams
from activities.analysis.agents.master.records import _load_records, _Union, _union
from activities.analysis.agents.master.scoring import _fuzzy_pairs
from activities.analysis.agents.params import parse_params
from conveyor.errors import BadInput

MATCH_AGENT = "entity-matcher"

_MATCH_TABLES = (
    "__mm_records",
    "__mm_sx",
    "__mm_pairs",
    "__mm_final",
    "__mm_names",
    "__mm_bk",
    "__mm_bs",
    "__mm_cand",
    "__mm_cid",
)


@dataclass(frozen=True)
class _Matched:
    summary: dict[str, Any]
    dataset: Dataset
    files: dict[str, Path]


class _Laps:
    """Seconds spent per stage, for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now


def _match(ctx: AgentContext, agent: str, params: EntityMatcherParams, report: Report) -> _Matched:
    """Run the whole matcher over ``ctx.current`` with ``agent``'s (validated) params."""
    con = ctx.con
    u = _union(con, ctx.current)
    p = _match_params(params, u, agent)
    if not p.match_keys and not p.name_groups:
        raise BadInput(
            f"{agent}: found no email/phone/id-like or name-like columns to match on; pass match_keys or name_columns",
            code="NO_MATCH_COLUMNS",
        )
    _install_macros(con)
    try:
        return _match_steps(ctx, u, p, report)
    finally:
        _drop(con, _MATCH_TABLES)


def _find_pairs(con: duckdb.DuckDBPyConnection, p: _MatchParams, report: Report, laps: _Laps) -> dict[str, Any]:
    """Fill ``__mm_pairs`` from the exact keys, then from fuzzy names in blocks; returns what was seen."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_pairs (l BIGINT, r BIGINT, rule VARCHAR, score DOUBLE, prio INTEGER)"
    )
    exact: dict[str, Any] = {}
    for i, key in enumerate(p.match_keys):
        report(0.1 + 0.15 * i / len(p.match_keys), f"matching exact {key}")
        exact[key] = _exact_pairs(con, key, i, p)
    laps.lap("exact_keys")
    found: dict[str, Any] = {"exact_keys": exact, "blocking": {}, "fuzzy_pairs_matched": 0}
    if p.name_groups:
        report(0.25, "blocking on phonetic name keys")
        found["blocking"] = _build_blocks(con, p)
        laps.lap("blocking")
        scored = _fuzzy_pairs(con, p, len(p.match_keys), lambda f, m: report(0.3 + 0.5 * f, m))
        found["fuzzy_pairs_matched"] = scored
        laps.lap("fuzzy_scoring")
    return found


def _final_pairs(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``__mm_final``: each matched pair once, under its first rule (exact keys in order, then fuzzy)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_final AS SELECT l, r, arg_min(rule, prio) AS rule, "
        "arg_min(score, prio) AS score FROM __mm_pairs GROUP BY l, r"
    )
    rows = con.execute("SELECT rule, count(*) FROM __mm_final GROUP BY rule ORDER BY rule").fetchall()
    return {str(rule): int(n) for rule, n in rows}


def _match_steps(ctx: AgentContext, u: _Union, p: _MatchParams, report: Report) -> _Matched:
    laps = _Laps()
    report(0.02, f"loading {sum(u.rows)} records from {len(u.datasets)} datasets")
    _load_records(ctx.con, u)
    laps.lap("load")
    found = _find_pairs(ctx.con, p, report, laps)
    report(0.8, "clustering matched pairs")
    by_rule = _final_pairs(ctx.con)
    _assign_clusters(ctx.con)
    laps.lap("clustering")
    report(0.9, "writing the matched table")
    clusters = _cluster_stats(ctx.con, p)
    matched, matches = _write_matched(ctx.con, u, ctx.workdir)
    laps.lap("write")
    summary: dict[str, Any] = {
        "records": sum(u.rows),
        "datasets": dict(zip(u.labels, u.rows, strict=True)),
        "clusters": clusters.pop("clusters"),
        "matched_pairs": sum(by_rule.values()),
        **clusters,
        "pairs_by_rule": by_rule,
        "fuzzy_pairs_matched": found.pop("fuzzy_pairs_matched"),
        "match_keys": p.match_keys,
        "name_columns": p.name_columns,
        "address_columns": p.address_columns,
        "threshold": p.threshold,
        "max_block_size": p.max_block_size,
        "within_sources": p.within_sources,
        "renamed_columns": u.renamed,
        **found,
        "seconds": laps.seconds,
    }
    files = {
        "match_report.json": _write_json(ctx.workdir / "match_report.json", summary),
        "matches.csv": matches,
    }
    return _Matched(summary, Dataset("matched", matched), files)


def entity_matcher(ctx: AgentContext) -> AgentResult:
    """Cluster records describing the same entity (exact normalised keys, fuzzy names within blocks)."""
    params = parse_params(MATCH_AGENT, EntityMatcherParams, ctx.params)
    result = _match(ctx, MATCH_AGENT, params, ctx.report)
    ctx.report(1.0, f"{result.summary['clusters']} clusters from {result.summary['records']} records")
    return AgentResult(summary=result.summary, current=[result.dataset], files=result.files)
