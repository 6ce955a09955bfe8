"""The matcher's params: match keys, name and address columns (from names unless given), threshold, blocks."""

from __future__ import annotations

from dataclasses import dataclass

from activities.analysis.agents.master.columns import _address_columns, _key_kind, _name_groups
from activities.analysis.agents.master.params import EntityMatcherParams, _resolve_columns
from activities.analysis.agents.master.records import _Union


@dataclass(frozen=True)
class _MatchParams:
    match_keys: list[str]
    name_groups: list[list[str]]
    address_columns: list[str]
    threshold: float
    max_block_size: int
    within_sources: bool

    @property
    def name_columns(self) -> list[str]:
        return [c for g in self.name_groups for c in g]


def _match_params(params: EntityMatcherParams, u: _Union, agent: str) -> _MatchParams:
    """The matcher's params with column names resolved against the union of the datasets, defaults filled."""
    keys, names, addresses = params.match_keys, params.name_columns, params.address_columns
    cols = u.names
    return _MatchParams(
        match_keys=(
            _resolve_columns(agent, "match_keys", keys, u.lookup)
            if keys is not None
            else [c for c in cols if _key_kind(c) is not None]
        ),
        name_groups=(
            ([_resolve_columns(agent, "name_columns", names, u.lookup)] if names else [])
            if names is not None
            else _name_groups(cols)
        ),
        address_columns=(
            _resolve_columns(agent, "address_columns", addresses, u.lookup)
            if addresses is not None
            else _address_columns(cols)
        ),
        threshold=params.threshold,
        max_block_size=params.max_block_size,
        within_sources=len(u.datasets) == 1 if params.within_sources is None else params.within_sources,
    )
