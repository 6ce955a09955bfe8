"""The signed HubSpot webhook end to end on the stack: verified, accepted once, applied once, attributed exactly."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from activities.attribution.models import WebhookEvent
from activities.attribution.signatures import signature_v1
from tests.helpers.hubspot import SECRET, body_of, deal_event, post_delivery
from tests.helpers.stack import Stack

_ids = itertools.count(1)


def fresh(n: int = 1) -> list[int]:
    """Ids no other test of the session uses (portals, deals and events alike)."""
    return [next(_ids) + 10_000 * (int(time.time() * 1000) % 100_000) for _ in range(n)]


async def tenant(stack: Stack, portal: int) -> httpx.AsyncClient:
    """A new user with its API client, owning ``portal``."""
    _, key = await stack.new_user()
    http = stack.http(key)
    answer = await http.post("/api/hubspot/portals", json={"portal_id": portal})
    assert answer.status_code == 201, answer.text
    return http


async def summary_when(http: httpx.AsyncClient, conversions: int, within_s: float = 60) -> dict[str, Any]:
    """The tenant's summary once it counts ``conversions`` (the portal's ingest works in the background)."""
    deadline = time.monotonic() + within_s
    while True:
        body: dict[str, Any] = (await http.get("/api/attribution/summary")).json()
        if body["conversions"] >= conversions or time.monotonic() > deadline:
            assert body["conversions"] == conversions, body
            return body
        await asyncio.sleep(0.2)


async def inbox_count(stack: Stack, portal: int, status: str | None = None) -> int:
    async with stack.sessions() as session:
        query = select(func.count()).select_from(WebhookEvent).where(WebhookEvent.portal_id == portal)
        if status is not None:
            query = query.where(WebhookEvent.status == status)
        return int(await session.scalar(query) or 0)


async def test_a_signed_closed_won_event_credits_its_ad_with_the_deal_amount(stack: Stack) -> None:
    portal, deal, event = fresh(3)
    http = await tenant(stack, portal)
    assert (await http.post("/api/ads", json={"ad_id": "ad-a", "campaign_id": "spring"})).status_code == 201
    body = body_of([deal_event(event, portal=portal, deal=deal, amount="1234.56", ad="ad-a", campaign="spring")])
    answer = await post_delivery(http, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    report = await summary_when(http, 1)
    assert report["attributed_revenue_cents"] == 123456
    assert report["unattributed_revenue_cents"] == 0
    assert report["by_ad"] == [
        {"ad_id": "ad-a", "campaign_id": "spring", "conversions": 1, "revenue": 1234.56, "revenue_cents": 123456}
    ]
    ad = (await http.get("/api/ads/ad-a/attribution")).json()
    assert ad["conversions"] == 1 and ad["models"]["utm"]["revenue_cents"] == 123456


async def test_a_batch_replayed_byte_for_byte_and_retried_by_hubspot_counts_once(stack: Stack) -> None:
    portal, *rest = fresh(11)
    http = await tenant(stack, portal)
    await http.post("/api/ads", json={"ad_id": "ad-b", "campaign_id": "summer"})
    events = [
        deal_event(rest[i], portal=portal, deal=rest[5 + i], amount=f"{100 * (i + 1)}.00", ad="ad-b", campaign="summer")
        for i in range(5)
    ]
    body = body_of(events)
    first = await post_delivery(http, body)
    assert first.json() == {"accepted": 5, "duplicates": 0, "ignored": 0}
    replay = await post_delivery(http, body)
    assert replay.json() == {"accepted": 0, "duplicates": 5, "ignored": 0}
    retried = body_of([{**e, "attemptNumber": 1} for e in events])  # HubSpot's retry: new attempt, new timestamp
    later = datetime.now(UTC) + timedelta(seconds=30)
    again = await post_delivery(http, retried, now=later)
    assert again.status_code == 200 and again.json()["duplicates"] == 5
    report = await summary_when(http, 5)
    assert report["attributed_revenue_cents"] == 150_000  # 100+200+300+400+500, once each
    await asyncio.sleep(1)  # nothing more arrives later either
    assert (await http.get("/api/attribution/summary")).json()["conversions"] == 5
    assert await inbox_count(stack, portal) == 5


async def test_bad_or_stale_signatures_and_malformed_bodies_store_nothing(stack: Stack) -> None:
    portal, deal, event = fresh(3)
    http = await tenant(stack, portal)
    body = body_of([deal_event(event, portal=portal, deal=deal)])
    forged = await post_delivery(http, body, secret="not-the-secret")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "BAD_SIGNATURE"
    stale = await post_delivery(http, body, now=datetime.now(UTC) - timedelta(minutes=6))
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "STALE_TIMESTAMP"
    unsigned = await http.post("/webhooks/hubspot", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "SIGNATURE_MISSING"
    malformed = await post_delivery(http, b'[{"eventId": 1,')
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "MALFORMED_JSON"
    missing = await post_delivery(http, body_of([{**deal_event(event, portal=portal, deal=deal), "objectId": None}]))
    assert missing.status_code == 400
    too_many = await post_delivery(http, body_of([deal_event(i, portal=portal, deal=deal) for i in range(101)]))
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "TOO_MANY_EVENTS"
    assert await inbox_count(stack, portal) == 0


async def test_legacy_v1_signatures_are_accepted(stack: Stack) -> None:
    portal, deal, event = fresh(3)
    http = await tenant(stack, portal)
    body = body_of([deal_event(event, portal=portal, deal=deal, amount="10.00")])
    headers = {"X-HubSpot-Signature": signature_v1(SECRET, body), "X-HubSpot-Signature-Version": "v1"}
    answer = await http.post("/webhooks/hubspot", content=body, headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    report = await summary_when(http, 1)
    assert report["unattributed_revenue_cents"] == 1000


async def test_an_unknown_ad_is_kept_unattributed_and_an_unknown_subscription_is_ignored(stack: Stack) -> None:
    portal, deal, e1, e2 = fresh(4)
    http = await tenant(stack, portal)
    unknown_ad = deal_event(e1, portal=portal, deal=deal, amount="50.00", ad="no-such-ad", campaign="x")
    contact = {**deal_event(e2, portal=portal, deal=deal + 1), "subscriptionType": "contact.creation"}
    answer = await post_delivery(http, body_of([unknown_ad, contact]))
    assert answer.json() == {"accepted": 2, "duplicates": 0, "ignored": 1}
    report = await summary_when(http, 1)
    assert report["unattributed_conversions"] == 1
    assert report["unattributed_revenue_cents"] == 5000 and report["attributed_revenue_cents"] == 0
    conversions = (await http.get("/api/conversions")).json()["items"]
    assert [(c["ad_id"], c["utm_content"]) for c in conversions] == [(None, "no-such-ad")]
    assert await inbox_count(stack, portal, "ignored") == 1


async def test_a_deal_moving_to_closed_won_is_revalued_not_added(stack: Stack) -> None:
    portal, deal, e1, e2 = fresh(4)
    http = await tenant(stack, portal)
    await http.post("/api/ads", json={"ad_id": "ad-m", "campaign_id": "fall"})
    opened = deal_event(e1, portal=portal, deal=deal, stage="qualifiedtobuy", amount="1000", ad="ad-m", campaign="fall")
    await post_delivery(http, body_of(opened))
    report = await summary_when(http, 1)
    assert report["attributed_revenue_cents"] == 40_000  # 1000 x 0.4
    won = deal_event(e2, portal=portal, deal=deal, stage="closedwon", amount="1000", ad="ad-m", campaign="fall")
    await post_delivery(http, body_of(won))
    report = await summary_when(http, 2)
    assert report["attributed_revenue_cents"] == 100_000
    assert report["by_ad"][0]["conversions"] == 2
    sampler = (await http.get("/api/campaigns/fall/sampler")).json()
    arm = next(a for a in sampler["arms"] if a["ad_id"] == "ad-m")
    assert arm["alpha"] == 2.0 and sampler["rewards_applied"] == 1  # one success: the deal was won once
    assert sampler["allocation"]["p_best"] == {"ad-m": 1.0}


async def test_a_tenant_sees_only_its_portals_events(stack: Stack) -> None:
    portal, deal, event = fresh(3)
    owner = await tenant(stack, portal)
    _, other_key = await stack.new_user()
    other = stack.http(other_key)
    taken = await other.post("/api/hubspot/portals", json={"portal_id": portal})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "PORTAL_TAKEN"
    await post_delivery(owner, body_of([deal_event(event, portal=portal, deal=deal, amount="7.00")]))
    await summary_when(owner, 1)
    assert (await other.get("/api/attribution/summary")).json()["conversions"] == 0
    assert (await other.get("/api/conversions")).json()["items"] == []
    assert (await owner.get("/api/hubspot/portals")).json()[0]["portal_id"] == portal


async def test_processed_events_are_charged_one_credit_each(stack: Stack) -> None:
    portal, deal, e1, e2 = fresh(4)
    user_id, key = await stack.new_user(credits=100)
    http = stack.http(key)
    await http.post("/api/hubspot/portals", json={"portal_id": portal})
    ignored = {**deal_event(e2, portal=portal, deal=deal), "subscriptionType": "company.creation"}
    await post_delivery(http, body_of([deal_event(e1, portal=portal, deal=deal), ignored]))
    await summary_when(http, 1)
    pricing = (await http.get("/api/pricing")).json()
    assert pricing["available_credits"] == 99
    assert {"pipeline": "attribution", "unit": "event"}.items() <= next(
        p for p in pricing["prices"] if p["unit"] == "event"
    ).items()
    assert user_id > 0


@pytest.mark.parametrize("payload", [json.dumps({"not": "an event"}).encode(), b"[]", b"nan"])
async def test_bodies_that_are_not_deliveries_are_refused_whole(stack: Stack, payload: bytes) -> None:
    portal = fresh(1)[0]
    http = await tenant(stack, portal)
    answer = await post_delivery(http, payload)
    assert answer.status_code == 400
    assert answer.json()["error"]["kind"] == "BadInput"
