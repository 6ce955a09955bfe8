"""``key-identifier``: candidate keys per dataset (single columns, else pairs) and join candidates across them."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import duckdb
from rapidfuzz import fuzz

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.master.columns import _is_id_like, _key_kind, _name_tokens
from activities.analysis.agents.master.common import _drop, _labels, _one, _parquet, _present, _schema, _write_json
from activities.analysis.agents.master.normalise import _install_macros, _normalised
from activities.analysis.agents.master.params import KeyIdentifierParams
from activities.analysis.agents.params import parse_params
from activities.analysis.sql import qident

KEY_AGENT = "key-identifier"

_SAMPLE_VALUES = 50_000
_MAX_LISTED = 50


@dataclass(frozen=True)
class _ColumnStats:
    name: str
    type: str
    rows: int
    present: int
    distinct: int
    avg_len: float
    integer_like: bool

    @property
    def null_ratio(self) -> float:
        return 1.0 - self.present / self.rows if self.rows else 0.0

    @property
    def uniqueness(self) -> float:
        return self.distinct / self.present if self.present else 0.0

    @property
    def unique(self) -> bool:
        return self.rows > 0 and self.distinct == self.rows

    @property
    def short(self) -> float:
        return 1.0 if self.avg_len <= 12 else 12.0 / self.avg_len

    @property
    def joinable(self) -> bool:
        numeric = self.type.upper().startswith(("DOUBLE", "FLOAT", "REAL", "BOOLEAN"))
        return self.present > 0 and not numeric and self.avg_len <= 100


def _column_stats(con: duckdb.DuckDBPyConnection, ds: Dataset) -> list[_ColumnStats]:
    schema = _schema(con, ds.path)
    parts = ["count(*)"]
    for col, _ in schema:
        c, ok = qident(col), _present(qident(col))
        text = f"trim(CAST({c} AS VARCHAR))"
        parts += [
            f"count(*) FILTER (WHERE {ok})",
            f"count(DISTINCT {c}) FILTER (WHERE {ok})",
            f"coalesce(avg(length({text})) FILTER (WHERE {ok}), 0)",
            f"count(*) FILTER (WHERE {ok} AND regexp_full_match({text}, '[+-]?[0-9]{{1,18}}'))",
        ]
    row = _one(con, f"SELECT {', '.join(parts)} FROM {_parquet(ds.path)}")
    rows = int(row[0])
    stats: list[_ColumnStats] = []
    for i, (col, typ) in enumerate(schema):
        present, distinct, avg_len, ints = row[1 + 4 * i : 5 + 4 * i]
        stats.append(_ColumnStats(col, typ, rows, int(present), int(distinct), float(avg_len), 0 < present == ints))
    return stats


def _single_candidate(s: _ColumnStats) -> dict[str, Any]:
    reasons = ["unique" if s.unique else "nearly_unique"]
    reasons += ["no_nulls"] if s.present == s.rows else []
    reasons += ["id_like_name"] if _is_id_like(s.name) else []
    reasons += ["integer_values"] if s.integer_like else []
    reasons += ["short_values"] if s.avg_len <= 12 else []
    score = 0.6 * s.uniqueness * (1 - s.null_ratio) + 0.2 * _is_id_like(s.name) + 0.1 * s.integer_like + 0.1 * s.short
    return {
        "columns": [s.name],
        "unique": s.unique,
        "uniqueness": round(s.uniqueness, 4),
        "null_ratio": round(s.null_ratio, 4),
        "distinct": s.distinct,
        "score": round(score, 4),
        "reasons": reasons,
    }


def _pair_candidates(
    con: duckdb.DuckDBPyConnection, ds: Dataset, stats: list[_ColumnStats], p: KeyIdentifierParams
) -> list[dict[str, Any]]:
    """The smallest keys: column pairs, tried among the most distinct short columns."""
    rows = stats[0].rows if stats else 0
    usable = sorted((s for s in stats if s.joinable and s.distinct > 1), key=lambda s: -s.distinct)
    pairs = [(a, b) for a, b in combinations(usable[: p.max_pair_columns], 2) if a.distinct * b.distinct >= rows]
    if not pairs:
        return []
    parts: list[str] = []
    for a, b in pairs:
        both = f"{_present(qident(a.name))} AND {_present(qident(b.name))}"
        parts += [
            f"count(DISTINCT ({qident(a.name)}, {qident(b.name)})) FILTER (WHERE {both})",
            f"count(*) FILTER (WHERE {both})",
        ]
    row = _one(con, f"SELECT {', '.join(parts)} FROM {_parquet(ds.path)}")
    found: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(pairs):
        distinct, present = int(row[2 * i]), int(row[2 * i + 1])
        uniqueness = distinct / present if present else 0.0
        null_ratio = 1 - present / rows if rows else 0.0
        if uniqueness < p.min_uniqueness or null_ratio > p.max_null_ratio:
            continue
        id_like = (_is_id_like(a.name) + _is_id_like(b.name)) / 2
        score = 0.6 * uniqueness * (1 - null_ratio) + 0.2 * id_like + 0.05 * (a.integer_like + b.integer_like)
        score += 0.05 * (a.short + b.short) - 0.05
        unique = distinct == rows
        found.append(
            {
                "columns": [a.name, b.name],
                "unique": unique,
                "uniqueness": round(uniqueness, 4),
                "null_ratio": round(null_ratio, 4),
                "distinct": distinct,
                "score": round(score, 4),
                "reasons": ["unique" if unique else "nearly_unique", "column_pair"],
            }
        )
    return found


def _dataset_keys(
    con: duckdb.DuckDBPyConnection, label: str, ds: Dataset, stats: list[_ColumnStats], p: KeyIdentifierParams
) -> dict[str, Any]:
    singles = [
        _single_candidate(s)
        for s in stats
        if s.present and s.uniqueness >= p.min_uniqueness and s.null_ratio <= p.max_null_ratio
    ]
    pairs_checked = not any(s.unique for s in stats)
    pairs = _pair_candidates(con, ds, stats, p) if pairs_checked else []
    ranked = sorted(singles + pairs, key=lambda c: (-c["score"], len(c["columns"]), c["columns"]))[:10]
    return {
        "dataset": label,
        "rows": stats[0].rows if stats else 0,
        "columns": len(stats),
        "candidate_keys": ranked,
        "best_key": ranked[0]["columns"] if ranked else None,
        "pairs_checked": pairs_checked,
        "unique_columns": [s.name for s in stats if s.unique],
    }


def _value_samples(con: duckdb.DuckDBPyConnection, datasets: Sequence[Dataset], stats: list[list[_ColumnStats]]) -> int:
    """Fill ``__mm_kv`` with a consistent hash sample of each column's normalised distinct values."""
    biggest = max((s.distinct for ss in stats for s in ss), default=0)
    modulus = max(1, math.ceil(biggest / _SAMPLE_VALUES))
    selects: list[str] = []
    for i, (ds, ss) in enumerate(zip(datasets, stats, strict=True)):
        cols = [(j, s) for j, s in enumerate(ss) if s.joinable]
        if not cols:
            continue
        exprs = ", ".join(f"{_normalised(qident(s.name), _key_kind(s.name))} AS {qident(str(j))}" for j, s in cols)
        names = ", ".join(qident(str(j)) for j, _ in cols)
        selects.append(
            f"SELECT {i} AS ds, CAST(col AS INTEGER) AS col, v "
            f"FROM (SELECT {exprs} FROM {_parquet(ds.path)}) UNPIVOT (v FOR col IN ({names}))"
        )
    con.execute("CREATE OR REPLACE TEMP TABLE __mm_kv (ds INTEGER, col INTEGER, v VARCHAR)")
    if selects:
        union = " UNION ALL ".join(selects)
        con.execute(f"INSERT INTO __mm_kv SELECT DISTINCT ds, col, v FROM ({union}) WHERE hash(v) % {modulus} = 0")
    return modulus


