"""Attribution: webhook acceptance, portals, ads, metrics, touchpoints, conversions, the report, samplers, approvals
and similar creatives. Shared by the HTTP API and the CLI; it starts and asks workflows by the contract's names.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowUpdateFailedError

from activities.attribution import contract
from activities.attribution.deliveries import EventDisposition, HubSpotEvent, classify, dedupe_key, parse_delivery
from activities.attribution.models import (
    Ad,
    AdMetric,
    Approval,
    Conversion,
    DealCredit,
    HubSpotPortal,
    Touchpoint,
    WebhookEvent,
)
from activities.attribution.sampler import Allocation
from activities.attribution.schemas import (
    ApprovalOutcome,
    Decision,
    IngestState,
    Reward,
    RewardBatch,
    SamplerInput,
    SamplerView,
    SimilarRequest,
    SimilarResult,
)
from activities.attribution.signatures import verify_request
from api.caller import Caller
from conveyor.auth import default_owner as auth_default_owner
from conveyor.client import execute_workflow, search_attributes, temporal_errors
from conveyor.codec import is_local_install, write_secret_once
from conveyor.credits import available_credits, charge_usage
from conveyor.db import GroupCommit, dialect_insert
from conveyor.errors import BadInput, Conflict, ConveyorError, ExternalServiceError, InsufficientCredits, NotFound
from conveyor.settings import Settings

#: Primary attribution models (what pays an ad); ``linear`` is recorded beside them.
PRIMARY_MODELS = ("utm", "last_touch", "none")


# --- webhook acceptance -------------------------------------------------------------------------------------------


class Delivery(BaseModel):
    """What a webhook delivery added to the inbox."""

    accepted: int = Field(description="Events new to the inbox (pending or ignored).")
    duplicates: int = Field(description="Events the inbox already held (a redelivery or a retry).")
    ignored: int = Field(description="Events of subscription types the pipeline records but does not process.")


class Doorbell:
    """Wakes each portal's ingest workflow after its events were committed, coalescing concurrent rings.

    ``ring(portal)`` returns once a ``wake`` signal-with-start that began *after* the call has completed, so the
    workflow is sure to look at the inbox after this request's commit; concurrent requests for one portal share
    that signal (one in flight and one queued at most), which keeps a burst of deliveries from becoming a burst of
    signals in the workflow's history.
    """

    def __init__(self, send: Callable[[int, int], Awaitable[None]]) -> None:
        self._send = send
        self._queued: dict[int, asyncio.Future[None]] = {}
        self._running: set[int] = set()
        self._owners: dict[int, int] = {}

    async def ring(self, portal_id: int, owner: int) -> None:
        """Wake the portal's workflow (``owner`` tags a workflow it starts); raises what the signal raised."""
        self._owners[portal_id] = owner
        waiter = self._queued.get(portal_id)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._queued[portal_id] = waiter
            if portal_id not in self._running:
                self._running.add(portal_id)
                asyncio.get_running_loop().create_task(self._drain(portal_id))
        await asyncio.shield(waiter)

    async def _drain(self, portal_id: int) -> None:
        try:
            while (waiter := self._queued.pop(portal_id, None)) is not None:
                try:
                    await self._send(portal_id, self._owners[portal_id])
                except BaseException as err:  # noqa: BLE001 - handed to every waiter of this ring
                    waiter.set_exception(err)
                    waiter.exception()  # marks it retrieved: a waiter that left (a dropped request) logs nothing
                else:
                    waiter.set_result(None)
        finally:
            self._running.discard(portal_id)


#: Where a local install keeps the client secret it made for itself (the demo and ``webhooks replay`` sign with it).
LOCAL_SECRET_FILE = "hubspot-client-secret"


def client_secret(settings: Settings) -> str | None:
    """The HubSpot app's client secret: ``CONVEYOR_HUBSPOT_CLIENT_SECRET``, else on a local install (Temporal on
    loopback) a secret of its own, made once under the var dir with mode 0600; ``None`` otherwise."""
    if settings.hubspot_client_secret is not None and settings.hubspot_client_secret.get_secret_value():
        return settings.hubspot_client_secret.get_secret_value()
    if not is_local_install(settings):
        return None
    path = settings.var_dir.resolve() / LOCAL_SECRET_FILE
    return write_secret_once(path, secrets.token_urlsafe(32)).strip()


