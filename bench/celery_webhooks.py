"""The seed's HubSpot webhook path as a minimal Celery + Redis peer, for ``bench/webhooks.py`` to measure against.

What the seed runs (004, ML service): a FastAPI endpoint that calls ``process_hubspot_webhook.delay(event)`` per
event on the ``hubspot-webhook-events`` queue, and a worker at ``--concurrency=4`` that computes the deal's revenue,
attributes it to the ad in ``utm_content`` and feeds the campaign's sampler. This peer does the same honestly:

* :func:`create_peer_app`: an ASGI endpoint that checks the same HubSpot v3 signature, parses the delivery with the
  same parser, dedupes each event by :func:`~activities.attribution.deliveries.dedupe_key` with Redis ``SET NX``
  (so a redelivery is harmless, as in Conveyor) and calls :func:`process_hubspot_webhook` ``.delay(event)`` per
  new event. If publishing fails, the event's dedupe key is released and the request answers 503 (retry).
* :func:`process_hubspot_webhook`: the Celery task: revenue with
  :func:`~activities.attribution.revenue.deal_revenue_cents`, then one Lua script that applies it exactly once per
  dedupe key (a processed set, revenue and conversions per ad in hashes, the campaign sampler's successes), so a
  task delivered twice cannot count twice. Results are not stored (``ignore_result``): the endpoint never reads them.

Broker and result backend are one Redis URL: ``configure(url)`` in the bench process, ``CONVEYOR_BENCH_REDIS_URL``
in the worker (``celery -A bench.celery_webhooks worker --concurrency=4 -Q hubspot-webhook-events``). Bench-only:
Celery and redis-py are installed by ``scripts/bench-setup.sh``, never by the project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import redis
from celery import Celery  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from activities.attribution.deliveries import EventDisposition, HubSpotEvent, classify, dedupe_key, parse_delivery
from activities.attribution.revenue import deal_revenue_cents
from activities.attribution.signatures import verify_request
from conveyor.errors import ConveyorError, TooLarge

QUEUE = "hubspot-webhook-events"
TASK = "process_hubspot_webhook"
#: Largest delivery body accepted (100 events of a few hundred bytes each fit many times over).
MAX_BODY_BYTES = 1_000_000
#: How long a seen event's dedupe key is kept: HubSpot retries a failed delivery for up to three days.
SEEN_TTL_S = 7 * 24 * 3600
#: The ``utm_content`` field of the per-portal revenue hash that holds unattributed revenue.
UNATTRIBUTED = "(unattributed)"

celery_app = Celery("bench.celery_webhooks")
celery_app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def configure(redis_url: str) -> None:
    """Point the Celery app (broker and result backend) at ``redis_url``."""
    celery_app.conf.update(broker_url=redis_url, result_backend=redis_url)


if "CONVEYOR_BENCH_REDIS_URL" in os.environ:  # the worker subprocess: ``celery -A`` imports this module
    configure(os.environ["CONVEYOR_BENCH_REDIS_URL"])


def seen_key(key: str) -> str:
    """Redis key marking an event (by its dedupe key) as accepted by the endpoint."""
    return f"hubspot:seen:{key}"


def processed_key(portal_id: int) -> str:
    """Redis set of the dedupe keys of a portal's events the worker has applied."""
    return f"hubspot:{portal_id}:processed"


def revenue_key(portal_id: int) -> str:
    """Redis hash of a portal's revenue in cents per ``utm_content`` (``UNATTRIBUTED`` when none)."""
    return f"hubspot:{portal_id}:revenue"


def conversions_key(portal_id: int) -> str:
    """Redis hash of a portal's conversions per ``utm_content``."""
    return f"hubspot:{portal_id}:conversions"


def sampler_key(portal_id: int, campaign_id: str) -> str:
    """Redis hash of a campaign's sampler evidence: successes (closed-won deals) per ad."""
    return f"hubspot:{portal_id}:sampler:{campaign_id}"


#: Apply one event exactly once: KEYS processed, revenue, conversions, sampler; ARGV dedupe key, ad, cents,
#: successes (1 for a closed-won deal of an attributed ad, as Conveyor rewards its sampler). Returns 1 when
#: applied, 0 when the key was applied before.
APPLY_SCRIPT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[4], ARGV[2], ARGV[4]) end
return 1
"""

_worker_redis: redis.Redis | None = None


def _redis() -> redis.Redis:
    """The worker process's Redis client (one per prefork child, made on first use)."""
    global _worker_redis
    if _worker_redis is None:
        _worker_redis = redis.Redis.from_url(celery_app.conf.broker_url)
    return _worker_redis


