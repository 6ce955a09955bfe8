"""The README documents every setting and every CLI command the code has."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from cli.main import app
from conveyor.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [
        f"CONVEYOR_{name.upper()}" for name in Settings.model_fields if f"`CONVEYOR_{name.upper()}`" not in README
    ]
    assert missing == []


def test_every_cli_command_is_documented() -> None:
    group = get_command(app)
    names = list(getattr(group, "commands", {}))
    assert {"up", "demo", "worker", "api", "status", "cancel", "schedules", "users", "analyze", "db"} <= set(names)
    missing = [n for n in names if f"conveyor {n}" not in README]
    assert missing == []


def test_the_two_commands_come_first() -> None:
    first_block = README.split("```", 2)[1]
    assert "make demo" in first_block and "make test" in first_block
