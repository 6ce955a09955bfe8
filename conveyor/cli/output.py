"""Shared CLI output: rich for people, one JSON document for ``--json``, one readable line for errors."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from conveyor.errors import ConveyorError

console = Console()
err_console = Console(stderr=True)


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(err: ConveyorError, *, as_json: bool) -> NoReturn:
    """Report ``err`` as one readable line (or JSON) and exit non-zero (2 for bad input, 1 otherwise)."""
    if as_json:
        emit_json({"error": err.to_dict()})
    else:
        err_console.print(f"[red]error[/red] {err.code}: {err.message}", highlight=False)
    raise typer.Exit(2 if not err.retryable else 1)