@celery_app.task(name=TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def process_hubspot_webhook(event: dict[str, Any]) -> dict[str, Any]:
    """Compute one deal event's revenue and apply it to its ad and campaign sampler once; returns what it did."""
    parsed = HubSpotEvent.model_validate(event)
    key = dedupe_key(parsed)
    if classify(parsed) is not EventDisposition.PROCESSED:
        return {"key": key, "applied": False, "ignored": True}
    properties = parsed.properties or {}
    stage = properties.get("dealstage") or parsed.property_value or ""
    cents = deal_revenue_cents(properties.get("amount"), stage)
    ad = (properties.get("utm_content") or "").strip() or UNATTRIBUTED
    campaign = (properties.get("utm_campaign") or "").strip() or UNATTRIBUTED
    successes = 1 if stage == "closedwon" and ad != UNATTRIBUTED else 0
    keys = [
        processed_key(parsed.portal_id),
        revenue_key(parsed.portal_id),
        conversions_key(parsed.portal_id),
        sampler_key(parsed.portal_id, campaign),
    ]
    applied = _redis().eval(APPLY_SCRIPT, len(keys), *keys, key, ad, cents, successes)
    return {"key": key, "applied": bool(applied), "revenue_cents": cents, "ad_id": ad}


@dataclass(frozen=True)
class Accepted:
    """What the endpoint did with one delivery."""

    accepted: int
    duplicates: int


def accept_delivery(client: redis.Redis, events: list[HubSpotEvent]) -> Accepted:
    """Queue each event not seen before (``SET NX`` on its dedupe key, then ``.delay``); blocking, run in a thread.

    A publish that fails releases the event's key before the error propagates, so HubSpot's retry queues it.
    """
    accepted = duplicates = 0
    for event in events:
        key = seen_key(dedupe_key(event))
        if not client.set(key, 1, nx=True, ex=SEEN_TTL_S):
            duplicates += 1
            continue
        try:
            process_hubspot_webhook.delay(event.model_dump(mode="json", by_alias=True, exclude_none=True))
        except Exception:
            client.delete(key)
            raise
        accepted += 1
    return Accepted(accepted, duplicates)


def create_peer_app(secret: str, redis_url: str) -> Starlette:
    """The peer's ASGI app: ``POST /webhooks/hubspot`` (v3 signature, parse, dedupe, ``.delay`` per event)."""
    configure(redis_url)
    client = redis.Redis.from_url(redis_url, max_connections=64)

    async def hubspot_webhook(request: Request) -> JSONResponse:
        """Accept one signed delivery: 200 once every new event is queued, 401/400/413 refused, 503 retry."""
        try:
            if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
                raise TooLarge("the delivery is larger than 1 MB", code="BODY_TOO_LARGE")
            body = await request.body()
            verify_request("POST", str(request.url), body, request.headers, secret, datetime.now(UTC))
            events = parse_delivery(body)
        except ConveyorError as err:
            return JSONResponse(err.to_dict(), status_code=err.http_status)
        try:
            done = await anyio.to_thread.run_sync(accept_delivery, client, events)
        except (redis.RedisError, OSError) as err:
            return JSONResponse({"code": "QUEUE_UNAVAILABLE", "message": str(err)}, status_code=503)
        return JSONResponse({"accepted": done.accepted, "duplicates": done.duplicates})

    return Starlette(routes=[Route("/webhooks/hubspot", hubspot_webhook, methods=["POST"])])


@dataclass(frozen=True)
class PeerTotals:
    """What the peer's worker applied for one portal."""

    processed: int
    revenue_cents: dict[str, int]
    conversions: dict[str, int]


def _text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def read_totals(client: redis.Redis, portal_id: int) -> PeerTotals:
    """The portal's processed count and per-ad revenue and conversions, as the worker stored them."""
    revenue = client.hgetall(revenue_key(portal_id))
    conversions = client.hgetall(conversions_key(portal_id))
    return PeerTotals(
        processed=int(client.scard(processed_key(portal_id))),
        revenue_cents={_text(k): int(v) for k, v in revenue.items()},
        conversions={_text(k): int(v) for k, v in conversions.items()},
    )


def peer_app_from_env() -> Starlette:
    """The peer's app for ``uvicorn --factory``: its Redis and secret from the bench's environment."""
    return create_peer_app(os.environ["CONVEYOR_BENCH_SECRET"], os.environ["CONVEYOR_BENCH_REDIS_URL"])
