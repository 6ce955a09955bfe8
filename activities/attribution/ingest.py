"""Applying accepted HubSpot events: one batch of a portal's inbox in one transaction (worker side).

A batch claims its inbox rows with a conditional ``UPDATE … WHERE status = 'pending'`` inside the transaction that
applies them, so a retried attempt after a commit finds nothing to claim and a zombie attempt racing a retry rolls
back: each event changes revenue, attribution, conversions and credits exactly once. For each event the deal's
properties come from the event (``properties``, overlaid with the changed property), else from the CRM API when a
token is configured, else from the stored deal with the change applied. The deal is revalued (never added to), its
credits under each attribution model are replaced, one conversion row records the event, and a deal that reaches a
won stage for the first time earns its ad's campaign sampler a success keyed by the event. An event that can never
apply (a stage without a probability, a deal the CRM does not know) is marked ``failed`` with its code; the batch
goes on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.attribution import contract
from activities.attribution.crm import DealProperties, HubSpotCrmClient, deal_from_event_properties
from activities.attribution.deliveries import HubSpotEvent
from activities.attribution.models import Ad, Conversion, Deal, DealCredit, Touchpoint, WebhookEvent
from activities.attribution.revenue import (
    DEFAULT_STAGE_PROBABILITIES,
    DEFAULT_WON_STAGES,
    Credit,
    DealRevenue,
    last_touch,
    linear,
    revalue,
)
from activities.attribution.revenue import Touchpoint as TouchpointValue
from activities.attribution.schemas import (
    BatchRequest,
    BatchResult,
    Reward,
    RewardBatch,
    RewardDelivery,
    RewardsSent,
    SamplerInput,
)
from conveyor.client import search_attributes
from conveyor.credits import charge_usage
from conveyor.errors import BadInput, ConveyorError, NotFound, Retryable
from conveyor.settings import Settings

#: Deal fetches from the CRM API at once (HubSpot allows 100 requests per 10 s per private app).
CRM_CONCURRENCY = 8
#: Most undelivered rewards one batch hands to the samplers (the rest go with the next batch).
REWARDS_PER_BATCH = 2000
#: Attribution models: the primary one pays an ad (``utm`` or ``last_touch``; ``none`` is unattributed).
PRIMARY_MODELS = ("utm", "last_touch", "none")


#: The columns a batch writes back to a deal it changed.
DEAL_COLUMNS = (
    "user_id",
    "stage",
    "amount",
    "currency",
    "revenue_cents",
    "as_of_ms",
    "utm_content",
    "utm_campaign",
    "contact_ids",
    "won_at",
    "model",
    "updated_at",
)


def _table(model: Any) -> Table:
    """A model's table (its SQL expressions skip the ORM's per-row work)."""
    table: Table = model.__table__
    return table


def _by_id(model: Any, columns: Sequence[str]) -> Any:
    """``UPDATE <table> SET <columns> WHERE id = …`` for many rows at once (parameters from :func:`_keyed`)."""
    table = _table(model)
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


def _keyed(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as :func:`_by_id` parameters (a column's own name may not be a parameter's in an UPDATE)."""
    return [{("row_id" if k == "id" else f"new_{k}"): v for k, v in row.items()} for row in rows]


def stage_probabilities(settings: Settings) -> dict[str, Decimal]:
    """HubSpot's default pipeline's stage probabilities with the operator's table merged over them."""
    table = dict(DEFAULT_STAGE_PROBABILITIES)
    for stage, probability in settings.hubspot_stage_probabilities.items():
        table[stage] = Decimal(str(probability))
    return table


