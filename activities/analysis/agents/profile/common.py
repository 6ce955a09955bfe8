"""Helpers shared by the three agents: progress, output files, and JSON-safe values."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Report = Callable[[float, str], None]

SUMMARY_VALUE_CHARS = 80


def _num(value: Any, digits: int = 6) -> float | None:
    """A finite float rounded to ``digits`` decimals, or None."""
    if value is None:
        return None
    f = float(value)
    return round(f, digits) if math.isfinite(f) else None


def _share(part: int | None, whole: int | None) -> float:
    return round((part or 0) / whole, 4) if whole else 0.0


def _clip(value: Any, chars: int) -> Any:
    if isinstance(value, str) and len(value) > chars:
        return value[: chars - 1] + "…"
    return value


def _write_json(workdir: Path, filename: str, payload: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / filename
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
    return path


def _scaled(report: Report, start: float, end: float) -> Report:
    """A progress callback mapping [0, 1] onto [start, end] of ``report``."""
    return lambda fraction, message: report(start + (end - start) * min(max(fraction, 0.0), 1.0), message)
