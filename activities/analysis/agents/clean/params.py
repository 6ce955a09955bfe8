"""Validated agent params (every failure is ``BadInput(code="BAD_PARAMS")``) and missing columns."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from activities.analysis.agents.clean.sql import Col
from activities.analysis.agents.clean.summaries import clip
from conveyor.errors import BadInput


class _Params:
    """Validated access to an agent's params; every failure is ``BadInput(code="BAD_PARAMS")``."""

    def __init__(self, agent: str, raw: dict[str, Any], schemas: Sequence[Sequence[Col]]) -> None:
        self.agent = agent
        self.raw = raw
        self.known = {c.name for cols in schemas for c in cols}

    def bad(self, name: str, value: Any, expected: str) -> BadInput:
        """The error for a bad value of param ``name``."""
        shown = clip(repr(value))
        return BadInput(
            f"{self.agent}: param '{name}' {expected}, got {shown}",
            code="BAD_PARAMS",
            details={"agent": self.agent, "param": name, "value": shown},
        )

    def choice(self, name: str, options: Sequence[str], default: str) -> str:
        """One of ``options`` (case-insensitive)."""
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or value.strip().lower() not in options:
            raise self.bad(name, value, "must be one of " + ", ".join(options))
        return value.strip().lower()

    def number(self, name: str, default: float, low: float, high: float, open_low: bool = False) -> float:
        """A finite number in ``[low, high]`` (``(low, high]`` when ``open_low``)."""
        value = self.optional_number(name, low, high, open_low)
        return default if value is None else value

    def optional_number(self, name: str, low: float, high: float, open_low: bool = False) -> float | None:
        """Like :meth:`number`, None when absent."""
        value = self.raw.get(name)
        if value is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < value if open_low else low <= value) or value > high:
            raise self.bad(name, value, f"must be a number in {'(' if open_low else '['}{low:g}, {high:g}]")
        return float(value)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        value = self.raw.get(name, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.bad(name, value, f"must be an integer from {low} to {high}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        """A boolean."""
        value = self.raw.get(name, default)
        if not isinstance(value, bool):
            raise self.bad(name, value, "must be true or false")
        return value

    def text(self, name: str, default: str) -> str:
        """A string."""
        value = self.raw.get(name, default)
        if not isinstance(value, str):
            raise self.bad(name, value, "must be a string")
        return value

    def strings(self, name: str) -> list[str]:
        """A list of non-empty strings (a single string is a list of one)."""
        value = self.raw.get(name)
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise self.bad(name, value, "must be a list of non-empty strings")
        return list(dict.fromkeys(items))

    def columns(self, name: str) -> list[str] | None:
        """Column names that some current dataset has; None when the param is absent."""
        if self.raw.get(name) is None:
            return None
        names = self.strings(name)
        self.check_columns(name, names)
        return names

    def check_columns(self, name: str, names: Iterable[str]) -> None:
        """Raise unless every name is a column of some current dataset."""
        missing = [n for n in names if n not in self.known]
        if missing:
            raise self.bad(name, missing if len(missing) > 1 else missing[0], "names no column of the data")

    def table(self, name: str) -> dict[str, Any]:
        """A JSON object (``{}`` when absent)."""
        value = self.raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.bad(name, value, "must be an object")
        return value


def _missing(cols: Sequence[Col], wanted: Iterable[str] | None) -> list[str]:
    names = {c.name for c in cols}
    return [w for w in wanted or () if w not in names]
