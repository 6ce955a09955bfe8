"""The ingest activity on a real SQLite database (``ActivityEnvironment``): accepted HubSpot events revalue their
deals, replace the deals' credits per attribution model and record one conversion each, exactly once, in exact
cents; deals come from the event, the CRM API (a request-checking fake HubSpot on 127.0.0.1) or the stored deal;
events that can never apply fail alone, a HubSpot outage applies nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.attribution.crm import HubSpotCrmClient
from activities.attribution.deliveries import HubSpotEvent
from activities.attribution.ingest import IngestActivities
from activities.attribution.models import Ad, Conversion, Deal, DealCredit, Touchpoint, WebhookEvent
from activities.attribution.schemas import BatchRequest, BatchResult, Reward, RewardBatch, RewardDelivery
from api.services.attribution import _inbox_row
from conveyor.auth import create_user
from conveyor.errors import ExternalServiceError, Retryable
from conveyor.models import CreditLedgerEntry, User
from conveyor.settings import Settings
from tests.helpers.fakes import FakeHubSpot
from tests.helpers.hubspot import BASE_MS, deal_event

Sessions = async_sessionmaker[AsyncSession]

PORTAL = 880_001
#: What every test's owner starts with (one credit is charged per processed event).
START_CREDITS = 100


@dataclass(frozen=True)
class Owner:
    """The test's user and the activities applying its portal's inbox."""

    user_id: int
    acts: IngestActivities


#: Builds the test's owner: ``await make_owner(ads={ad: campaign}, crm=client, settings=settings)``.
MakeOwner = Callable[..., Awaitable[Owner]]


@pytest.fixture
def make_owner(sessions: Sessions, tmp_path: Path) -> MakeOwner:
    """Build the test's owner (a user with credits and ads) and its ingest activities."""

    async def build(
        *,
        ads: dict[str, str] | None = None,
        crm: HubSpotCrmClient | None = None,
        settings: Settings | None = None,
    ) -> Owner:
        async with sessions.begin() as session:
            user, _key = await create_user(session, "ana", START_CREDITS)
            for ad_id, campaign in (ads or {}).items():
                session.add(Ad(user_id=user.id, ad_id=ad_id, campaign_id=campaign, name=ad_id))
            user_id = user.id
        acts = IngestActivities(sessions, settings or Settings(var_dir=tmp_path), crm=lambda: crm)
        return Owner(user_id, acts)

    return build


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    """A running fake of HubSpot's CRM deals API."""
    with FakeHubSpot() as fake:
        yield fake


@pytest.fixture
async def crm(hubspot: FakeHubSpot) -> AsyncIterator[HubSpotCrmClient]:
    """A CRM client of the fake, with the fake's access token."""
    async with HubSpotCrmClient(hubspot.access_token, base_url=hubspot.url, timeout_s=5) as client:
        yield client


def at(event_id: int) -> datetime:
    """When the ``deal_event`` numbered ``event_id`` happened."""
    return datetime.fromtimestamp((BASE_MS + event_id) / 1000, UTC)


async def accept(sessions: Sessions, owner: Owner, *events: dict[str, Any]) -> list[str]:
    """Put events in the inbox as the webhook API does; their dedupe keys, in order."""
    keys = []
    async with sessions.begin() as session:
        for raw in events:
            row = _inbox_row(HubSpotEvent.model_validate(raw), owner.user_id)
            session.add(WebhookEvent(**row))
            keys.append(row["dedupe_key"])
    return keys


async def apply(owner: Owner, limit: int = 500, portal: int = PORTAL, *, deliver: bool = True) -> BatchResult:
    """One ``apply_batch`` run in an activity context; with ``deliver`` its rewards are then marked delivered, as
    the workflow's ``reward_samplers`` step does once the samplers got them."""
    result = await ActivityEnvironment().run(owner.acts.apply_batch, BatchRequest(portal_id=portal, limit=limit))
    keys = [r.key for batch in result.rewards for r in batch.rewards]
    if deliver and keys:
        async with owner.acts._sessions.begin() as session:
            await session.execute(update(Conversion).where(Conversion.event_key.in_(keys)).values(reward_pending=False))
    return result


