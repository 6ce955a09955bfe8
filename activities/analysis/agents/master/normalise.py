"""Normalisation as DuckDB macros: text, email, phone, address and soundex keys, nullish placeholders."""

from __future__ import annotations

import duckdb

from activities.analysis.sql import qstr

_NULLISH = ("", "null", "none", "n/a", "na", "nan", "nil", "-", "--", "?", "unknown")


def _collapse_runs(expr: str, digits: str = "0123456") -> str:
    for d in digits:
        expr = f"regexp_replace({expr}, '{d}+', '{d}', 'g')"
    return expr


#: Street designators, dropped from addresses so that "12 Oak Street" and "12 oak st." compare equal.
_DESIGNATORS = (
    "street|st|avenue|ave|av|road|rd|drive|dr|boulevard|blvd|lane|ln|court|ct|place|pl|way|terrace|ter|"
    "highway|hwy|parkway|pkwy|circle|cir|square|sq"
)


_NULLISH_SQL = ", ".join(qstr(v) for v in _NULLISH)
_SOUNDEX_MAP = ("aeiouybfpvcgjkqsxzdtlmnrhw", "000000111122222222334556")
_MACROS = (
    f"__mm_nullish(s) AS CASE WHEN lower(trim(CAST(s AS VARCHAR))) IN ({_NULLISH_SQL}) THEN NULL "
    "ELSE trim(CAST(s AS VARCHAR)) END",
    # no nullif() in these: it repeats its argument, and nested macros would repeat the regexes many times
    "__mm_text(s) AS trim(regexp_replace(regexp_replace(lower(strip_accents(__mm_nullish(s))), "
    "'[''.`]', '', 'g'), '[^\\pL\\pN]+', ' ', 'g'))",
    "__mm_key(s) AS lower(__mm_nullish(s))",
    "__mm_email(s) AS CASE WHEN regexp_full_match(__mm_key(s), '[^@\\s]+@[^@\\s]+\\.[^@\\s]+') THEN __mm_key(s) END",
    "__mm_digits(s) AS regexp_replace(regexp_replace(lower(CAST(s AS VARCHAR)), "
    "'(x|ext|extension)\\.?\\s*[0-9]+\\s*$', ''), '[^0-9]', '', 'g')",
    "__mm_phone10(d) AS CASE WHEN length(replace(d, left(d, 1), '')) = 0 THEN NULL "
    "WHEN length(d) >= 10 THEN right(d, 10) WHEN length(d) >= 7 THEN d END",
    "__mm_phone(s) AS __mm_phone10(__mm_digits(s))",
    "__mm_address(s) AS trim(regexp_replace(regexp_replace(__mm_text(s), "
    f"'\\b({_DESIGNATORS})\\b', '', 'g'), ' +', ' ', 'g'))",
    "__mm_letters(w) AS regexp_replace(lower(strip_accents(w)), '[^a-z]', '', 'g')",
    "__mm_sxcode(w) AS "
    + _collapse_runs(
        f"(CASE WHEN left(w, 1) IN ('h', 'w') THEN '0' ELSE '' END"
        f" || translate(w, '{_SOUNDEX_MAP[0]}', '{_SOUNDEX_MAP[1]}'))"
    ),
    "__mm_soundex0(w) AS CASE WHEN w <> '' THEN upper(left(w, 1)) "
    "|| rpad(left(replace(substr(__mm_sxcode(w), 2), '0', ''), 3), 3, '0') END",
    "__mm_soundex(s) AS __mm_soundex0(__mm_letters(s))",
)


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Normalisation macros (text, email, phone, address, soundex) on this connection."""
    for macro in _MACROS:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {macro}")


def _normalised(column_sql: str, kind: str | None) -> str:
    """SQL for the normalised key of a column of this kind."""
    if kind == "email":
        return f"__mm_email({column_sql})"
    if kind == "phone":
        return f"__mm_phone({column_sql})"
    return f"__mm_key({column_sql})"
