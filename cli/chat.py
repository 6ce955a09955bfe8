"""``conveyor chat …``: the chat pipeline's commands and its part of the demo (being written)."""

from __future__ import annotations

import typer

from cli.context import DemoContext, DemoRun


def register(app: typer.Typer) -> None:
    """Add the chat commands."""


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """The chat part of the demo."""
    return []