async def wake_ingest(client: Client, settings: Settings, portal_id: int, owner: int) -> None:
    """Signal-with-start the portal's ingest workflow (started on the portal's first delivery)."""
    with temporal_errors(f"ingest of portal {portal_id}"):
        await client.start_workflow(
            contract.INGEST_WORKFLOW,
            IngestState(portal_id=portal_id, batch_size=settings.attribution_batch_size),
            id=contract.ingest_workflow_id(portal_id),
            task_queue=contract.WEBHOOK_QUEUE,
            start_signal=contract.WAKE_SIGNAL,
            search_attributes=search_attributes(contract.NAME, owner),
        )


async def default_owner(session: AsyncSession, settings: Settings) -> int:
    """The user that owns deliveries of portals nobody connected (created like the CLI's local user if missing)."""
    return await auth_default_owner(
        session,
        settings.hubspot_default_owner,
        "CONVEYOR_HUBSPOT_DEFAULT_OWNER",
        settings.local_user,
        settings.local_user_credits,
    )


async def portal_owners(session: AsyncSession, settings: Settings, portals: Sequence[int]) -> dict[int, int]:
    """Each portal's owner: whoever connected it, else the default owner."""
    rows = await session.execute(
        select(HubSpotPortal.portal_id, HubSpotPortal.user_id).where(HubSpotPortal.portal_id.in_(list(portals)))
    )
    owners = {int(p): int(u) for p, u in rows.all()}
    missing = [p for p in portals if p not in owners]
    if missing:
        fallback = await default_owner(session, settings)
        owners.update({p: fallback for p in missing})
    return owners


def _inbox_row(event: HubSpotEvent, owner: int) -> dict[str, Any]:
    disposition = classify(event)
    return {
        "dedupe_key": dedupe_key(event),
        "portal_id": event.portal_id,
        "user_id": owner,
        "subscription_type": event.subscription_type[:100],
        "object_id": event.object_id,
        "occurred_at_ms": event.occurred_at,
        "event": event.model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": "pending" if disposition is EventDisposition.PROCESSED else "ignored",
        "received_at": datetime.now(UTC),
    }


#: Most deliveries one inbox transaction writes (HubSpot's 100 events each): bounds how long it holds the lock.
INBOX_GROUP = 64


