"""Fuzzy scoring of candidate pairs with rapidfuzz: names, blended with addresses; matches go to ``__mm_pairs``."""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from activities.analysis.agents.master.common import Report, _one
from activities.analysis.agents.master.match_params import _MatchParams

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_SCORE_BATCH = 250_000
_ADDRESS_WEIGHT = 0.3


def _name_floor(threshold: float) -> float:
    """The least name score that can still reach ``threshold`` once blended with an address score."""
    return max(0.0, (threshold - 100 * _ADDRESS_WEIGHT) / (1 - _ADDRESS_WEIGHT))


def _score_batch(got: dict[str, Any], threshold: float) -> FloatArray:
    """Fuzzy scores: name token_sort_ratio, blended with address token_set_ratio where both have one.

    Addresses whose house numbers differ score 0: same-named neighbours are not the same person.
    """
    floor = _name_floor(threshold)
    names: FloatArray = np.asarray(
        process.cpdist(
            got["nl"].tolist(),
            got["nr"].tolist(),
            scorer=fuzz.token_sort_ratio,
            score_cutoff=floor,
            workers=-1,
        ),
        dtype=np.float64,
    )
    both = np.asarray(got["ad2"], dtype=bool)
    score: FloatArray = np.where(both, 0.0, names)
    conflict = np.asarray(got["an_x"], dtype=bool)
    score[both & conflict] = (1 - _ADDRESS_WEIGHT) * names[both & conflict]
    need = both & ~conflict & (names >= floor)
    if need.any():
        left, right = got["al"][need].tolist(), got["ar"][need].tolist()
        addresses = np.asarray(process.cpdist(left, right, scorer=fuzz.token_set_ratio, workers=-1), dtype=np.float64)
        score[need] = (1 - _ADDRESS_WEIGHT) * names[need] + _ADDRESS_WEIGHT * addresses
    return score


def _fuzzy_pairs(con: duckdb.DuckDBPyConnection, p: _MatchParams, priority: int, report: Report) -> int:
    """Score the candidate pairs batch by batch; matches go to ``__mm_pairs``. Returns how many matched."""
    (pairs,) = _one(con, "SELECT count(*) FROM __mm_cand")
    batches = math.ceil(int(pairs) / _SCORE_BATCH)
    lefts: list[IntArray] = []
    rights: list[IntArray] = []
    scores: list[FloatArray] = []
    for batch in range(batches):
        report(batch / batches, f"scoring candidate pairs, batch {batch + 1} of {batches}")
        got = con.execute(
            "SELECT l, r, nl, nr, al, ar, ad2, an_x FROM __mm_cand "
            f"WHERE rowid >= {batch * _SCORE_BATCH} AND rowid < {(batch + 1) * _SCORE_BATCH}"
        ).fetchnumpy()
        score = _score_batch(got, p.threshold)
        keep = score >= p.threshold
        lefts.append(np.asarray(got["l"], dtype=np.int64)[keep])
        rights.append(np.asarray(got["r"], dtype=np.int64)[keep])
        scores.append(score[keep])
    if not lefts:
        return 0
    found = {"l": np.concatenate(lefts), "r": np.concatenate(rights), "score": np.concatenate(scores)}
    con.register("__mm_fuzzy", found)
    try:
        con.execute(f"INSERT INTO __mm_pairs SELECT l, r, 'fuzzy', round(score, 2), {priority} FROM __mm_fuzzy")
        (matched,) = _one(con, "SELECT count(*) FROM (SELECT DISTINCT l, r FROM __mm_fuzzy)")
    finally:
        con.unregister("__mm_fuzzy")
    return int(matched)
