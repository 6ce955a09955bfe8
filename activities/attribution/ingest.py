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
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
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
#: Attribution models: the primary one pays an ad (``utm`` or ``last_touch``; ``none`` is unattributed).
PRIMARY_MODELS = ("utm", "last_touch", "none")


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
    return str(Decimal(cents) / 100)


@dataclass
class _Applied:
    """What one event did: its conversion row and the reward it earned (if any)."""

    conversion: Conversion
    reward: tuple[int, str, Reward] | None


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
        """Apply up to ``request.limit`` of the portal's pending events, oldest first, in one transaction."""
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(WebhookEvent)
                    .where(WebhookEvent.portal_id == request.portal_id, WebhookEvent.status == "pending")
                    .order_by(WebhookEvent.id)
                    .limit(request.limit)
                )
            )
            stored = await self._deals(session, request.portal_id, rows)
        if not rows:
            return BatchResult()
        events = [HubSpotEvent.model_validate(row.event) for row in rows]
        fetched = await self._fetch_deals(events, stored)
        async with self._sessions.begin() as session:
            result = await self._apply(session, request.portal_id, rows, events, fetched)
        async with self._sessions() as session:
            result.remaining = int(
                await session.scalar(
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.portal_id == request.portal_id, WebhookEvent.status == "pending")
                )
                or 0
            )
        return result

    async def _deals(self, session: AsyncSession, portal_id: int, rows: Sequence[WebhookEvent]) -> dict[str, Deal]:
        ids = {str(row.object_id) for row in rows}
        if not ids:
            return {}
        found = await session.scalars(select(Deal).where(Deal.portal_id == portal_id, Deal.deal_id.in_(ids)))
        return {deal.deal_id: deal for deal in found}

    async def _fetch_deals(
        self, events: Sequence[HubSpotEvent], stored: Mapping[str, Deal]
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

        done = await asyncio.gather(*(one(deal_id) for deal_id in wanted))
        activity.heartbeat(len(done))
        return dict(done)

    async def _apply(
        self,
        session: AsyncSession,
        portal_id: int,
        rows: Sequence[WebhookEvent],
        events: Sequence[HubSpotEvent],
        fetched: Mapping[str, DealProperties | ConveyorError],
    ) -> BatchResult:
        now = self._clock()
        ids = [row.id for row in rows]
        claimed = await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(ids), WebhookEvent.status == "pending")
            .values(status="processed", processed_at=now)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(claimed, CursorResult)
        if claimed.rowcount != len(ids):  # another attempt applied some of them first: apply nothing, look again
            raise Retryable(
                f"{len(ids) - claimed.rowcount} of the batch's events were applied by another attempt",
                code="BATCH_RACED",
            )
        deals = await self._deals(session, portal_id, rows)
        rewards: dict[tuple[int, str], list[Reward]] = defaultdict(list)
        processed: dict[int, int] = defaultdict(int)
        failed = 0
        for row, event in zip(rows, events, strict=True):
            try:
                async with session.begin_nested():
                    applied = await self._apply_event(session, row, event, deals, fetched.get(str(event.object_id)))
            except ConveyorError as err:
                if err.retryable:
                    raise
                failed += 1
                await session.execute(
                    update(WebhookEvent)
                    .where(WebhookEvent.id == row.id)
                    .values(status="failed", error_code=err.code[:64], error_message=err.message[:2000])
                    .execution_options(synchronize_session=False)
                )
                continue
            processed[row.user_id] += 1
            if applied.reward is not None:
                owner, campaign, reward = applied.reward
                rewards[(owner, campaign)].append(reward)
        for user_id, count in processed.items():
            await charge_usage(
                session,
                user_id,
                contract.EVENT_PRICE.cost(count),
                reason=f"{count} HubSpot events of portal {portal_id}",
                key=f"attribution:{portal_id}:{ids[0]}-{ids[-1]}:{user_id}",
            )
        batches = [
            RewardBatch(
                owner=owner, campaign_id=campaign, ads=await self._campaign_ads(session, owner, campaign), rewards=r
            )
            for (owner, campaign), r in sorted(rewards.items())
        ]
        return BatchResult(processed=sum(processed.values()), failed=failed, rewards=batches)

    async def _campaign_ads(self, session: AsyncSession, owner: int, campaign: str) -> list[str]:
        found = await session.scalars(
            select(Ad.ad_id).where(Ad.user_id == owner, Ad.campaign_id == campaign, Ad.status == "active")
        )
        return sorted(found)

    async def _apply_event(
        self,
        session: AsyncSession,
        row: WebhookEvent,
        event: HubSpotEvent,
        deals: dict[str, Deal],
        fetched: DealProperties | ConveyorError | None,
    ) -> _Applied:
        deal_id = str(event.object_id)
        stored = deals.get(deal_id)
        if isinstance(fetched, ConveyorError):
            raise fetched
        properties = fetched if fetched is not None and event.properties is None else event_deal(event, stored)
        if properties is None or not properties.stage:
            raise BadInput(
                f"deal {deal_id}: the event carries no deal stage and the CRM API is not configured "
                "(set CONVEYOR_HUBSPOT_ACCESS_TOKEN)",
                code="MISSING_DEAL_STAGE",
            )
        if stored is None:
            stored = Deal(user_id=row.user_id, portal_id=row.portal_id, deal_id=deal_id, contact_ids=[])
            session.add(stored)
            deals[deal_id] = stored
        previous = DealRevenue(stored.revenue_cents, stored.stage, stored.as_of_ms) if stored.as_of_ms else None
        change = revalue(
            previous,
            Decimal(properties.amount_cents) / 100,
            properties.stage,
            event.occurred_at,
            self._probabilities,
            DEFAULT_WON_STAGES,
        )
        occurred = datetime.fromtimestamp(event.occurred_at / 1000, UTC)
        newly_won = False
        if change.current is not previous:  # not an out-of-order event older than what the deal reflects
            stored.user_id = row.user_id
            stored.stage = properties.stage
            stored.amount = _cents_text(properties.amount_cents)
            stored.currency = properties.currency
            stored.revenue_cents = change.current.revenue_cents
            stored.as_of_ms = event.occurred_at
            stored.utm_content = properties.utm_content
            stored.utm_campaign = properties.utm_campaign
            if properties.contact_ids:
                stored.contact_ids = list(properties.contact_ids)
            if properties.stage in DEFAULT_WON_STAGES and stored.won_at is None:
                stored.won_at = occurred
                newly_won = True
            await session.flush()
            await self._credit(session, stored, occurred)
        await session.flush()
        primary = await session.scalar(
            select(DealCredit)
            .where(DealCredit.deal_pk == stored.id, DealCredit.model.in_(PRIMARY_MODELS))
            .order_by(DealCredit.revenue_cents.desc(), DealCredit.id)
            .limit(1)
        )
        conversion = Conversion(
            event_key=row.dedupe_key,
            user_id=row.user_id,
            portal_id=row.portal_id,
            deal_id=deal_id,
            ad_id=primary.ad_id if primary else None,
            campaign_id=primary.campaign_id if primary else None,
            utm_content=stored.utm_content,
            model=stored.model,
            stage=stored.stage,
            revenue_cents=stored.revenue_cents,
            delta_cents=change.delta_cents,
            occurred_at=occurred,
        )
        session.add(conversion)
        reward = None
        if newly_won and primary is not None and primary.ad_id is not None and primary.campaign_id:
            reward = (row.user_id, primary.campaign_id, Reward(ad_id=primary.ad_id, successes=1.0, key=row.dedupe_key))
        return _Applied(conversion, reward)

    async def _credit(self, session: AsyncSession, deal: Deal, converted_at: datetime) -> None:
        """Replace the deal's credits: by its ``utm_content`` when it names one, else by its contacts' touchpoints
        (last touch pays, linear is recorded beside it), else unattributed."""
        await session.execute(delete(DealCredit).where(DealCredit.deal_pk == deal.id))
        credits: dict[str, list[Credit]] = {}
        if deal.utm_content:
            ad = await session.scalar(select(Ad).where(Ad.user_id == deal.user_id, Ad.ad_id == deal.utm_content))
            campaign = ad.campaign_id if ad is not None else None
            credits["utm"] = [Credit(ad.ad_id if ad else None, campaign, deal.revenue_cents)]
        else:
            touches = await self._touchpoints(session, deal.user_id, deal.contact_ids)
            if touches:
                credits["last_touch"] = last_touch(deal.revenue_cents, touches, converted_at)
                credits["linear"] = linear(deal.revenue_cents, touches, converted_at)
            if not touches or all(c.ad_id is None for c in credits["last_touch"]):
                credits.pop("last_touch", None)
                credits.pop("linear", None)
        if not credits:
            credits["none"] = [Credit(None, None, deal.revenue_cents)]
        deal.model = next(iter(credits))
        for model, parts in credits.items():
            for credit in parts:
                session.add(
                    DealCredit(
                        deal_pk=deal.id,
                        user_id=deal.user_id,
                        model=model,
                        ad_id=credit.ad_id,
                        campaign_id=credit.campaign_id,
                        revenue_cents=credit.revenue_cents,
                    )
                )

    async def _touchpoints(self, session: AsyncSession, owner: int, contacts: Sequence[str]) -> list[TouchpointValue]:
        if not contacts:
            return []
        found = await session.scalars(
            select(Touchpoint).where(Touchpoint.user_id == owner, Touchpoint.contact_id.in_(list(contacts)))
        )
        return [TouchpointValue(t.ad_id, t.campaign_id, _aware(t.at)) for t in found]

    @activity.defn(name=contract.REWARD_SAMPLERS)
    async def reward_samplers(self, delivery: RewardDelivery) -> RewardsSent:
        """Signal each campaign's sampler workflow with its rewards, starting it if needed (signal-with-start).

        A retry delivers the same rewards again: the sampler applies each key once.
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