class Inbox:
    """Writes accepted deliveries to the inbox with group commit: one transaction for every delivery that arrived
    while the previous one was being written.

    Concurrent requests then share a transaction instead of queueing for SQLite's single write lock one by one (its
    busy handler sleeps between tries, which is what made acceptance slow under load); on PostgreSQL it saves a
    commit per delivery. Each request still gets its own answer, after the transaction holding its events committed.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._group: GroupCommit[list[HubSpotEvent], tuple[Delivery, dict[int, int]]] = GroupCommit(
            self._write, most=INBOX_GROUP
        )
        self._default_owner: int | None = None

    async def accept(self, events: list[HubSpotEvent]) -> tuple[Delivery, dict[int, int]]:
        """Store ``events`` (those already there are duplicates); the delivery's counts and its portals' owners."""
        return await self._group.submit(events)

    async def _fallback_owner(self) -> int:
        """The default owner (looked up, or made, once per process: the user it names does not change)."""
        if self._default_owner is None:
            async with self._sessions() as session:
                self._default_owner = await default_owner(session, self._settings)
                await session.commit()
        return self._default_owner

    async def _write(self, deliveries: list[list[HubSpotEvent]]) -> list[tuple[Delivery, dict[int, int]]]:
        portals = sorted({e.portal_id for events in deliveries for e in events})
        engine: AsyncEngine = self._sessions.kw["bind"]
        async with engine.begin() as conn:
            # a connection and SQL expressions on the tables (no ORM session, identity map or per-row bookkeeping):
            # this is the hot path of every webhook: one owner lookup, one INSERT … RETURNING, one commit
            portal = HubSpotPortal.__table__.c
            found = await conn.execute(select(portal.portal_id, portal.user_id).where(portal.portal_id.in_(portals)))
            owners = {int(p): int(u) for p, u in found.all()}
            if len(owners) < len(portals):
                fallback = await self._fallback_owner()
                owners.update({p: fallback for p in portals if p not in owners})
            rows: dict[str, dict[str, Any]] = {}
            keys: list[list[str]] = []
            for events in deliveries:
                keys.append([])
                for event in events:
                    row = _inbox_row(event, owners[event.portal_id])
                    rows.setdefault(row["dedupe_key"], row)
                    keys[-1].append(row["dedupe_key"])
            insert = dialect_insert(conn, WebhookEvent, core=True)
            insert = insert.on_conflict_do_nothing(index_elements=["dedupe_key"])
            stored = await conn.execute(insert.returning(insert.table.c.dedupe_key), list(rows.values()))
            fresh = set(stored.scalars())
        answers = []
        for events, event_keys in zip(deliveries, keys, strict=True):
            accepted = duplicates = ignored = 0
            for key in event_keys:
                if key in fresh:
                    fresh.discard(key)  # the first delivery carrying it accepted it; a later one repeats it
                    accepted += 1
                    ignored += rows[key]["status"] == "ignored"
                else:
                    duplicates += 1
            wake = {e.portal_id: owners[e.portal_id] for e in events if classify(e) is EventDisposition.PROCESSED}
            answers.append((Delivery(accepted=accepted, duplicates=duplicates, ignored=ignored), wake))
        return answers


async def accept_delivery(
    inbox: Inbox,
    settings: Settings,
    doorbell: Doorbell,
    *,
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Delivery:
    """Verify a HubSpot delivery, store all its events in the inbox in one transaction, wake the portals' ingest.

    401 bad or stale signature, 400 malformed (nothing stored), 503 when the secret is unset or Temporal could not
    be told (the events are kept; HubSpot's retry rings again and adds nothing twice).
    """
    secret = client_secret(settings)
    if secret is None:
        raise ExternalServiceError(
            "HubSpot webhooks are not configured: set CONVEYOR_HUBSPOT_CLIENT_SECRET", code="WEBHOOK_NOT_CONFIGURED"
        )
    verify_request(method, url, body, headers, secret, datetime.now(UTC), settings.public_url or None)
    events = parse_delivery(body)
    delivery, wake = await inbox.accept(events)
    await asyncio.gather(*(doorbell.ring(portal, owner) for portal, owner in sorted(wake.items())))
    return delivery


# --- portals ------------------------------------------------------------------------------------------------------


async def connect_portal(caller: Caller, portal_id: int) -> tuple[HubSpotPortal, bool]:
    """Connect a portal to the caller (idempotent); another owner's portal is a 409. Returns (portal, created)."""
    if portal_id <= 0:
        raise BadInput("portal_id must be a positive HubSpot account id", code="BAD_PORTAL_ID")
    session = caller.session
    found = await session.get(HubSpotPortal, portal_id)
    if found is not None:
        if found.user_id != caller.user.id:
            raise Conflict(f"portal {portal_id} is connected to another user", code="PORTAL_TAKEN")
        return found, False
    portal = HubSpotPortal(portal_id=portal_id, user_id=caller.user.id)
    session.add(portal)
    # events the portal sent before it was connected belong to the caller from now on
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.portal_id == portal_id, WebhookEvent.status == "pending")
        .values(user_id=caller.user.id)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return portal, True


async def portals_of(caller: Caller) -> list[HubSpotPortal]:
    """The caller's portals."""
    found = await caller.session.scalars(
        select(HubSpotPortal).where(HubSpotPortal.user_id == caller.user.id).order_by(HubSpotPortal.portal_id)
    )
    return list(found)


# --- ads ----------------------------------------------------------------------------------------------------------


