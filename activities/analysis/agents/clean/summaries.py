"""JSON-safe summary values: clipping, rounding, shares."""

from __future__ import annotations

import math
from typing import Any

from activities.analysis.agents.common import jsonable

#: Examples kept per column in summaries.
EXAMPLES = 3


#: Longest example string kept in summaries.
VALUE_CHARS = 80


def clip(value: Any) -> Any:
    """A JSON-safe value with strings cut to :data:`VALUE_CHARS` characters."""
    value = jsonable(value)
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return value[: VALUE_CHARS - 1] + "…"
    return value


def _num(value: Any, digits: int = 6) -> float | None:
    if value is None:
        return None
    f = float(value)
    return round(f, digits) if math.isfinite(f) else None


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