def event_deal(event: HubSpotEvent, stored: Deal | None) -> DealProperties | None:
    """The deal an event describes without a CRM call: its ``properties`` (the change overlaid), else the stored
    deal with the change applied; ``None`` when neither says anything."""
    change: dict[str, Any] = {}
    if event.property_name:
        change[event.property_name] = event.property_value
    if event.properties is not None:
        return deal_from_event_properties({**event.properties, **change}, deal_id=event.object_id)
    if stored is None:
        return None
    known = {
        "amount": stored.amount or None,
        "dealstage": stored.stage or None,
        "deal_currency_code": stored.currency,
        "utm_content": stored.utm_content,
        "utm_campaign": stored.utm_campaign,
    }
    deal = deal_from_event_properties({**known, **change}, deal_id=event.object_id)
    return deal.model_copy(update={"contact_ids": tuple(stored.contact_ids)})


def _cents_text(cents: int) -> str:
    """Cents as the amount text a deal stores (``1234.56``)."""
    return str(Decimal(cents) / 100)


@dataclass
class DealState:
    """A deal as a batch sees it while applying its events in order (written back once, at the end)."""

    pk: int | None
    user_id: int
    deal_id: str
    stage: str = ""
    amount: str = ""
    currency: str | None = None
    revenue_cents: int = 0
    as_of_ms: int = 0
    utm_content: str | None = None
    utm_campaign: str | None = None
    contact_ids: list[str] = field(default_factory=list)
    won_at: datetime | None = None
    model: str = "none"
    credits: dict[str, list[Credit]] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def of(cls, deal: Deal) -> DealState:
        """The state of a stored deal."""
        return cls(
            pk=deal.id,
            user_id=deal.user_id,
            deal_id=deal.deal_id,
            stage=deal.stage,
            amount=deal.amount,
            currency=deal.currency,
            revenue_cents=deal.revenue_cents,
            as_of_ms=deal.as_of_ms,
            utm_content=deal.utm_content,
            utm_campaign=deal.utm_campaign,
            contact_ids=list(deal.contact_ids or []),
            won_at=deal.won_at,
            model=deal.model,
        )

    def stored(self) -> Deal:
        """What :func:`event_deal` reads of a deal (its last known properties)."""
        return Deal(
            amount=self.amount,
            stage=self.stage,
            currency=self.currency,
            utm_content=self.utm_content,
            utm_campaign=self.utm_campaign,
            contact_ids=self.contact_ids,
        )

    def row(self) -> dict[str, Any]:
        """The deal's columns as written back."""
        return {
            "user_id": self.user_id,
            "stage": self.stage,
            "amount": self.amount,
            "currency": self.currency,
            "revenue_cents": self.revenue_cents,
            "as_of_ms": self.as_of_ms,
            "utm_content": self.utm_content,
            "utm_campaign": self.utm_campaign,
            "contact_ids": self.contact_ids,
            "won_at": self.won_at,
            "model": self.model,
            "updated_at": datetime.now(UTC),
        }


@dataclass
class BatchContext:
    """What a batch reads before its transaction: the portal's deals, the owners' ads and touchpoints it needs."""

    deals: dict[str, DealState]
    ads: dict[tuple[int, str], str]
    """(owner, ad id) → campaign id of every ad the batch's deals may name."""
    touchpoints: dict[tuple[int, str], list[TouchpointValue]]
    """(owner, contact id) → the contact's touchpoints."""


@dataclass
class BatchPlan:
    """What a batch will write: conversions, failures, deals and credits, charges and rewards."""

    conversions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    processed: dict[int, int] = field(default_factory=lambda: defaultdict(int))


def credit(deal: DealState, context: BatchContext, converted_at: datetime) -> None:
    """Set the deal's credits: by its ``utm_content`` when it names one, else by its contacts' touchpoints (last
    touch pays, linear is recorded beside it), else unattributed."""
    credits: dict[str, list[Credit]] = {}
    if deal.utm_content:
        campaign = context.ads.get((deal.user_id, deal.utm_content))
        ad_id = deal.utm_content if campaign is not None else None
        credits["utm"] = [Credit(ad_id, campaign, deal.revenue_cents)]
    else:
        touches = [t for c in deal.contact_ids for t in context.touchpoints.get((deal.user_id, c), [])]
        last = last_touch(deal.revenue_cents, touches, converted_at) if touches else []
        if any(c.ad_id is not None for c in last):
            credits["last_touch"] = last
            credits["linear"] = linear(deal.revenue_cents, touches, converted_at)
    if not credits:
        credits["none"] = [Credit(None, None, deal.revenue_cents)]
    deal.model = next(iter(credits))
    deal.credits = credits


