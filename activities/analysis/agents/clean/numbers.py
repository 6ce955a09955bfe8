"""Numbers written as text: currency, ``(x)`` negatives, US and European thousands separators."""

from __future__ import annotations

from typing import Any

from activities.analysis.agents.clean.sql import Stage, _rx
from activities.analysis.sql import qstr

_CURRENCY = r"\s*(?:[$€£¥₹]|(?i:\b(?:usd|eur|gbp|chf|jpy|inr|cad|aud)\b))\s*"


_US_INT = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,3}(?: \d{3})+|\d+)"


_US_NUM = (
    r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:'\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:\.\d*)?|\.\d+)"
    r"(?:[eE][+-]?\d+)?"
)


_EU_INT = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?: \d{3})+|\d+)"


_EU_NUM = r"[+-]?(?:(?:\d{1,3}(?:\.\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:,\d+)?|,\d+)"


_NUMBER_SHAPE = r"[-+]?[0-9.,' ]*[0-9][0-9.,' ]*(?:[eE][-+]?[0-9]+)?"


def _numstr(v: str) -> str:
    """A number string without currency symbols/codes, with ``(x)`` written ``-x``."""
    unwrapped = f"CASE WHEN {v} LIKE '(%)' THEN '-' || substr({v}, 2, length({v}) - 2) ELSE {v} END"
    return f"trim(regexp_replace({unwrapped}, {qstr(_CURRENCY)}, '', 'g'))"


def _fast_number(v: str, style: str, integer: bool) -> str:
    """DuckDB's own cast where it cannot misread the style (no thousands separators)."""
    if integer:
        plain = f"strpos({v}, '.') = 0" + (f" AND strpos({v}, ',') = 0" if style == "eu" else "")
        return f"CASE WHEN {plain} THEN TRY_CAST({v} AS BIGINT) END"
    if style == "eu":
        return f"CASE WHEN strpos({v}, '.') = 0 THEN TRY_CAST(replace({v}, ',', '.') AS DOUBLE) END"
    return f"TRY_CAST({v} AS DOUBLE)"


def _slow_number(ns: str, style: str, integer: bool) -> str:
    """A :func:`_numstr` string with thousands separators checked and removed, cast; else NULL."""
    if style == "eu":
        pattern, plain = (
            (_EU_INT if integer else _EU_NUM),
            f"replace(replace(replace({ns}, '.', ''), ' ', ''), ',', '.')",
        )
    else:
        pattern, plain = (
            (_US_INT if integer else _US_NUM),
            f"replace(replace(replace({ns}, ',', ''), '''', ''), ' ', '')",
        )
    cast = "BIGINT" if integer else "DOUBLE"
    return f"CASE WHEN {_rx(ns, pattern, full=True)} THEN TRY_CAST({plain} AS {cast}) END"


def _number_stages(style: str, integer: bool) -> list[Stage]:
    """Stages from a cleaned text value to BIGINT/DOUBLE (NULL when it is no number of that style)."""
    return [
        lambda v: f"CASE WHEN {_fast_number(v, style, integer)} IS NULL THEN {_numstr(v)} ELSE {v} END",
        lambda v: f"coalesce({_fast_number(v, style, integer)}, {_slow_number(v, style, integer)})",
    ]


def _number_stats(i: int, v: str, ns: str) -> dict[str, str]:
    """Sample aggregates (over cleaned ``v`` and its :func:`_numstr` ``ns``) deciding numbers and style."""
    us, eu = _rx(ns, _US_NUM, full=True), _rx(ns, _EU_NUM, full=True)
    exprs = {
        f"{i}.us_only": f"count(*) FILTER (WHERE {us} AND NOT {eu})",
        f"{i}.eu_only": f"count(*) FILTER (WHERE {eu} AND NOT {us})",
        f"{i}.lead0": f"count(*) FILTER (WHERE {_rx(ns, '^[+-]?0[0-9]')})",
    }
    for style in ("us", "eu"):
        for kind, integer in (("n", False), ("i", True)):
            parsed = f"coalesce({_fast_number(v, style, integer)}, {_slow_number(ns, style, integer)})"
            exprs[f"{i}.{kind}_{style}"] = f"count({parsed})"
    return exprs


def _reaches(count: int, total: int, rate: float) -> bool:
    """Whether ``count`` (> 0) of ``total`` values is at least the share ``rate``."""
    return count > 0 and count / total >= rate - 1e-9


def _number_style(stats: dict[str, Any]) -> str:
    return "eu" if stats["eu_only"] > 0 and stats["us_only"] == 0 else "us"


def _format_number(value: float, style: str) -> str:
    text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(round(value, 6))
    return text.replace(".", ",") if style == "eu" else text
