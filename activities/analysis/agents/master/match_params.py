"""The matcher's params: match keys, name and address columns (from names unless given), threshold, blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.master.columns import _address_columns, _key_kind, _name_groups
from activities.analysis.agents.master.params import (
    _bool_param,
    _int_param,
    _number_param,
    _resolve_columns,
    _str_list_param,
)
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


def _match_params(params: dict[str, Any], u: _Union, agent: str) -> _MatchParams:
    keys = _str_list_param(params, agent, "match_keys")
    names = _str_list_param(params, agent, "name_columns")
    addresses = _str_list_param(params, agent, "address_columns")
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
        threshold=_number_param(params, agent, "threshold", 88.0, 0.0, 100.0),
        max_block_size=_int_param(params, agent, "max_block_size", 50, 2, 10_000),
        within_sources=_bool_param(params, agent, "within_sources", len(u.datasets) == 1),
    )