class AdIn(BaseModel):
    """An ad: its id (what deals carry in ``utm_content``), campaign, name and creative."""

    ad_id: str = Field(max_length=100, description="1-100 letters, digits, '.', '_', ':', '~' or '-'.")
    campaign_id: str = Field(max_length=100, description="The campaign (``utm_campaign``); same characters.")
    name: str = Field("", max_length=contract.NAME_LENGTH)
    hook: str = Field("", max_length=contract.CREATIVE_LENGTH)
    script: str = Field("", max_length=contract.CREATIVE_LENGTH)
    offer: str = Field("", max_length=contract.CREATIVE_LENGTH)
    tags: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("tags")
    @classmethod
    def _short_tags(cls, tags: list[str]) -> list[str]:
        if any(len(t) > 100 for t in tags):
            raise ValueError("each tag has at most 100 characters")
        return tags

    def checked(self) -> AdIn:
        """This ad with its ids validated (BadInput naming the field)."""
        contract.check_ad_id(self.ad_id, "ad_id")
        contract.check_ad_id(self.campaign_id, "campaign_id")
        return self


async def _ad(caller: Caller, ad_id: str) -> Ad:
    found = await caller.session.scalar(select(Ad).where(Ad.user_id == caller.user.id, Ad.ad_id == ad_id))
    if found is None:
        raise NotFound(f"ad {ad_id} not found", code="AD_NOT_FOUND")
    return found


async def get_ad(caller: Caller, ad_id: str) -> Ad:
    """One of the caller's ads (404 otherwise)."""
    return await _ad(caller, ad_id)


async def create_ad(caller: Caller, ad: AdIn) -> Ad:
    """A new ad of the caller's (409 if the id is taken); its campaign's sampler learns of it."""
    ad = ad.checked()
    session = caller.session
    if await session.scalar(select(Ad.id).where(Ad.user_id == caller.user.id, Ad.ad_id == ad.ad_id)) is not None:
        raise Conflict(f"ad {ad.ad_id} already exists", code="AD_EXISTS")
    row = Ad(user_id=caller.user.id, **ad.model_dump())
    session.add(row)
    await session.commit()
    await register_ads(caller, {ad.campaign_id: [ad.ad_id]})
    return row


async def import_ads(caller: Caller, ads: Sequence[AdIn]) -> tuple[int, int]:
    """Create or update the caller's ads (one transaction); returns (created, updated)."""
    checked = [a.checked() for a in ads]
    session = caller.session
    existing = {
        a.ad_id: a
        for a in await session.scalars(
            select(Ad).where(Ad.user_id == caller.user.id, Ad.ad_id.in_([a.ad_id for a in checked]))
        )
    }
    created = updated = 0
    for ad in checked:
        row = existing.get(ad.ad_id)
        if row is None:
            row = Ad(user_id=caller.user.id, **ad.model_dump())
            session.add(row)
            existing[ad.ad_id] = row
            created += 1
        else:
            for name, value in ad.model_dump().items():
                setattr(row, name, value)
            updated += 1
    await session.commit()
    campaigns: dict[str, list[str]] = defaultdict(list)
    for ad in checked:
        campaigns[ad.campaign_id].append(ad.ad_id)
    await register_ads(caller, campaigns)
    return created, updated


async def send_rewards(client: Client, batch: RewardBatch) -> None:
    """Signal-with-start a campaign's sampler with ads and rewards."""
    with temporal_errors(f"sampler of campaign {batch.campaign_id}"):
        await client.start_workflow(
            contract.SAMPLER_WORKFLOW,
            SamplerInput(owner=batch.owner, campaign_id=batch.campaign_id),
            id=contract.sampler_workflow_id(batch.owner, batch.campaign_id),
            task_queue=contract.WEBHOOK_QUEUE,
            start_signal=contract.REWARD_SIGNAL,
            start_signal_args=[batch],
            search_attributes=search_attributes(contract.NAME, batch.owner),
        )


async def register_ads(caller: Caller, campaigns: Mapping[str, Sequence[str]]) -> None:
    """Tell each campaign's sampler of its ads (they get the prior and a share of the allocation)."""
    for campaign, ads in campaigns.items():
        await send_rewards(caller.client, RewardBatch(owner=caller.user.id, campaign_id=campaign, ads=sorted(ads)))


def ads_query(caller: Caller, campaign_id: str | None) -> Select[Any]:
    """The caller's ads (of one campaign if given), newest first."""
    query = select(Ad).where(Ad.user_id == caller.user.id)
    if campaign_id:
        query = query.where(Ad.campaign_id == campaign_id)
    return query.order_by(Ad.created_at.desc(), Ad.id.desc())


