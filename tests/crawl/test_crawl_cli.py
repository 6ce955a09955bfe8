"""`conveyor crawl` (``python -m cli crawl``) against the real test stack and the sample site."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cli.sample_site import SampleSite
from tests.helpers.processes import cli_json, run_cli
from tests.helpers.stack import Stack

pytestmark = pytest.mark.process

MANIFEST = json.loads((Path(__file__).resolve().parents[2] / "samples/site/expected.json").read_text())


async def conveyor(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the stack's settings."""
    return await run_cli(stack.settings, *args)


@pytest.mark.needs_chromium
async def test_crawl_command_reports_bugs_by_kind_and_severity(stack: Stack, sample_site: SampleSite) -> None:
    url = f"{sample_site.url}/menu.html"
    result = await conveyor(
        stack, "crawl", url, "--max-depth", "1", "--slow-ms", str(MANIFEST["slow_page_ms"]), "--json"
    )
    assert result.returncode == 0, result.stderr
    crawl = cli_json(result)
    assert crawl["status"] == "completed"
    assert crawl["workflow_id"].startswith("crawl-")
    menu_bugs = {b["kind"] for b in MANIFEST["bugs"] if any(p.startswith("/menu/") for p in b["pages"])}
    assert menu_bugs and menu_bugs <= {b["kind"] for b in crawl["bugs"]}
    # Bugs from medium up get a ticket (CONVEYOR_CRAWL_TICKET_MIN_SEVERITY); the others are listed without one.
    ticketed = {"critical", "high", "medium"}
    assert all((b["ticket"] or "").startswith("BUG-") == (b["severity"] in ticketed) for b in crawl["bugs"]), crawl

    table = await conveyor(stack, "crawl", url, "--max-depth", "0", "--slow-ms", str(MANIFEST["slow_page_ms"]))
    assert table.returncode == 0, table.stderr
    assert "completed" in table.stdout and "1 pages" in table.stdout


async def test_crawl_command_refuses_a_bad_url_in_one_line(stack: Stack) -> None:
    result = await conveyor(stack, "crawl", "ftp://files.example", "--json")
    assert result.returncode == 2
    assert cli_json(result)["error"]["code"] == "BAD_URL"
    plain = await conveyor(stack, "crawl", "not a url")
    assert plain.returncode == 2
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error BAD_URL:"), plain.stderr


async def test_crawl_command_fails_clearly_on_a_closed_port(stack: Stack) -> None:
    result = await conveyor(stack, "crawl", stack.closed_url, "--json")
    assert result.returncode == 1
    crawl = cli_json(result)
    assert crawl["status"] == "failed"
    assert crawl["error_code"] == "START_URL_UNREACHABLE"
