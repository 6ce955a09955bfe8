"""HubSpot deliveries as tests send them: deal events, signed with the suite's client secret, posted to the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from activities.attribution.signatures import signed_headers

#: The client secret of the suite's HubSpot app (the stack's ``CONVEYOR_HUBSPOT_CLIENT_SECRET``).
SECRET = "conveyor-test-hubspot-secret"
#: A moment every test's events happened at (milliseconds since the epoch), plus the event's own offset.
BASE_MS = 1_764_000_000_000


def deal_event(
    event_id: int,
    *,
    portal: int,
    deal: int,
    stage: str = "closedwon",
    amount: str | None = "1000.00",
    ad: str | None = None,
    campaign: str | None = None,
    at_ms: int | None = None,
    subscription: str = "deal.propertyChange",
    attempt: int = 0,
    properties: bool = True,
    contact: str | None = None,
) -> dict[str, Any]:
    """One HubSpot event changing a deal's stage, carrying the deal's properties unless ``properties`` is off."""
    event: dict[str, Any] = {
        "eventId": event_id,
        "subscriptionId": 4242,
        "portalId": portal,
        "appId": 77,
        "occurredAt": at_ms if at_ms is not None else BASE_MS + event_id,
        "subscriptionType": subscription,
        "attemptNumber": attempt,
        "objectId": deal,
        "changeSource": "CRM",
    }
    if subscription.endswith("propertyChange"):
        event["propertyName"] = "dealstage"
        event["propertyValue"] = stage
    if properties:
        props: dict[str, Any] = {"dealstage": stage}
        if amount is not None:
            props["amount"] = amount
        if ad is not None:
            props["utm_content"] = ad
        if campaign is not None:
            props["utm_campaign"] = campaign
        event["properties"] = props
    return event


def body_of(events: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    """A delivery's body as HubSpot sends it (compact JSON)."""
    return json.dumps(events, separators=(",", ":")).encode()


async def post_delivery(
    http: httpx.AsyncClient,
    body: bytes,
    *,
    secret: str = SECRET,
    now: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a delivery to ``/webhooks/hubspot`` signed (v3) for the URL the client calls, at ``now``."""
    url = f"{str(http.base_url).rstrip('/')}/webhooks/hubspot"
    signed = signed_headers(secret, "POST", url, body, now or datetime.now(UTC))
    return await http.post("/webhooks/hubspot", content=body, headers={**signed, **(headers or {})})
