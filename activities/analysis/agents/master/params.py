"""Agent params: typed, range-checked reads of ``ctx.params`` and column names resolved case-insensitively."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.errors import BadInput


def _bad(agent: str, message: str) -> BadInput:
    return BadInput(f"{agent}: {message}", code="BAD_PARAMS")


def _number_param(params: dict[str, Any], agent: str, key: str, default: float, lo: float, hi: float) -> float:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _bad(agent, f"param {key!r} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _int_param(params: dict[str, Any], agent: str, key: str, default: int, lo: int, hi: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(agent, f"param {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _bool_param(params: dict[str, Any], agent: str, key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(agent, f"param {key!r} must be true or false, got {value!r}")
    return value


def _str_param(params: dict[str, Any], agent: str, key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(agent, f"param {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _str_list_param(params: dict[str, Any], agent: str, key: str) -> list[str] | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _bad(agent, f"param {key!r} must be a list of names, got {value!r}")
    return [v.strip() for v in value]


def _resolve_columns(agent: str, key: str, names: Sequence[str], lookup: dict[str, str]) -> list[str]:
    """Map user-given column names (case-insensitive) to actual ones; BAD_PARAMS for unknown ones."""
    resolved: list[str] = []
    for name in names:
        actual = lookup.get(name.lower())
        if actual is None:
            known = ", ".join(sorted(set(lookup.values()))[:30])
            raise _bad(agent, f"param {key!r} names unknown column {name!r}; columns: {known}")
        if actual not in resolved:
            resolved.append(actual)
    return resolved
