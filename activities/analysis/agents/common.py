"""Helpers every agent package shares: JSON-safe summaries and unique dataset names."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from activities.analysis.agents.base import Dataset


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: NaN/inf to None, decimals to float, dates and others to str."""
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
    if isinstance(value, timedelta | UUID):
        return str(value)
    return str(value)


def unique_names(datasets: Sequence[Dataset]) -> list[str]:
    """Dataset names, made unique with a ``(2)``, ``(3)``… suffix where the user gave two the same name."""
    seen: dict[str, int] = {}
    names: list[str] = []
    for ds in datasets:
        seen[ds.name] = seen.get(ds.name, 0) + 1
        names.append(ds.name if seen[ds.name] == 1 else f"{ds.name} ({seen[ds.name]})")
    return names