# --- metrics and touchpoints --------------------------------------------------------------------------------------


class MetricIn(BaseModel):
    """One ad's delivery on one day."""

    ad_id: str = Field(max_length=100)
    day: date
    impressions: int = Field(ge=0, le=10**12)
    clicks: int = Field(ge=0, le=10**12)
    spend: float = Field(ge=0, le=1e12, allow_inf_nan=False)
    frequency: float = Field(ge=0, le=1e6, allow_inf_nan=False)


async def record_metrics(caller: Caller, metrics: Sequence[MetricIn]) -> int:
    """Store daily metrics (a day posted again replaces it); each new ad-day's clicks become its sampler's trials."""
    session = caller.session
    for index, m in enumerate(metrics):
        if m.clicks > m.impressions:
            raise BadInput(f"metrics {index}: clicks exceed impressions", code="BAD_METRICS", details={"index": index})
    ads = {
        a.ad_id: a
        for a in await session.scalars(
            select(Ad).where(Ad.user_id == caller.user.id, Ad.ad_id.in_({m.ad_id for m in metrics}))
        )
    }
    unknown = sorted({m.ad_id for m in metrics} - set(ads))
    if unknown:
        raise NotFound(f"ad {unknown[0]} not found", code="AD_NOT_FOUND", details={"ad_ids": unknown[:20]})
    for m in metrics:
        values = m.model_dump()
        insert = dialect_insert(session, AdMetric).values(user_id=caller.user.id, **values)
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=["user_id", "ad_id", "day"],
                set_={k: values[k] for k in ("impressions", "clicks", "spend", "frequency")},
            )
        )
    await session.commit()
    rewards: dict[str, list[Reward]] = defaultdict(list)
    for m in metrics:
        if m.clicks:
            key = hashlib.sha256(f"metrics:{caller.user.id}:{m.ad_id}:{m.day.isoformat()}".encode()).hexdigest()
            rewards[ads[m.ad_id].campaign_id].append(Reward(ad_id=m.ad_id, failures=float(m.clicks), key=key))
    for campaign, batch in rewards.items():
        await send_rewards(caller.client, RewardBatch(owner=caller.user.id, campaign_id=campaign, rewards=batch))
    return len(metrics)


class TouchpointIn(BaseModel):
    """An ad interaction of a CRM contact."""

    contact_id: str = Field(min_length=1, max_length=64, description="The HubSpot contact id.")
    ad_id: str = Field(max_length=100)
    at: datetime = Field(description="When the contact interacted with the ad (timezone-aware).")


async def record_touchpoint(caller: Caller, touch: TouchpointIn) -> Touchpoint:
    """Store a touchpoint of one of the caller's ads (a repeat of the same one is stored once)."""
    if touch.at.tzinfo is None:
        raise BadInput("at must carry a timezone (e.g. 2026-12-01T10:00:00Z)", code="BAD_TIMESTAMP")
    ad = await _ad(caller, touch.ad_id)
    session = caller.session
    values = {
        "user_id": caller.user.id,
        "contact_id": touch.contact_id,
        "ad_id": ad.ad_id,
        "campaign_id": ad.campaign_id,
        "at": touch.at.astimezone(UTC),
        "created_at": datetime.now(UTC),
    }
    insert = dialect_insert(session, Touchpoint).values(**values)
    await session.execute(insert.on_conflict_do_nothing())
    await session.commit()
    found = await session.scalar(
        select(Touchpoint).where(
            Touchpoint.user_id == caller.user.id,
            Touchpoint.contact_id == touch.contact_id,
            Touchpoint.ad_id == ad.ad_id,
            Touchpoint.at == values["at"],
        )
    )
    assert found is not None
    return found


# --- conversions and the report -----------------------------------------------------------------------------------


def conversions_query(caller: Caller, ad_id: str | None) -> Select[Any]:
    """The caller's conversions (of one ad if given), newest first."""
    query = select(Conversion).where(Conversion.user_id == caller.user.id)
    if ad_id:
        query = query.where(Conversion.ad_id == ad_id)
    return query.order_by(Conversion.id.desc())