async def deal_row(sessions: Sessions, deal_id: int) -> Deal:
    """The stored deal."""
    async with sessions() as session:
        deal = await session.scalar(select(Deal).where(Deal.portal_id == PORTAL, Deal.deal_id == str(deal_id)))
        assert deal is not None, f"deal {deal_id} not stored"
        return deal


async def credits_of(sessions: Sessions, deal_id: int) -> dict[str, list[tuple[str | None, str | None, int]]]:
    """The deal's credits per model: (ad, campaign, cents), in the order written."""
    deal = await deal_row(sessions, deal_id)
    async with sessions() as session:
        rows = await session.scalars(select(DealCredit).where(DealCredit.deal_pk == deal.id).order_by(DealCredit.id))
        found: dict[str, list[tuple[str | None, str | None, int]]] = {}
        for credit in rows:
            found.setdefault(credit.model, []).append((credit.ad_id, credit.campaign_id, credit.revenue_cents))
        return found


async def conversions(sessions: Sessions) -> list[Conversion]:
    """Every conversion recorded, in the order applied."""
    async with sessions() as session:
        return list(await session.scalars(select(Conversion).order_by(Conversion.id)))


async def inbox(sessions: Sessions) -> list[tuple[str, str | None]]:
    """Each inbox row's (status, error code), in order of acceptance."""
    async with sessions() as session:
        rows = await session.execute(select(WebhookEvent.status, WebhookEvent.error_code).order_by(WebhookEvent.id))
        return [(status, code) for status, code in rows.all()]


async def charges(sessions: Sessions, owner: Owner) -> tuple[list[int], int]:
    """The amounts of the owner's charge ledger entries, and its balance now."""
    async with sessions() as session:
        amounts = await session.scalars(
            select(CreditLedgerEntry.amount)
            .where(CreditLedgerEntry.user_id == owner.user_id, CreditLedgerEntry.kind == "charge")
            .order_by(CreditLedgerEntry.id)
        )
        balance = await session.scalar(select(User.credits).where(User.id == owner.user_id))
        return list(amounts), int(balance or 0)


def total(parts: list[tuple[str | None, str | None, int]]) -> int:
    """The cents of a model's credits together."""
    return sum(cents for _, _, cents in parts)


# --- revaluing, crediting and rewarding a deal ----------------------------------------------------------------------


