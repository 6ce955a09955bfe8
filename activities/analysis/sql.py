"""SQL quoting for the DuckDB queries the analysis pipeline builds (column names and paths come from users)."""

from __future__ import annotations


def qident(name: str) -> str:
    """Quote an SQL identifier (column names may contain spaces or quotes)."""
    return '"' + name.replace('"', '""') + '"'


def qstr(text: str) -> str:
    """Quote an SQL string literal (a value, or a file path)."""
    return "'" + text.replace("'", "''") + "'"