def money(cents: int) -> float:
    """Cents as currency units (2 decimals)."""
    return round(cents / 100, 2)


async def report(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """Conversions and revenue, attributed and not, and per ad: what ``attribution report`` prints."""
    conversions = int(
        await session.scalar(select(func.count()).select_from(Conversion).where(Conversion.user_id == user_id)) or 0
    )
    unattributed_conversions = int(
        await session.scalar(
            select(func.count())
            .select_from(Conversion)
            .where(Conversion.user_id == user_id, Conversion.ad_id.is_(None))
        )
        or 0
    )
    credit_rows = await session.execute(
        select(DealCredit.ad_id, DealCredit.campaign_id, func.sum(DealCredit.revenue_cents))
        .where(DealCredit.user_id == user_id, DealCredit.model.in_(PRIMARY_MODELS))
        .group_by(DealCredit.ad_id, DealCredit.campaign_id)
    )
    revenue: dict[str, tuple[str | None, int]] = {}
    unattributed = 0
    for ad_id, campaign_id, cents in credit_rows.all():
        if ad_id is None:
            unattributed += int(cents or 0)
        else:
            _, before = revenue.get(ad_id, (campaign_id, 0))
            revenue[ad_id] = (campaign_id, before + int(cents or 0))
    counted = await session.execute(
        select(Conversion.ad_id, Conversion.campaign_id, func.count())
        .where(Conversion.user_id == user_id, Conversion.ad_id.is_not(None))
        .group_by(Conversion.ad_id, Conversion.campaign_id)
    )
    per_ad: dict[str, dict[str, Any]] = {}
    for ad_id, campaign_id, count in counted.all():
        if ad_id is None:
            continue
        entry = per_ad.setdefault(ad_id, {"ad_id": ad_id, "campaign_id": campaign_id, "conversions": 0})
        entry["conversions"] += int(count)
    for ad_id, (campaign_id, cents) in revenue.items():
        per_ad.setdefault(ad_id, {"ad_id": ad_id, "campaign_id": campaign_id, "conversions": 0})
        per_ad[ad_id]["revenue_cents"] = cents
    by_ad = []
    for ad_id in sorted(per_ad):
        entry = per_ad[ad_id]
        cents = int(entry.get("revenue_cents", 0))
        by_ad.append({**entry, "revenue": money(cents), "revenue_cents": cents})
    by_ad.sort(key=lambda e: (-e["revenue_cents"], e["ad_id"]))
    attributed = sum(e["revenue_cents"] for e in by_ad)
    return {
        "conversions": conversions,
        "attributed_revenue": money(attributed),
        "unattributed_revenue": money(unattributed),
        "unattributed_conversions": unattributed_conversions,
        "attributed_revenue_cents": attributed,
        "unattributed_revenue_cents": unattributed,
        "by_ad": by_ad,
    }


async def ad_attribution(caller: Caller, ad_id: str) -> dict[str, Any]:
    """One ad's conversions, revenue under each model, latest metrics and fatigue verdict."""
    ad = await _ad(caller, ad_id)
    session = caller.session
    by_model = await session.execute(
        select(DealCredit.model, func.sum(DealCredit.revenue_cents), func.count())
        .where(DealCredit.user_id == caller.user.id, DealCredit.ad_id == ad.ad_id)
        .group_by(DealCredit.model)
    )
    models = {m: {"revenue_cents": int(c or 0), "revenue": money(int(c or 0)), "deals": int(n)} for m, c, n in by_model}
    conversions = int(
        await session.scalar(
            select(func.count())
            .select_from(Conversion)
            .where(Conversion.user_id == caller.user.id, Conversion.ad_id == ad.ad_id)
        )
        or 0
    )
    primary = sum(int(v["revenue_cents"]) for m, v in models.items() if m in PRIMARY_MODELS)
    return {
        "ad_id": ad.ad_id,
        "campaign_id": ad.campaign_id,
        "status": ad.status,
        "conversions": conversions,
        "revenue_cents": primary,
        "revenue": money(primary),
        "models": models,
        "fatigue": {"level": ad.fatigue_level, "reasons": ad.fatigue_reasons, "checked_at": ad.fatigue_checked_at},
    }


# --- samplers -----------------------------------------------------------------------------------------------------


async def sampler_of(caller: Caller, campaign_id: str) -> SamplerView:
    """The caller's campaign's sampler: posteriors, lower bounds, allocation (404 if it has none yet)."""
    contract.check_ad_id(campaign_id, "campaign_id")
    handle = caller.client.get_workflow_handle(contract.sampler_workflow_id(caller.user.id, campaign_id))
    try:
        with temporal_errors(f"sampler of campaign {campaign_id}"):
            view: SamplerView = await handle.query(contract.SAMPLER_QUERY, result_type=SamplerView)
    except NotFound:
        raise NotFound(f"campaign {campaign_id} has no sampler yet", code="SAMPLER_NOT_FOUND") from None
    return view


async def allocations_of(caller: Caller, campaign_id: str) -> Allocation | None:
    """The allocation the campaign's sampler last drew."""
    return (await sampler_of(caller, campaign_id)).allocation


# --- approvals ----------------------------------------------------------------------------------------------------


def approvals_query(caller: Caller, status: str | None) -> Select[Any]:
    """The caller's approvals (of one status if given), newest first."""
    query = select(Approval).where(Approval.user_id == caller.user.id)
    if status:
        query = query.where(Approval.status == status)
    return query.order_by(Approval.id.desc())


async def get_approval(caller: Caller, approval_id: int) -> Approval:
    """One of the caller's approvals (404 otherwise)."""
    found = await caller.session.get(Approval, approval_id, populate_existing=True)
    if found is None or found.user_id != caller.user.id:
        raise NotFound(f"approval {approval_id} not found", code="APPROVAL_NOT_FOUND")
    return found


#: How long a decision waits for its approval workflow to carry it out (the action is one short transaction).
DECIDE_TIMEOUT = timedelta(seconds=30)


async def decide(caller: Caller, approval_id: int, approve: bool, note: str = "") -> ApprovalOutcome:
    """Approve (the action runs once, audited) or reject a pending approval of the caller's; 409 once decided."""
    approval = await get_approval(caller, approval_id)
    if approval.status != "pending":
        raise Conflict(f"approval {approval_id} is already {approval.status}", code="APPROVAL_CLOSED")
    handle = caller.client.get_workflow_handle(contract.approval_workflow_id(approval_id))
    decision = Decision(approve=approve, by=caller.user.name[:100], note=note)
    try:
        with temporal_errors(f"approval {approval_id}"):
            outcome: ApprovalOutcome = await handle.execute_update(
                contract.DECIDE_UPDATE, decision, result_type=ApprovalOutcome, rpc_timeout=DECIDE_TIMEOUT
            )
    except WorkflowUpdateFailedError as err:
        raise Conflict(f"approval {approval_id}: {err.cause}", code="APPROVAL_CLOSED") from None
    return outcome


# --- similar creatives --------------------------------------------------------------------------------------------


async def similar(caller: Caller, text: str, k: int) -> SimilarResult:
    """The caller's winners whose creatives are nearest ``text`` (one search credit)."""
    price = contract.SEARCH_PRICE.cost(1)
    if await available_credits(caller.session, caller.user.id) < price:
        raise InsufficientCredits(f"a similar-creative search costs {price} credit(s)", code="INSUFFICIENT_CREDITS")
    search_id = f"attribution-similar-{caller.user.id}-{uuid.uuid4().hex[:12]}"
    result: SimilarResult = await execute_workflow(
        caller.client,
        contract.SIMILAR_START,
        SimilarRequest(user_id=caller.user.id, text=text, k=k),
        SimilarResult,
        id=search_id,
        owner=caller.user.id,
    )
    await charge_usage(caller.session, caller.user.id, price, reason="similar-creative search", key=search_id)
    await caller.session.commit()
    return result


def error_status(err: ConveyorError) -> int:
    """The HTTP status of a webhook failure (the taxonomy's, 503 for anything that is worth HubSpot's retry)."""
    return 503 if err.retryable else err.http_status