async def test_an_open_deal_then_closed_won_is_revalued_credited_by_utm_and_rewarded_once(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner(ads={"ad-a": "spring", "ad-b": "spring", "ad-z": "autumn"})
    opened = deal_event(
        1, portal=PORTAL, deal=501, stage="qualifiedtobuy", amount="1000.00", ad="ad-a", campaign="spring"
    )
    [open_key] = await accept(sessions, owner, opened)

    first = await apply(owner)

    assert (first.processed, first.failed, first.remaining, first.rewards) == (1, 0, 0, [])
    assert (await deal_row(sessions, 501)).revenue_cents == 40_000  # 1000.00 × 0.4
    assert await credits_of(sessions, 501) == {"utm": [("ad-a", "spring", 40_000)]}

    [won_key] = await accept(sessions, owner, deal_event(2, portal=PORTAL, deal=501, ad="ad-a", campaign="spring"))
    second = await apply(owner)

    assert (second.processed, second.failed, second.remaining) == (1, 0, 0)
    assert second.rewards == [
        RewardBatch(
            owner=owner.user_id,
            campaign_id="spring",
            ads=["ad-a", "ad-b"],
            rewards=[Reward(ad_id="ad-a", successes=1.0, key=won_key)],
        )
    ]
    deal = await deal_row(sessions, 501)
    assert (deal.stage, deal.revenue_cents, deal.model, deal.amount) == ("closedwon", 100_000, "utm", "1000")
    assert deal.won_at is not None and deal.won_at.replace(tzinfo=UTC) == at(2)
    credited = await credits_of(sessions, 501)
    assert credited == {"utm": [("ad-a", "spring", 100_000)]}
    assert total(credited["utm"]) == deal.revenue_cents
    assert [
        (c.event_key, c.ad_id, c.campaign_id, c.model, c.stage, c.revenue_cents, c.delta_cents)
        for c in await conversions(sessions)
    ] == [
        (open_key, "ad-a", "spring", "utm", "qualifiedtobuy", 40_000, 40_000),
        (won_key, "ad-a", "spring", "utm", "closedwon", 100_000, 60_000),
    ]
    assert await charges(sessions, owner) == ([-1, -1], START_CREDITS - 2)


async def test_a_deal_won_again_is_revalued_but_earns_no_second_reward(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"})
    await accept(
        sessions,
        owner,
        deal_event(1, portal=PORTAL, deal=502, amount="500.00", ad="ad-a", campaign="spring"),
        deal_event(2, portal=PORTAL, deal=502, amount="750.25", ad="ad-a", campaign="spring"),
    )

    result = await apply(owner)

    assert result.processed == 2
    assert [len(batch.rewards) for batch in result.rewards] == [1]
    assert [(c.revenue_cents, c.delta_cents) for c in await conversions(sessions)] == [
        (50_000, 50_000),
        (75_025, 25_025),
    ]
    assert await credits_of(sessions, 502) == {"utm": [("ad-a", "spring", 75_025)]}


async def test_an_event_older_than_the_deal_changes_no_revenue_but_is_a_conversion_with_delta_zero(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"})
    await accept(
        sessions, owner, deal_event(20, portal=PORTAL, deal=503, amount="300.00", ad="ad-a", campaign="spring")
    )
    await apply(owner)
    late = deal_event(10, portal=PORTAL, deal=503, stage="appointmentscheduled", amount="999.00", ad="ad-a")
    [late_key] = await accept(sessions, owner, late)

    result = await apply(owner)

    assert (result.processed, result.failed, result.rewards) == (1, 0, [])
    deal = await deal_row(sessions, 503)
    assert (deal.stage, deal.revenue_cents, deal.amount, deal.as_of_ms) == ("closedwon", 30_000, "300", BASE_MS + 20)
    assert await credits_of(sessions, 503) == {"utm": [("ad-a", "spring", 30_000)]}
    last = (await conversions(sessions))[-1]
    assert (last.event_key, last.stage, last.revenue_cents, last.delta_cents) == (late_key, "closedwon", 30_000, 0)
    assert sum(c.delta_cents for c in await conversions(sessions)) == deal.revenue_cents
    assert (await charges(sessions, owner))[1] == START_CREDITS - 2  # an applied event is charged, delta or not


async def test_without_utm_the_contacts_touchpoints_credit_last_touch_and_linear_in_exact_cents(
    sessions: Sessions, make_owner: MakeOwner, hubspot: FakeHubSpot, crm: HubSpotCrmClient
) -> None:
    owner = await make_owner(ads={"ad-a": "spring", "ad-b": "spring"}, crm=crm)
    hubspot.add_deal("504", {"amount": "1000.00", "dealstage": "closedwon"}, ["c-1"])
    converted = at(30)
    async with sessions.begin() as session:
        for ad_id, hours in (("ad-a", -30), ("ad-a", -20), ("ad-b", -1), ("ad-a", 5)):  # the last one comes after
            moment = converted + timedelta(hours=hours)
            session.add(
                Touchpoint(user_id=owner.user_id, contact_id="c-1", ad_id=ad_id, campaign_id="spring", at=moment)
            )
        session.add(
            Touchpoint(user_id=owner.user_id, contact_id="c-other", ad_id="ad-a", campaign_id="spring", at=converted)
        )
    [key] = await accept(sessions, owner, deal_event(30, portal=PORTAL, deal=504, properties=False))

    result = await apply(owner)

    assert (result.processed, result.failed) == (1, 0)
    credited = await credits_of(sessions, 504)
    assert credited == {
        "last_touch": [("ad-b", "spring", 100_000)],
        "linear": [("ad-a", "spring", 66_667), ("ad-b", "spring", 33_333)],  # 33 334 + 33 333 for ad-a's two touches
    }
    assert total(credited["linear"]) == total(credited["last_touch"]) == 100_000
    deal = await deal_row(sessions, 504)
    assert (deal.model, deal.contact_ids, deal.utm_content) == ("last_touch", ["c-1"], None)
    [conversion] = await conversions(sessions)
    assert (conversion.ad_id, conversion.campaign_id, conversion.model) == ("ad-b", "spring", "last_touch")
    assert [(b.campaign_id, b.rewards) for b in result.rewards] == [
        ("spring", [Reward(ad_id="ad-b", successes=1.0, key=key)])
    ]


async def test_a_deal_whose_contacts_have_no_touchpoints_is_unattributed(
    sessions: Sessions, make_owner: MakeOwner, hubspot: FakeHubSpot, crm: HubSpotCrmClient
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"}, crm=crm)
    hubspot.add_deal("505", {"amount": "80.00", "dealstage": "closedwon"}, ["c-9"])
    await accept(sessions, owner, deal_event(1, portal=PORTAL, deal=505, properties=False))

    result = await apply(owner)

    assert (result.processed, result.rewards) == (1, [])
    assert await credits_of(sessions, 505) == {"none": [(None, None, 8_000)]}
    [conversion] = await conversions(sessions)
    assert (conversion.ad_id, conversion.model, conversion.revenue_cents) == (None, "none", 8_000)


# --- where a deal's properties come from ----------------------------------------------------------------------------


async def test_events_without_properties_read_the_deal_from_the_crm_once_per_deal_and_an_unknown_deal_fails_alone(
    sessions: Sessions, make_owner: MakeOwner, hubspot: FakeHubSpot, crm: HubSpotCrmClient
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"}, crm=crm)
    hubspot.add_deal(
        "601",
        {
            "amount": "250.00",
            "dealstage": "contractsent",
            "deal_currency_code": "EUR",
            "utm_content": "ad-a",
            "utm_campaign": "spring",
        },
        ["11", "12"],
    )
    hubspot.add_deal("602", {"amount": "40.10", "dealstage": "presentationscheduled"})
    await accept(
        sessions,
        owner,
        deal_event(1, portal=PORTAL, deal=601, properties=False),
        deal_event(2, portal=PORTAL, deal=699, properties=False),  # HubSpot has no such deal
        deal_event(3, portal=PORTAL, deal=602, properties=False),
        deal_event(4, portal=PORTAL, deal=601, stage="closedwon", properties=False),  # same deal: one CRM call
    )

    result = await apply(owner)

    assert (result.processed, result.failed, result.remaining) == (3, 1, 0)
    assert await inbox(sessions) == [
        ("processed", None),
        ("failed", "DEAL_NOT_FOUND"),
        ("processed", None),
        ("processed", None),
    ]
    deal = await deal_row(sessions, 601)
    assert (deal.stage, deal.revenue_cents, deal.currency, deal.contact_ids) == (
        "contractsent",
        22_500,
        "EUR",
        ["11", "12"],
    )
    assert (deal.utm_content, deal.utm_campaign) == ("ad-a", "spring")
    assert await credits_of(sessions, 601) == {"utm": [("ad-a", "spring", 22_500)]}
    assert (await deal_row(sessions, 602)).revenue_cents == 2_406  # 40.10 × 0.6
    assert [(c.deal_id, c.delta_cents) for c in await conversions(sessions)] == [
        ("601", 22_500),
        ("602", 2_406),
        ("601", 0),
    ]
    asked = sorted(urlsplit(r.path).path for r in hubspot.requests)
    assert asked == ["/crm/v3/objects/deals/601", "/crm/v3/objects/deals/602", "/crm/v3/objects/deals/699"]
    query = parse_qs(urlsplit(hubspot.requests[0].path).query)
    assert query["associations"] == ["contacts"] and "dealstage" in query["properties"][0].split(",")
    assert {r.headers["authorization"] for r in hubspot.requests} == {f"Bearer {hubspot.access_token}"}
    assert await charges(sessions, owner) == ([-3], START_CREDITS - 3)  # the failed event is not charged


async def test_hubspot_answering_500_fails_the_batch_retryably_with_nothing_applied_and_a_retry_applies_it(
    sessions: Sessions, make_owner: MakeOwner, hubspot: FakeHubSpot, crm: HubSpotCrmClient
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"}, crm=crm)
    hubspot.add_deal("701", {"amount": "10.00", "dealstage": "closedwon", "utm_content": "ad-a"})
    hubspot.add_deal("702", {"amount": "20.00", "dealstage": "closedwon"})
    await accept(
        sessions,
        owner,
        deal_event(1, portal=PORTAL, deal=701, ad="ad-a"),  # carries its properties: would apply on its own
        deal_event(2, portal=PORTAL, deal=701, properties=False),
        deal_event(3, portal=PORTAL, deal=702, properties=False),
    )
    hubspot.fail_next(500)

    with pytest.raises(ExternalServiceError) as failure:
        await apply(owner)

    assert failure.value.retryable and failure.value.code == "HUBSPOT_UNAVAILABLE"
    assert await inbox(sessions) == [("pending", None)] * 3
    assert await conversions(sessions) == []
    async with sessions() as session:
        assert list(await session.scalars(select(Deal))) == []
    assert await charges(sessions, owner) == ([], START_CREDITS)

    retried = await apply(owner)

    assert (retried.processed, retried.failed) == (3, 0)
    assert (await deal_row(sessions, 701)).revenue_cents == 1_000
    assert (await deal_row(sessions, 702)).revenue_cents == 2_000
    assert await charges(sessions, owner) == ([-3], START_CREDITS - 3)


async def test_an_event_without_properties_applies_its_change_to_the_stored_deal(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"})
    opened = deal_event(1, portal=PORTAL, deal=801, stage="decisionmakerboughtin", amount="1234.56", ad="ad-a")
    await accept(sessions, owner, {**opened, "properties": {**opened["properties"], "utm_campaign": "spring"}})
    await apply(owner)
    [won_key] = await accept(
        sessions, owner, deal_event(2, portal=PORTAL, deal=801, stage="closedwon", properties=False)
    )

    result = await apply(owner)

    assert (result.processed, result.failed) == (1, 0)
    deal = await deal_row(sessions, 801)
    assert (deal.stage, deal.revenue_cents, deal.utm_content) == ("closedwon", 123_456, "ad-a")
    assert [(c.revenue_cents, c.delta_cents) for c in await conversions(sessions)] == [
        (98_765, 98_765),  # 1234.56 × 0.8 = 987.648 → 987.65
        (123_456, 24_691),
    ]
    assert [b.rewards for b in result.rewards] == [[Reward(ad_id="ad-a", successes=1.0, key=won_key)]]


async def test_events_that_can_never_apply_fail_with_their_code_and_the_rest_of_the_batch_applies(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner()
    await accept(
        sessions,
        owner,
        deal_event(1, portal=PORTAL, deal=901, properties=False),  # no properties, no CRM, no stored deal
        deal_event(2, portal=PORTAL, deal=902, stage="negotiation", amount="10.00"),  # a stage without a probability
        deal_event(3, portal=PORTAL, deal=903, stage="closedlost", amount="10.00"),
    )

    result = await apply(owner)

    assert (result.processed, result.failed, result.remaining) == (1, 2, 0)
    assert await inbox(sessions) == [
        ("failed", "MISSING_DEAL_STAGE"),
        ("failed", "UNKNOWN_DEAL_STAGE"),
        ("processed", None),
    ]
    async with sessions() as session:
        assert list(await session.scalars(select(Deal.deal_id))) == ["903"]
    assert [(c.deal_id, c.revenue_cents) for c in await conversions(sessions)] == [("903", 0)]
    assert await charges(sessions, owner) == ([-1], START_CREDITS - 1)


async def test_a_deal_whose_first_event_fails_is_still_applied_by_its_next_event_in_the_same_batch(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner()
    await accept(
        sessions,
        owner,
        deal_event(1, portal=PORTAL, deal=904, stage="negotiation", amount="10.00"),
        deal_event(2, portal=PORTAL, deal=904, stage="closedwon", amount="10.00"),
    )

    result = await apply(owner)

    assert (result.processed, result.failed) == (1, 1)
    assert (await deal_row(sessions, 904)).revenue_cents == 1_000


async def test_an_event_changing_utm_content_credits_the_ad_it_names(sessions: Sessions, make_owner: MakeOwner) -> None:
    owner = await make_owner(ads={"ad-a": "spring", "ad-b": "summer"})
    await accept(sessions, owner, deal_event(1, portal=PORTAL, deal=921, amount="70.00", ad="ad-a", campaign="spring"))
    await apply(owner)
    moved = {**deal_event(2, portal=PORTAL, deal=921, properties=False), "propertyName": "utm_content"}
    await accept(sessions, owner, {**moved, "propertyValue": "ad-b"})

    result = await apply(owner)

    assert (result.processed, result.failed) == (1, 0)
    assert (await deal_row(sessions, 921)).utm_content == "ad-b"
    assert await credits_of(sessions, 921) == {"utm": [("ad-b", "summer", 7_000)]}
    assert (await conversions(sessions))[-1].ad_id == "ad-b"


async def test_an_out_of_order_event_is_credited_like_the_deal_it_leaves_unchanged(
    sessions: Sessions, make_owner: MakeOwner, hubspot: FakeHubSpot, crm: HubSpotCrmClient
) -> None:
    owner = await make_owner(ads={"ad-a": "spring", "ad-b": "spring"}, crm=crm)
    hubspot.add_deal("931", {"amount": "60.00", "dealstage": "closedwon"}, ["c-1"])
    hour = 3_600_000
    async with sessions.begin() as session:
        for ad_id, hours in (("ad-a", 0), ("ad-b", 5)):
            moment = datetime.fromtimestamp((BASE_MS + hours * hour) / 1000, UTC)
            session.add(
                Touchpoint(user_id=owner.user_id, contact_id="c-1", ad_id=ad_id, campaign_id="spring", at=moment)
            )
    await accept(sessions, owner, deal_event(1, portal=PORTAL, deal=931, properties=False, at_ms=BASE_MS + 10 * hour))
    await apply(owner)
    # An older change (before ad-b's touch) arrives after the deal was won through ad-b.
    await accept(sessions, owner, deal_event(2, portal=PORTAL, deal=931, properties=False, at_ms=BASE_MS + 1 * hour))

    result = await apply(owner)

    assert (result.processed, result.rewards) == (1, [])
    assert (await credits_of(sessions, 931))["last_touch"] == [("ad-b", "spring", 6_000)]
    won, late = await conversions(sessions)
    assert (won.ad_id, won.delta_cents) == ("ad-b", 6_000)
    assert (late.ad_id, late.model, late.revenue_cents, late.delta_cents) == ("ad-b", "last_touch", 6_000, 0)


async def test_the_operators_stage_probabilities_are_merged_over_hubspots(
    sessions: Sessions, make_owner: MakeOwner, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path, hubspot_stage_probabilities={"qualifiedtobuy": 0.25, "demo": 0.5})
    owner = await make_owner(settings=settings)
    await accept(
        sessions,
        owner,
        deal_event(1, portal=PORTAL, deal=911, stage="qualifiedtobuy", amount="1000.00"),
        deal_event(2, portal=PORTAL, deal=912, stage="demo", amount="333.33"),
        deal_event(3, portal=PORTAL, deal=913, stage="contractsent", amount="100.00"),
    )

    result = await apply(owner)

    assert (result.processed, result.failed) == (3, 0)
    assert [(c.deal_id, c.revenue_cents) for c in await conversions(sessions)] == [
        ("911", 25_000),  # the operator's 0.25, not HubSpot's 0.4
        ("912", 16_666),  # 166.665 rounded half-even
        ("913", 9_000),  # HubSpot's default 0.9 still applies
    ]


# --- exactly once ---------------------------------------------------------------------------------------------------


async def test_a_second_batch_finds_nothing_and_charges_nothing(sessions: Sessions, make_owner: MakeOwner) -> None:
    owner = await make_owner()
    await accept(sessions, owner, *(deal_event(i, portal=PORTAL, deal=1000 + i, amount="1.00") for i in range(3)))

    first = await apply(owner)
    again = await apply(owner)

    assert first.processed == 3
    assert again == BatchResult()
    assert len(await conversions(sessions)) == 3
    assert await charges(sessions, owner) == ([-3], START_CREDITS - 3)


async def test_two_batches_racing_on_the_same_events_apply_each_event_once(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner(ads={"ad-a": "spring"})
    amounts = ["10.00", "20.50", "30.25", "40.00", "50.75"]
    events = [
        deal_event(i, portal=PORTAL, deal=1100 + i, amount=amount, ad="ad-a", campaign="spring")
        for i, amount in enumerate(amounts, start=1)
    ]
    keys = await accept(sessions, owner, *events)

    outcomes = await asyncio.gather(apply(owner), apply(owner), return_exceptions=True)

    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, Retryable) and outcome.code == "BATCH_RACED", repr(outcome)
    results = [o for o in outcomes if isinstance(o, BatchResult)]
    assert sum(r.processed for r in results) == 5
    rewarded = [reward.key for r in results for batch in r.rewards for reward in batch.rewards]
    assert sorted(rewarded) == sorted(keys)
    applied = await conversions(sessions)
    assert sorted(c.event_key for c in applied) == sorted(keys)
    assert sum(c.revenue_cents for c in applied) == 15_150
    async with sessions() as session:
        credited = await session.scalars(select(DealCredit.revenue_cents).where(DealCredit.model == "utm"))
        assert sum(credited) == 15_150
    assert await charges(sessions, owner) == ([-5], START_CREDITS - 5)
    assert await apply(owner) == BatchResult()


async def test_remaining_counts_the_pending_events_a_smaller_batch_left(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    owner = await make_owner()
    keys = await accept(
        sessions, owner, *(deal_event(i, portal=PORTAL, deal=1200 + i, amount="2.00") for i in range(5))
    )
    other = deal_event(9, portal=PORTAL + 1, deal=1299, amount="2.00")  # another portal's event is not counted
    await accept(sessions, owner, other)

    results = [await apply(owner, limit=2) for _ in range(3)]

    assert [(r.processed, r.remaining) for r in results] == [(2, 3), (2, 1), (1, 0)]
    assert [c.event_key for c in await conversions(sessions)] == keys  # oldest first
    assert await charges(sessions, owner) == ([-2, -2, -1], START_CREDITS - 5)
    assert (await inbox(sessions))[-1] == ("pending", None)


async def test_a_reward_stays_in_the_outbox_until_the_samplers_got_it(
    sessions: Sessions, make_owner: MakeOwner
) -> None:
    # a worker that dies after the batch committed but before the samplers were told loses no reward: the next
    # batch (even one with no new event) offers it again, until reward_samplers clears it
    owner = await make_owner(ads={"ad-a": "spring"})
    await accept(sessions, owner, deal_event(1, portal=PORTAL, deal=951, amount="10.00", ad="ad-a", campaign="spring"))
    first = await apply(owner, deliver=False)
    again = await apply(owner, deliver=False)
    assert first.processed == 1 and again.processed == 0
    assert again.rewards == first.rewards and [len(b.rewards) for b in again.rewards] == [1]
    sent: list[tuple[Any, ...]] = []

    class Recorder:
        async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
            sent.append((args, kwargs["start_signal_args"]))

    env = ActivityEnvironment(client=Recorder())  # type: ignore[arg-type]  # records the signal-with-start calls
    delivered = await env.run(owner.acts.reward_samplers, RewardDelivery(batches=again.rewards))
    assert (delivered.campaigns, delivered.rewards) == (1, 1) and len(sent) == 1
    assert (await apply(owner, deliver=False)).rewards == []
