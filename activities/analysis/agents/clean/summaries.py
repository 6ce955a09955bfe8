"""JSON-safe summary values: clipping, rounding, shares."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

#: Examples kept per column in summaries.
EXAMPLES = 3


#: Longest example string kept in summaries.
VALUE_CHARS = 80


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: NaN/inf to None, decimals to float, dates to ISO strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


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
