"""Dates written as text: ISO, numeric day/month first, month names, compact ``20240131``, times."""

from __future__ import annotations

from activities.analysis.agents.clean.sql import _one_of, _rx
from activities.analysis.sql import qstr

_TIME = r"(?:,?[t ]+(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?\s*([ap]m)?)?"


_TIME_FIELDS = ("hh", "mi", "ss", "ap")


_NUM_DATE = r"^(\d{1,2})([-/.])(\d{1,2})[-/.](\d{4}|\d{2})" + _TIME + r"\s*(?:z|utc|[+-]\d{2}:?\d{2})?$"


_TEXT_DATE = (
    r"^(?:[a-z]+\.?,?\s+)?(?:(\d{1,2})(?:st|nd|rd|th)?[-/ .]+([a-z]+)\.?|([a-z]+)\.?[-/ .]+(\d{1,2})"
    r"(?:st|nd|rd|th)?)[-/ ,.]+(\d{4}|\d{2})" + _TIME + "$"
)


_COMPACT_DATE = r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"


_ISO_SHAPE = r"^\d{4}[-/.]\d{1,2}[-/.]\d"


_NUMERIC_DATE_SHAPE = r"^\d{1,2}[-/.]\d{1,2}[-/.]\d"


_SEPARATORS = ("/", ".", "-")


_MONTH_HINT = r"(?i)(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


_MONTH_NAMES = _MONTHS + (
    "january", "february", "march", "april", "june", "july", "august", "september", "sept", "october",
    "november", "december",
)  # fmt: skip


def _date_prep(v: str) -> str:
    """A struct of the cleaned value ``v`` and, where it has that shape, its numeric (``n``) or
    month-name (``t``) date parts; :func:`_date_build` turns it into a TIMESTAMP."""
    num = f"regexp_extract(lower({v}), {qstr(_NUM_DATE)}, {list(('a', 'sep', 'b', 'y') + _TIME_FIELDS)})"
    text_fields = ("d1", "m1", "m2", "d2", "y") + _TIME_FIELDS
    text = f"regexp_extract(lower({v}), {qstr(_TEXT_DATE)}, {list(text_fields)})"
    numeric_shape = _rx(v, _NUMERIC_DATE_SHAPE)
    compact = f"CASE WHEN {_rx(v, _COMPACT_DATE, full=True)} THEN {v} END"
    return (
        f"struct_pack(v := {v}, n := CASE WHEN {numeric_shape} THEN {num} END, "
        f"t := CASE WHEN {_rx(v, _MONTH_HINT)} AND {_rx(v, '[0-9]')} THEN {text} END, c := {compact})"
    )


def _year4(y: str) -> str:
    return f"CASE WHEN length({y}) = 2 THEN (CASE WHEN {y} < '70' THEN '20' ELSE '19' END) || {y} ELSE {y} END"


def _clock(p: str) -> str:
    """`` HH:MM:SS`` from the time fields of a parts struct ``p`` ('' when it has no time)."""
    hour = (
        f"CASE WHEN {p}.ap = '' THEN {p}.hh ELSE CAST(TRY_CAST({p}.hh AS INTEGER) % 12 "
        f"+ CASE WHEN {p}.ap = 'pm' THEN 12 ELSE 0 END AS VARCHAR) END"
    )
    seconds = f"CASE WHEN {p}.ss = '' THEN '00' ELSE {p}.ss END"
    return f"CASE WHEN {p}.hh = '' THEN '' ELSE ' ' || {hour} || ':' || {p}.mi || ':' || {seconds} END"


def _date_build(x: str, orders: str) -> str:
    """TIMESTAMP from a :func:`_date_prep` struct; ``orders``: ``d``/``m`` (day/month first) for each of
    :data:`_SEPARATORS` in numeric dates."""
    iso_shape = f"{x}.n IS NULL AND {x}.t IS NULL AND {_rx(f'{x}.v', _ISO_SHAPE)}"
    dotted = f"regexp_replace({x}.v, '^(\\d{{4}})[./](\\d{{1,2}})[./]', '\\1-\\2-')"
    iso = f"coalesce(TRY_CAST({x}.v AS TIMESTAMP), TRY_CAST({dotted} AS TIMESTAMP))"
    iso = f"CASE WHEN {iso_shape} THEN {iso} END"
    n, t = f"{x}.n", f"{x}.t"
    month_first = [sep for sep, o in zip(_SEPARATORS, orders, strict=True) if o == "m"]
    if len(month_first) in (0, len(_SEPARATORS)):
        month, day = (f"{n}.a", f"{n}.b") if month_first else (f"{n}.b", f"{n}.a")
    else:
        first = _one_of(f"{n}.sep", month_first)
        month, day = (
            f"CASE WHEN {first} THEN {n}.a ELSE {n}.b END",
            f"CASE WHEN {first} THEN {n}.b ELSE {n}.a END",
        )
    num = f"TRY_CAST({_year4(f'{n}.y')} || '-' || {month} || '-' || {day} || {_clock(n)} AS TIMESTAMP)"
    name = f"({t}.m1 || {t}.m2)"
    month_no = f"list_position({list(_MONTHS)}, left({name}, 3))"
    text = (
        f"CASE WHEN {_one_of(name, _MONTH_NAMES)} THEN TRY_CAST({_year4(f'{t}.y')} || '-' || {month_no} "
        f"|| '-' || ({t}.d1 || {t}.d2) || {_clock(t)} AS TIMESTAMP) END"
    )
    c = f"{x}.c"
    compact = f"TRY_CAST(substr({c}, 1, 4) || '-' || substr({c}, 5, 2) || '-' || substr({c}, 7, 2) AS TIMESTAMP)"
    parts = f"CASE WHEN {n}.y <> '' THEN {num} END, CASE WHEN {t}.y <> '' THEN {text} END"
    return f"coalesce({iso}, {parts}, CASE WHEN {c} IS NOT NULL THEN {compact} END)"
