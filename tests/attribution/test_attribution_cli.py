"""The attribution commands against the stack: connect a portal, import ads, replay deliveries, read the report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers.hubspot import deal_event
from tests.helpers.processes import cli_json, run_cli
from tests.helpers.stack import Stack

PORTAL = 880_001


async def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await run_cli(stack.settings, *args)


async def test_connect_import_replay_and_report(stack: Stack, tmp_path: Path) -> None:
    connected = await cli(stack, "hubspot", "connect", str(PORTAL), "--json")
    assert connected.returncode == 0, connected.stderr
    assert cli_json(connected)["portal_id"] == PORTAL
    ads = tmp_path / "ads.json"
    ads.write_text(
        json.dumps(
            [{"ad_id": "cli-a", "campaign_id": "cli-c", "name": "A"}, {"ad_id": "cli-b", "campaign_id": "cli-c"}]
        )
    )
    imported = await cli(stack, "ads", "import", str(ads), "--json")
    assert cli_json(imported) == {"created": 2, "updated": 0, "owner": "local"}
    again = await cli(stack, "ads", "import", str(ads), "--json")
    assert cli_json(again)["updated"] == 2
    deliveries = tmp_path / "deliveries.jsonl"
    lines = [
        [deal_event(1, portal=PORTAL, deal=901, amount="10.00", ad="cli-a", campaign="cli-c")],
        [
            deal_event(2, portal=PORTAL, deal=902, amount="20.00", ad="cli-b", campaign="cli-c"),
            deal_event(3, portal=PORTAL, deal=903, amount="5.00"),
        ],
    ]
    deliveries.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    replayed = await cli(stack, "webhooks", "replay", str(deliveries), "--json")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert cli_json(replayed) == {"deliveries": 2, "accepted": 3, "duplicates": 0, "ignored": 0, "refused": []}
    twice = await cli(stack, "webhooks", "replay", str(deliveries), "--json")
    assert cli_json(twice)["duplicates"] == 3
    for _ in range(100):
        report = cli_json(await cli(stack, "attribution", "report", "--json"))
        if report["conversions"] >= 3:
            break
    assert report["conversions"] == 3
    assert report["attributed_revenue_cents"] == 3000 and report["unattributed_revenue_cents"] == 500
    assert [(r["ad_id"], r["revenue_cents"]) for r in report["by_ad"]] == [("cli-b", 2000), ("cli-a", 1000)]
    sampler = await cli(stack, "sampler", "show", "cli-c", "--json")
    view = cli_json(sampler)
    assert {a["ad_id"] for a in view["arms"]} == {"cli-a", "cli-b"}
    assert view["rewards_applied"] == 2  # both deals were won once
    human = await cli(stack, "attribution", "report")
    assert "revenue per ad" in human.stdout and "cli-b" in human.stdout


async def test_bad_files_exit_with_one_readable_line(stack: Stack, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    done = await cli(stack, "ads", "import", str(broken))
    assert done.returncode == 2 and done.stderr.startswith("error MALFORMED_JSON")
    bad_id = tmp_path / "bad.json"
    bad_id.write_text(json.dumps([{"ad_id": "no spaces", "campaign_id": "c"}]))
    refused = await cli(stack, "ads", "import", str(bad_id))
    assert refused.returncode == 2 and "BAD_AD_ID" in refused.stderr
    missing = await cli(stack, "webhooks", "replay", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "FILE_UNREADABLE" in missing.stderr
    unknown = await cli(stack, "sampler", "show", "never-seen", "--json")
    assert unknown.returncode == 1 and cli_json(unknown)["error"]["code"] == "SAMPLER_NOT_FOUND"
    listed = await cli(stack, "approvals", "list", "--json")
    assert listed.returncode == 0 and isinstance(cli_json(listed), list)
    nothing = await cli(stack, "approvals", "approve", "999999")
    assert nothing.returncode == 1 and "APPROVAL_NOT_FOUND" in nothing.stderr
