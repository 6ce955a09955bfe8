"""Shared CLI output: rich for people, one JSON document for ``--json``, one readable line for errors."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from conveyor.errors import ConveyorError, ErrorKind

#: Piped output keeps full lines (ids and links) instead of folding them at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(err: ConveyorError, *, as_json: bool) -> NoReturn:
    """Report ``err`` as one readable line (or JSON) and exit non-zero (2 for bad input, 1 otherwise)."""
    if as_json:
        emit_json({"error": err.to_dict()})
    else:
        sys.stderr.write(f"error {err.code}: {err.message}\n")
    raise typer.Exit(2 if err.kind in (ErrorKind.BAD_INPUT, ErrorKind.TOO_LARGE) else 1)


def job_bars(*, show: bool) -> Progress:
    """Progress bars, one per job: label, bar, percent, a detail line (status, fps, ETA…) and elapsed time."""
    columns = (
        TextColumn("{task.fields[label]:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, disable=not show)