def _same_name(a: str, b: str) -> bool:
    return "".join(_name_tokens(a)) == "".join(_name_tokens(b))


def _column_similarity(a: str, b: str) -> float:
    """How alike two column names are, 0-100 (``customer_email`` and ``email`` are alike)."""
    if _same_name(a, b):
        return 100.0
    ta, tb = " ".join(_name_tokens(a)), " ".join(_name_tokens(b))
    return max(fuzz.ratio(ta, tb), fuzz.token_set_ratio(ta, tb) if min(len(ta), len(tb)) >= 4 else 0.0)


def _relationship(a: _ColumnStats, b: _ColumnStats) -> str:
    left = "one" if a.distinct == a.present else "many"
    right = "one" if b.distinct == b.present else "many"
    return f"{left}-to-{right}"


def _join_candidates(
    con: duckdb.DuckDBPyConnection, labels: list[str], stats: list[list[_ColumnStats]], p: KeyIdentifierParams
) -> list[dict[str, Any]]:
    sizes = {
        (int(d), int(c)): int(n)
        for d, c, n in con.execute("SELECT ds, col, count(*) FROM __mm_kv GROUP BY ALL").fetchall()
    }
    shared = {
        (int(a), int(ac), int(b), int(bc)): int(n)
        for a, ac, b, bc, n in con.execute(
            "SELECT x.ds, x.col, y.ds, y.col, count(*) "
            "FROM __mm_kv x JOIN __mm_kv y ON x.v = y.v AND x.ds < y.ds GROUP BY ALL"
        ).fetchall()
    }
    found: list[dict[str, Any]] = []
    for i, j in combinations(range(len(labels)), 2):
        for ci, a in enumerate(stats[i]):
            for cj, b in enumerate(stats[j]):
                candidate = _join_candidate(
                    a, b, sizes.get((i, ci), 0), sizes.get((j, cj), 0), shared.get((i, ci, j, cj), 0), p
                )
                if candidate is not None:
                    found.append({"left_dataset": labels[i], "right_dataset": labels[j], **candidate})
    return sorted(found, key=lambda c: -c["score"])[:_MAX_LISTED]


