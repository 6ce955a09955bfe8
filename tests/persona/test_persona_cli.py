"""`conveyor persona ingest|search` (``python -m cli persona``) against the real test stack and the bundled corpus."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers.processes import cli_json as as_json
from tests.helpers.processes import run_cli
from tests.helpers.stack import Stack

pytestmark = pytest.mark.process

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "personas"


async def conveyor(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the stack's settings."""
    return await run_cli(stack.settings, *args)


def _copy_corpus(root: Path, persona_id: str) -> None:
    shutil.copytree(SAMPLES / "data" / "franklin", root / "data" / persona_id)
    shutil.copytree(SAMPLES / "personas" / "franklin", root / "personas" / persona_id)


async def test_persona_ingest_then_search_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    persona_id = f"cli-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_copy_corpus, tmp_path, persona_id)
    ingested = await conveyor(stack, "persona", "ingest", persona_id, "--data-dir", str(tmp_path), "--json")
    assert ingested.returncode == 0, ingested.stderr
    persona = as_json(ingested)
    assert persona["status"] == "completed" and persona["error_message"] is None
    assert {j["status"] for j in persona["jobs"]} == {"completed"}
    vectors = {j["collection"]: j["total_vectors"] for j in persona["jobs"]}
    assert vectors["quotes"] == 50 and vectors["works"] > 0 and vectors["profile"] > 0

    table = await conveyor(stack, "persona", "ingest", persona_id, "--data-dir", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "completed" in table.stdout and "works" in table.stdout  # re-run: adds nothing, shows the table

    found = await conveyor(
        stack,
        "persona",
        "search",
        persona_id,
        "Fish and visitors after three days",
        "-k",
        "2",
        "-c",
        "quotes",
        "--json",
    )
    assert found.returncode == 0, found.stderr
    passages = as_json(found)["passages"]
    assert len(passages) == 2 and all(p["collection"] == "quotes" for p in passages)
    assert "Fish and visitors" in passages[0]["text"]


async def test_persona_ingest_of_a_missing_folder_fails_in_one_line(stack: Stack, tmp_path: Path) -> None:
    missing = await conveyor(stack, "persona", "ingest", "nobody-here", "--data-dir", str(tmp_path / "absent"))
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error DATA_DIR_NOT_FOUND:"), missing.stderr

    # a folder without this persona's data: refused before anything is copied or started
    failed = await conveyor(
        stack, "persona", "ingest", f"gone-{uuid.uuid4().hex[:6]}", "--data-dir", str(tmp_path), "--json"
    )
    assert failed.returncode == 2
    assert as_json(failed)["error"]["code"] == "PERSONA_DATA_NOT_FOUND"