def primary_credit(deal: DealState) -> Credit | None:
    """The credit that pays an ad for the deal (its primary model's largest), if any."""
    parts = deal.credits.get(deal.model, [])
    return max(parts, key=lambda c: c.revenue_cents) if parts else None


class IngestActivities:
    """The ingest workflow's activities; the worker gives them the DB, the settings and a CRM client factory."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        crm: Callable[[], HubSpotCrmClient | None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._crm = crm
        self._clock = clock
        self._probabilities = stage_probabilities(settings)

    @activity.defn(name=contract.APPLY_BATCH)
    async def apply_batch(self, request: BatchRequest) -> BatchResult:
        """Apply up to ``request.limit`` of the portal's pending events, oldest first, in one transaction; answer
        with the sampler rewards not yet delivered (this batch's, and any a lost attempt left behind).

        Everything is read and computed first; the transaction then claims the rows and writes the batch's deals,
        credits, conversions, failures and charges in a handful of bulk statements, so it holds SQLite's one write
        lock for milliseconds and webhook acceptance never waits long behind it.
        """
        activity.heartbeat("reading")
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(WebhookEvent)
                    .where(WebhookEvent.portal_id == request.portal_id, WebhookEvent.status == "pending")
                    .order_by(WebhookEvent.id)
                    .limit(request.limit)
                )
            )
            events = [HubSpotEvent.model_validate(row.event) for row in rows]
            deals = await self._deals(session, request.portal_id, rows) if rows else {}
        plan = BatchPlan()
        if rows:
            fetched = await self._fetch_deals(events, deals)
            async with self._sessions() as session:
                context = await self._context(session, rows, events, deals, fetched)
            plan = self._plan(rows, events, context, fetched)
            activity.heartbeat("writing")
            async with self._sessions.begin() as session:
                await self._write(session, request.portal_id, rows, context, plan)
        async with self._sessions() as session:
            rewards = await self._pending_rewards(session, request.portal_id)
            remaining = await session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.portal_id == request.portal_id, WebhookEvent.status == "pending")
            )
        return BatchResult(
            processed=sum(plan.processed.values()),
            failed=len(plan.failures),
            remaining=int(remaining or 0),
            rewards=rewards,
        )

    async def _pending_rewards(self, session: AsyncSession, portal_id: int) -> list[RewardBatch]:
        """The portal's won deals whose samplers have not been told, as one reward batch per campaign."""
        found = await session.execute(
            select(Conversion.user_id, Conversion.campaign_id, Conversion.ad_id, Conversion.event_key)
            .where(Conversion.portal_id == portal_id, Conversion.reward_pending.is_(True))
            .order_by(Conversion.id)
            .limit(REWARDS_PER_BATCH)
        )
        grouped: dict[tuple[int, str], list[Reward]] = defaultdict(list)
        for owner, campaign, ad_id, key in found.all():
            if campaign and ad_id:
                grouped[(int(owner), str(campaign))].append(Reward(ad_id=ad_id, successes=1.0, key=key))
        return [
            RewardBatch(
                owner=owner, campaign_id=campaign, ads=await self._campaign_ads(session, owner, campaign), rewards=r
            )
            for (owner, campaign), r in sorted(grouped.items())
        ]

    async def _deals(self, session: AsyncSession, portal_id: int, rows: Sequence[WebhookEvent]) -> dict[str, DealState]:
        ids = {str(row.object_id) for row in rows}
        found = await session.scalars(select(Deal).where(Deal.portal_id == portal_id, Deal.deal_id.in_(ids)))
        return {deal.deal_id: DealState.of(deal) for deal in found}

    async def _fetch_deals(
        self, events: Sequence[HubSpotEvent], stored: Mapping[str, DealState]
    ) -> dict[str, DealProperties | ConveyorError]:
        """Deals from the CRM API for the events that carry no properties (one call per deal, a few at once).

        A permanent answer (deal not found, the token refused) is kept per deal and fails only its events; a
        transient one (HubSpot down, rate-limited) fails the activity, which Temporal retries with nothing applied.
        """
        wanted = sorted({str(e.object_id) for e in events if e.properties is None})
        client = self._crm() if wanted else None
        if client is None:
            return {}
        gate = asyncio.Semaphore(CRM_CONCURRENCY)

        async def one(deal_id: str) -> tuple[str, DealProperties | ConveyorError]:
            async with gate:
                try:
                    return deal_id, await client.get_deal(deal_id)
                except (BadInput, NotFound) as err:
                    return deal_id, err
                finally:
                    activity.heartbeat(f"deal {deal_id}")

        return dict(await asyncio.gather(*(one(deal_id) for deal_id in wanted)))

    async def _context(
        self,
        session: AsyncSession,
        rows: Sequence[WebhookEvent],
        events: Sequence[HubSpotEvent],
        deals: dict[str, DealState],
        fetched: Mapping[str, DealProperties | ConveyorError],
    ) -> BatchContext:
        """The ads and touchpoints the batch's deals may name, read once."""
        owners = {row.user_id for row in rows}
        ad_ids: set[str] = set()
        contacts: set[str] = set()
        for event in events:
            props = event.properties or {}
            if props.get("utm_content"):
                ad_ids.add(str(props["utm_content"]).strip())
            if event.property_name == "utm_content" and event.property_value:  # the change itself names the ad
                ad_ids.add(event.property_value.strip())
            found = fetched.get(str(event.object_id))
            if isinstance(found, DealProperties):
                if found.utm_content:
                    ad_ids.add(found.utm_content)
                contacts.update(found.contact_ids)
        for deal in deals.values():
            if deal.utm_content:
                ad_ids.add(deal.utm_content)
            contacts.update(deal.contact_ids)
        ads: dict[tuple[int, str], str] = {}
        if ad_ids:
            found_ads = await session.execute(
                select(Ad.user_id, Ad.ad_id, Ad.campaign_id).where(Ad.user_id.in_(owners), Ad.ad_id.in_(ad_ids))
            )
            ads = {(int(u), str(a)): str(c) for u, a, c in found_ads.all()}
        touchpoints: dict[tuple[int, str], list[TouchpointValue]] = defaultdict(list)
        if contacts:
            found_touches = await session.scalars(
                select(Touchpoint).where(Touchpoint.user_id.in_(owners), Touchpoint.contact_id.in_(contacts))
            )
            for t in found_touches:
                touchpoints[(t.user_id, t.contact_id)].append(TouchpointValue(t.ad_id, t.campaign_id, _aware(t.at)))
        stored = [d.pk for d in deals.values() if d.pk is not None]
        if stored:  # what each stored deal pays now: an out-of-order event is credited like the deal it leaves be
            by_pk = {d.pk: d for d in deals.values()}
            found_credits = await session.scalars(
                select(DealCredit).where(DealCredit.deal_pk.in_(stored)).order_by(DealCredit.id)
            )
            for c in found_credits:
                by_pk[c.deal_pk].credits.setdefault(c.model, []).append(Credit(c.ad_id, c.campaign_id, c.revenue_cents))
        return BatchContext(deals=deals, ads=ads, touchpoints=dict(touchpoints))

    def _plan(
        self,
        rows: Sequence[WebhookEvent],
        events: Sequence[HubSpotEvent],
        context: BatchContext,
        fetched: Mapping[str, DealProperties | ConveyorError],
    ) -> BatchPlan:
        """Apply the events to the deals in memory, in order: conversions, failures, charges and rewards."""
        plan = BatchPlan()
        for row, event in zip(rows, events, strict=True):
            try:
                self._apply_event(plan, row, event, context, fetched.get(str(event.object_id)))
            except ConveyorError as err:
                if err.retryable:
                    raise
                plan.failures.append(
                    {"id": row.id, "status": "failed", "error_code": err.code[:64], "error_message": err.message[:2000]}
                )
        return plan

    def _apply_event(
        self,
        plan: BatchPlan,
        row: WebhookEvent,
        event: HubSpotEvent,
        context: BatchContext,
        fetched: DealProperties | ConveyorError | None,
    ) -> None:
        deal_id = str(event.object_id)
        current = context.deals.get(deal_id)
        if isinstance(fetched, ConveyorError):
            raise fetched
        stored = current.stored() if current is not None else None
        properties = fetched if fetched is not None and event.properties is None else event_deal(event, stored)
        if properties is None or not properties.stage:
            raise BadInput(
                f"deal {deal_id}: the event carries no deal stage and the CRM API is not configured "
                "(set CONVEYOR_HUBSPOT_ACCESS_TOKEN)",
                code="MISSING_DEAL_STAGE",
            )
        previous = (
            DealRevenue(current.revenue_cents, current.stage, current.as_of_ms)
            if current is not None and current.as_of_ms
            else None
        )
        change = revalue(
            previous,
            Decimal(properties.amount_cents) / 100,
            properties.stage,
            event.occurred_at,
            self._probabilities,
            DEFAULT_WON_STAGES,
        )
        deal = current or DealState(pk=None, user_id=row.user_id, deal_id=deal_id)
        context.deals[deal_id] = deal
        occurred = datetime.fromtimestamp(event.occurred_at / 1000, UTC)
        newly_won = False
        if change.current is not previous:  # not an out-of-order event older than what the deal reflects
            deal.user_id = row.user_id
            deal.stage = properties.stage
            deal.amount = _cents_text(properties.amount_cents)
            deal.currency = properties.currency
            deal.revenue_cents = change.current.revenue_cents
            deal.as_of_ms = event.occurred_at
            deal.utm_content = properties.utm_content
            deal.utm_campaign = properties.utm_campaign
            if properties.contact_ids:
                deal.contact_ids = list(properties.contact_ids)
            if properties.stage in DEFAULT_WON_STAGES and deal.won_at is None:
                deal.won_at = occurred
                newly_won = True
            credit(deal, context, occurred)
            deal.changed = True
        elif not deal.credits:  # an old event for a deal this batch has not touched: its credits as stored
            credit(deal, context, occurred)
        primary = primary_credit(deal)
        rewarded = bool(newly_won and primary is not None and primary.ad_id is not None and primary.campaign_id)
        plan.conversions.append(
            {
                "event_key": row.dedupe_key,
                "user_id": row.user_id,
                "portal_id": row.portal_id,
                "deal_id": deal_id,
                "ad_id": primary.ad_id if primary else None,
                "campaign_id": primary.campaign_id if primary else None,
                "utm_content": deal.utm_content,
                "model": deal.model,
                "stage": deal.stage,
                "revenue_cents": deal.revenue_cents,
                "delta_cents": change.delta_cents,
                "occurred_at": occurred,
                "processed_at": self._clock(),
                "reward_pending": rewarded,
            }
        )
        plan.processed[row.user_id] += 1

    async def _write(
        self,
        session: AsyncSession,
        portal_id: int,
        rows: Sequence[WebhookEvent],
        context: BatchContext,
        plan: BatchPlan,
    ) -> None:
        """Claim the rows and write the plan: a few bulk statements in the caller's transaction."""
        ids = [row.id for row in rows]
        claimed = await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(ids), WebhookEvent.status == "pending")
            .values(status="processed", processed_at=self._clock())
            .execution_options(synchronize_session=False)
        )
        assert isinstance(claimed, CursorResult)
        if claimed.rowcount != len(ids):  # another attempt applied some of them first: apply nothing, look again
            raise Retryable(
                f"{len(ids) - claimed.rowcount} of the batch's events were applied by another attempt",
                code="BATCH_RACED",
            )
        # SQL expressions on the tables, each run once over all its rows: no ORM per-row bookkeeping while the
        # transaction holds SQLite's write lock (webhook acceptance waits for it)
        if plan.failures:
            await session.execute(
                _by_id(WebhookEvent, ("status", "error_code", "error_message")), _keyed(plan.failures)
            )
        changed = [d for d in context.deals.values() if d.changed]
        old = [d for d in changed if d.pk is not None]
        deals = _table(Deal)
        if old:
            await session.execute(_by_id(Deal, DEAL_COLUMNS), _keyed([{"id": d.pk, **d.row()} for d in old]))
            await session.execute(delete(_table(DealCredit)).where(DealCredit.deal_pk.in_([d.pk for d in old])))
        new = [d for d in changed if d.pk is None]
        if new:
            inserted = await session.execute(
                insert(deals).returning(deals.c.id, deals.c.deal_id),
                [{"portal_id": portal_id, "deal_id": d.deal_id, **d.row()} for d in new],
            )
            pks = {str(deal_id): int(pk) for pk, deal_id in inserted.all()}
            for d in new:
                d.pk = pks[d.deal_id]
        credit_rows = [
            {
                "deal_pk": d.pk,
                "user_id": d.user_id,
                "model": model,
                "ad_id": c.ad_id,
                "campaign_id": c.campaign_id,
                "revenue_cents": c.revenue_cents,
            }
            for d in changed
            for model, parts in d.credits.items()
            for c in parts
        ]
        if credit_rows:
            await session.execute(insert(_table(DealCredit)), credit_rows)
        if plan.conversions:
            await session.execute(insert(_table(Conversion)), plan.conversions)
        for user_id, count in plan.processed.items():
            await charge_usage(
                session,
                user_id,
                contract.EVENT_PRICE.cost(count),
                reason=f"{count} HubSpot events of portal {portal_id}",
                key=f"attribution:{portal_id}:{ids[0]}-{ids[-1]}:{user_id}",
            )

    async def _campaign_ads(self, session: AsyncSession, owner: int, campaign: str) -> list[str]:
        found = await session.scalars(
            select(Ad.ad_id).where(Ad.user_id == owner, Ad.campaign_id == campaign, Ad.status == "active")
        )
        return sorted(found)

    @activity.defn(name=contract.REWARD_SAMPLERS)
    async def reward_samplers(self, delivery: RewardDelivery) -> RewardsSent:
        """Signal each campaign's sampler workflow with its rewards, starting it if needed (signal-with-start), then
        clear the rewards from the outbox. A retry delivers the same rewards again: the sampler applies each key once.
        """
        client = activity.client()
        sent = RewardsSent()
        for batch in delivery.batches:
            await client.start_workflow(
                contract.SAMPLER_WORKFLOW,
                start_sampler(batch.owner, batch.campaign_id),
                id=contract.sampler_workflow_id(batch.owner, batch.campaign_id),
                task_queue=contract.WEBHOOK_QUEUE,
                start_signal=contract.REWARD_SIGNAL,
                start_signal_args=[batch],
                search_attributes=search_attributes(contract.NAME, batch.owner),
            )
            sent.campaigns += 1
            sent.rewards += len(batch.rewards)
        keys = [r.key for batch in delivery.batches for r in batch.rewards]
        if keys:  # delivered: a later batch need not offer them again (a repeat would be ignored by key anyway)
            async with self._sessions.begin() as session:
                await session.execute(
                    update(Conversion)
                    .where(Conversion.event_key.in_(keys))
                    .values(reward_pending=False)
                    .execution_options(synchronize_session=False)
                )
        return sent


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def start_sampler(owner: int, campaign_id: str) -> SamplerInput:
    """The input that starts a campaign's sampler workflow."""
    return SamplerInput(owner=owner, campaign_id=campaign_id)


def ingest_activities(acts: IngestActivities) -> list[Callable[..., Awaitable[Any]]]:
    """The ingest workflow's activities, bound to ``acts``."""
    return [acts.apply_batch, acts.reward_samplers]