def _join_candidate(
    a: _ColumnStats, b: _ColumnStats, size_a: int, size_b: int, shared: int, p: KeyIdentifierParams
) -> dict[str, Any] | None:
    similarity = _column_similarity(a.name, b.name)
    overlap = shared / min(size_a, size_b) if min(size_a, size_b) else 0.0
    same_name = _same_name(a.name, b.name)
    by_name = same_name or (similarity >= 80 and overlap > 0)
    by_values = overlap >= p.min_overlap and min(a.distinct, b.distinct) >= 20
    if not (by_name or by_values):
        return None
    reasons = (["same_name"] if same_name else ["similar_name"] if similarity >= 80 else []) + (
        ["value_overlap"] if overlap > 0 else []
    )
    return {
        "left_column": a.name,
        "right_column": b.name,
        "name_similarity": round(similarity, 1),
        "value_overlap": round(overlap, 4),
        "relationship": _relationship(a, b),
        "score": round(0.4 * similarity / 100 + 0.6 * overlap, 4),
        "reasons": reasons,
    }


def key_identifier(ctx: AgentContext) -> AgentResult:
    """Candidate keys (single columns, else pairs) per dataset, and columns shared across datasets."""
    started = time.monotonic()
    params = parse_params(KEY_AGENT, KeyIdentifierParams, ctx.params)
    labels = _labels(ctx.current)
    _install_macros(ctx.con)
    stats: list[list[_ColumnStats]] = []
    datasets: list[dict[str, Any]] = []
    for i, (label, ds) in enumerate(zip(labels, ctx.current, strict=True)):
        ctx.report(0.8 * i / max(1, len(labels)), f"profiling columns of {label}")
        stats.append(_column_stats(ctx.con, ds))
        datasets.append(_dataset_keys(ctx.con, label, ds, stats[-1], params))
    joins: list[dict[str, Any]] = []
    sample_modulus = 1
    if len(labels) > 1:
        ctx.report(0.8, "comparing value sets across datasets")
        try:
            sample_modulus = _value_samples(ctx.con, ctx.current, stats)
            joins = _join_candidates(ctx.con, labels, stats, params)
        finally:
            _drop(ctx.con, ["__mm_kv"])
    summary: dict[str, Any] = {
        "datasets_count": len(labels),
        "keys_found": sum(1 for d in datasets if d["best_key"]),
        "join_candidates_count": len(joins),
        "datasets": datasets,
        "join_candidates": joins,
        "value_sample_rate": round(1 / sample_modulus, 4),
        "seconds": round(time.monotonic() - started, 3),
    }
    ctx.report(1.0, "keys identified")
    return AgentResult(summary=summary, files={"keys.json": _write_json(ctx.workdir / "keys.json", summary)})
