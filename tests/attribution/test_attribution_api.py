"""Ads, metrics, touchpoints, fatigue approvals and similar creatives over HTTP on the stack, tenant by tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from activities.attribution import contract
from activities.attribution.schemas import FatigueReport, IndexReport
from cli.attribution import DEMO_TIRED_AD, demo_metrics
from tests.attribution.test_webhooks_api import fresh, summary_when, tenant
from tests.helpers.hubspot import body_of, deal_event, post_delivery
from tests.helpers.stack import Stack


async def run_now(stack: Stack, workflow: str, queue: str, result_type: type[Any]) -> Any:
    """What a schedule would start (the 6-hourly fatigue run, the 12-hourly index), run now."""
    return await stack.client.execute_workflow(
        workflow,
        contract.ScheduledRun(),
        id=f"{workflow}-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        result_type=result_type,
    )


async def test_a_critical_ad_waits_for_its_owner_who_approves_it_once(stack: Stack) -> None:
    portal = fresh(1)[0]
    owner = await tenant(stack, portal)
    ad = f"tired-{portal}"
    made = await owner.post("/api/ads", json={"ad_id": ad, "campaign_id": f"c-{portal}", "hook": "one more time"})
    assert made.status_code == 201, made.text
    tired = [{**m, "ad_id": ad} for m in demo_metrics(datetime.now(UTC).date(), [DEMO_TIRED_AD])]
    assert (await owner.post("/api/ad-metrics", json={"metrics": tired})).json() == {"stored": len(tired)}

    report: FatigueReport = await run_now(stack, contract.FATIGUE_WORKFLOW, contract.FATIGUE_QUEUE, FatigueReport)

    mine = [a for a in report.approvals if a.ad_id == ad]
    assert len(mine) == 1 and mine[0].action == "rotate"
    pending = (await owner.get("/api/approvals", params={"status": "pending"})).json()["items"]
    [approval] = [p for p in pending if p["ad_id"] == ad]
    fatigue = (await owner.get(f"/api/ads/{ad}")).json()
    assert fatigue["fatigue_level"] == "critical" and fatigue["fatigue_reasons"]

    _, other_key = await stack.new_user()
    async with stack.http(other_key) as other:
        assert (await other.get(f"/api/approvals/{approval['id']}")).status_code == 404
        assert (await other.post(f"/api/approvals/{approval['id']}/approve")).status_code == 404
        assert (await other.get(f"/api/ads/{ad}")).status_code == 404

    approved = await owner.post(f"/api/approvals/{approval['id']}/approve", json={"note": "rotate it"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "executed"
    assert (await owner.get(f"/api/ads/{ad}")).json()["status"] == "rotated"
    again = await owner.post(f"/api/approvals/{approval['id']}/reject")
    assert again.status_code == 409 and again.json()["error"]["code"] == "APPROVAL_CLOSED"
    closed = (await owner.get(f"/api/approvals/{approval['id']}")).json()
    assert closed["status"] == "executed" and closed["decided_by"] and closed["executed_at"]


async def test_the_winner_index_finds_the_planted_winner_for_its_owner_only(stack: Stack) -> None:
    portal, *events = fresh(5)
    owner = await tenant(stack, portal)
    campaign = f"idx-{portal}"
    creatives = {
        f"w-{portal}": "a barista pours latte art in slow motion",
        f"l-{portal}": "a mountain bike jumps over a creek",
    }
    for ad_id, hook in creatives.items():
        made = await owner.post("/api/ads", json={"ad_id": ad_id, "campaign_id": campaign, "hook": hook})
        assert made.status_code == 201
    winner = f"w-{portal}"
    won = [
        deal_event(e, portal=portal, deal=e, amount="100.00", ad=winner, campaign=campaign) for e in events
    ]  # four deals won through the coffee ad: its posterior's lower bound leads
    assert (await post_delivery(owner, body_of(won))).status_code == 200
    await summary_when(owner, len(won))
    sampler = (await owner.get(f"/api/campaigns/{campaign}/sampler")).json()
    assert {a["ad_id"]: a["alpha"] for a in sampler["arms"]}[winner] == 1 + len(won)
    allocation = (await owner.get(f"/api/campaigns/{campaign}/allocations")).json()
    assert max(allocation["shares"], key=allocation["shares"].get) == winner

    await run_now(stack, contract.INDEX_WORKFLOW, contract.INDEX_QUEUE, IndexReport)

    found = await owner.get("/api/creatives/similar", params={"text": "espresso and milk foam art", "k": 2})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results and results[0]["ad_id"] == winner and found.json()["version"] >= 1
    _, other_key = await stack.new_user()
    async with stack.http(other_key) as other:
        theirs = (await other.get("/api/creatives/similar", params={"text": "espresso and milk foam art"})).json()
        assert all(r["ad_id"] not in creatives for r in theirs["results"])
        assert (await other.get(f"/api/campaigns/{campaign}/sampler")).status_code == 404


async def test_touchpoints_credit_a_deal_without_utm_by_last_touch_and_linear(stack: Stack) -> None:
    portal, deal, event = fresh(3)
    owner = await tenant(stack, portal)
    for ad_id in ("tp-a", "tp-b"):
        await owner.post("/api/ads", json={"ad_id": f"{ad_id}-{portal}", "campaign_id": f"tp-{portal}"})
    contact = f"contact-{portal}"
    converted = datetime.fromtimestamp((deal_event(event, portal=portal, deal=deal)["occurredAt"]) / 1000, UTC)
    touches = [("tp-a", 3), ("tp-b", 2), ("tp-a", 1)]  # hours before the conversion; tp-a is the last touch
    for ad_id, hours in touches:
        at = (converted - timedelta(hours=hours)).isoformat()
        made = await owner.post(
            "/api/touchpoints", json={"contact_id": contact, "ad_id": f"{ad_id}-{portal}", "at": at}
        )
        assert made.status_code == 201, made.text
    naive = await owner.post(
        "/api/touchpoints", json={"contact_id": contact, "ad_id": f"tp-a-{portal}", "at": "2026-01-01T00:00:00"}
    )
    assert naive.status_code == 400 and naive.json()["error"]["code"] == "BAD_TIMESTAMP"
    unknown = await owner.post(
        "/api/touchpoints", json={"contact_id": contact, "ad_id": "nope", "at": "2026-01-01T00:00:00Z"}
    )
    assert unknown.status_code == 404

    event_body = deal_event(event, portal=portal, deal=deal, amount="300.00")  # no utm_content
    # contacts come from the CRM's associations; an event that carries properties has none, so the stored deal's
    # are used: store the deal with its contact, as an earlier CRM-answered event would have left it
    await _deal_with_contact(stack, portal, deal, contact)
    assert (await post_delivery(owner, body_of(event_body))).status_code == 200
    report = await summary_when(owner, 1)
    assert report["attributed_revenue_cents"] == 30_000
    a = (await owner.get(f"/api/ads/tp-a-{portal}/attribution")).json()
    b = (await owner.get(f"/api/ads/tp-b-{portal}/attribution")).json()
    assert a["models"]["last_touch"]["revenue_cents"] == 30_000 and "last_touch" not in b["models"]
    assert (a["models"]["linear"]["revenue_cents"], b["models"]["linear"]["revenue_cents"]) == (20_000, 10_000)


async def _deal_with_contact(stack: Stack, portal: int, deal: int, contact: str) -> None:
    """Store the deal with its contact, as an earlier event answered by the CRM would have left it."""
    from activities.attribution.models import Deal, HubSpotPortal

    async with stack.sessions.begin() as session:
        owner = await session.get(HubSpotPortal, portal)
        assert owner is not None
        session.add(Deal(user_id=owner.user_id, portal_id=portal, deal_id=str(deal), contact_ids=[contact]))


async def test_bad_ads_metrics_and_portals_are_refused_naming_the_field(stack: Stack) -> None:
    portal = fresh(1)[0]
    owner: httpx.AsyncClient = await tenant(stack, portal)
    bad_id = await owner.post("/api/ads", json={"ad_id": "has space", "campaign_id": "c"})
    assert bad_id.status_code == 400 and bad_id.json()["error"]["details"]["field"] == "ad_id"
    await owner.post("/api/ads", json={"ad_id": f"m-{portal}", "campaign_id": "c"})
    taken = await owner.post("/api/ads", json={"ad_id": f"m-{portal}", "campaign_id": "c"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "AD_EXISTS"
    day = {"day": "2026-12-01", "impressions": 10, "clicks": 20, "spend": 1.0, "frequency": 1.0}
    too_many_clicks = await owner.post("/api/ad-metrics", json={"metrics": [{"ad_id": f"m-{portal}", **day}]})
    assert too_many_clicks.status_code == 400 and too_many_clicks.json()["error"]["code"] == "BAD_METRICS"
    unknown = await owner.post("/api/ad-metrics", json={"metrics": [{"ad_id": "nope", **day, "clicks": 1}]})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "AD_NOT_FOUND"
    again = await owner.post("/api/hubspot/portals", json={"portal_id": portal})
    assert again.status_code == 200  # connecting one's own portal again changes nothing
    assert (await owner.post("/api/hubspot/portals", json={"portal_id": 0})).status_code == 422
