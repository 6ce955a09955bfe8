"""The HubSpot webhook pipeline survives its worker being killed (-9) and its Temporal server restarting mid-burst:
every delivery answered 200 is in the inbox, and after recovery (HubSpot's retries of whatever did not get a 200)
each distinct event is applied and charged exactly once."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.attribution.contract import WEBHOOK_QUEUE
from activities.attribution.deliveries import HubSpotEvent, dedupe_key
from activities.attribution.models import Conversion, WebhookEvent
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.models import CreditLedgerEntry, User
from conveyor.temporal import connect, dev_server_command, free_port, spawn, stop_process
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.hubspot import body_of, deal_event, post_delivery
from tests.helpers.processes import spawn_worker, stop_all
from tests.helpers.stack import serve_api, stack_settings

pytestmark = [pytest.mark.process, pytest.mark.slow]

Sessions = async_sessionmaker[AsyncSession]

#: The burst: deliveries, how many are posted at once, and after how many 200s the fault is injected.
DELIVERIES = 300
CONCURRENCY = 16
FAULT_AFTER_OKS = 50
#: Deliveries from this one on wait for the fault to begin, so it always strikes in the middle of the burst.
SECOND_HALF = DELIVERIES // 2
#: Share of deliveries that are HubSpot retries of an earlier delivery (same events, next attempt number).
REPOST_SHARE = 0.1
#: The tenant's two ads (one campaign); a third of the deals name each, a third name none (unattributed).
ADS = ("ad-a", "ad-b")
CAMPAIGN = "spring"
CREDITS = 10_000
#: Bounds for recovery, generous for two busy cores: an activity lost with its worker is retried only once its
#: 60 s heartbeat timeout expires. Nothing asserts how fast recovery is, only that it completes.
RETRY_WITHIN_S = 120.0
PROCESSED_WITHIN_S = 180.0


@dataclass
class Burst:
    """The deliveries of one burst and what they must add up to once applied."""

    bodies: list[bytes]
    keys: list[set[str]]
    """Each delivery's events' inbox dedupe keys."""
    revenue: dict[str, int] = field(default_factory=dict)
    """Each distinct event's expected revenue in cents (closed won: its deal's amount), by dedupe key."""
    by_ad: dict[str | None, int] = field(default_factory=dict)
    """Expected revenue in cents per ad (``None``: unattributed)."""


def make_burst(portal: int, seed: int) -> Burst:
    """``DELIVERIES`` deliveries of 1-5 closed-won deal events each (one event per deal), ~10% of them retries."""
    rng = random.Random(seed)
    ids = itertools.count(seed * 1_000_000 + 1)
    events_of: list[list[dict[str, Any]]] = []
    burst = Burst(bodies=[], keys=[])
    for index in range(DELIVERIES):
        if index >= 10 and rng.random() < REPOST_SHARE:
            earlier = events_of[rng.randrange(len(events_of))]
            events = [{**e, "attemptNumber": e["attemptNumber"] + 1} for e in earlier]
        else:
            events = []
            for _ in range(rng.randint(1, 5)):
                event_id = next(ids)
                cents = rng.randint(100, 5_000_000)
                ad = rng.choice([*ADS, None])
                event = deal_event(
                    event_id,
                    portal=portal,
                    deal=event_id,
                    amount=f"{cents // 100}.{cents % 100:02d}",
                    ad=ad,
                    campaign=CAMPAIGN if ad else None,
                )
                key = dedupe_key(HubSpotEvent.model_validate(event))
                burst.revenue[key] = cents
                burst.by_ad[ad] = burst.by_ad.get(ad, 0) + cents
                events.append(event)
        events_of.append(events)
        burst.bodies.append(body_of(events))
        burst.keys.append({dedupe_key(HubSpotEvent.model_validate(e)) for e in events})
    return burst


@dataclass
class Answers:
    """What each delivery of a burst was last answered (0: no answer, the connection failed)."""

    status: list[int]
    oks: int = 0
    unavailable: list[httpx.Response] = field(default_factory=list)
    """Every 503 answer, to check it asks HubSpot to retry."""
    fault: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once ``FAULT_AFTER_OKS`` deliveries were answered 200: time to inject the fault."""
    faulted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the fault once it struck (the worker is dead, the server is down): the second half may go."""

    def record(self, index: int, answer: httpx.Response | None) -> None:
        """Keep a delivery's answer."""
        self.status[index] = answer.status_code if answer is not None else 0
        if answer is not None and answer.status_code == 503:
            self.unavailable.append(answer)
        if answer is not None and answer.status_code == 200:
            self.oks += 1
            if self.oks >= FAULT_AFTER_OKS:
                self.fault.set()

    def not_ok(self) -> list[int]:
        """The deliveries still without a 200."""
        return [i for i, s in enumerate(self.status) if s != 200]


async def deliver(http: httpx.AsyncClient, body: bytes) -> httpx.Response | None:
    """Post a delivery as HubSpot does (freshly signed); ``None`` when the connection itself failed."""
    try:
        return await post_delivery(http, body)
    except httpx.TransportError:
        return None


async def post_burst(http: httpx.AsyncClient, burst: Burst, answers: Answers) -> None:
    """Post every delivery once, in order, ``CONCURRENCY`` at a time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(burst.bodies)):
        queue.put_nowait(index)

    async def poster() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            if index >= SECOND_HALF:
                await answers.faulted.wait()
            answers.record(index, await deliver(http, burst.bodies[index]))

    await asyncio.gather(*(poster() for _ in range(CONCURRENCY)))


async def retry_until_accepted(http: httpx.AsyncClient, burst: Burst, answers: Answers) -> list[int]:
    """Post again (as HubSpot's retries would) every delivery not answered 200, until each is; returns how many new
    events each retry of a delivery first answered 503 added (its events were stored before the 503)."""
    added_after_503: list[int] = []

    async def all_accepted() -> None:
        for index in answers.not_ok():
            before = answers.status[index]
            answer = await deliver(http, burst.bodies[index])
            answers.record(index, answer)
            if before == 503 and answer is not None and answer.status_code == 200:
                added_after_503.append(answer.json()["accepted"])
        assert not answers.not_ok(), f"deliveries still refused: {answers.not_ok()[:10]}"

    await assert_eventually(all_accepted, within_s=RETRY_WITHIN_S, interval=1.0)
    return added_after_503


@asynccontextmanager
async def tenant(sessions: Sessions, api_url: str, portal: int) -> AsyncIterator[tuple[int, httpx.AsyncClient]]:
    """A user with ``CREDITS`` owning ``portal`` and the campaign's ads, and its API client."""
    async with sessions.begin() as session:
        user, key = await create_user(session, f"durable-{portal}", CREDITS)
        user_id = user.id
    async with httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": key}, timeout=60) as http:
        connected = await http.post("/api/hubspot/portals", json={"portal_id": portal})
        assert connected.status_code == 201, connected.text
        for ad in ADS:
            created = await http.post("/api/ads", json={"ad_id": ad, "campaign_id": CAMPAIGN})
            assert created.status_code == 201, created.text

        async def worker_ready() -> None:  # the campaign's sampler answers: a worker polls the webhook queue
            sampler = await http.get(f"/api/campaigns/{CAMPAIGN}/sampler")
            assert sampler.status_code == 200, sampler.text
            assert [a["ad_id"] for a in sampler.json()["arms"]] == list(ADS)

        await assert_eventually(worker_ready, within_s=90, interval=0.5)
        yield user_id, http


async def inbox(sessions: Sessions, portal: int) -> dict[str, str]:
    """The portal's inbox: each event's status by dedupe key."""
    async with sessions() as session:
        rows = await session.execute(
            select(WebhookEvent.dedupe_key, WebhookEvent.status).where(WebhookEvent.portal_id == portal)
        )
        return {key: status for key, status in rows.all()}


async def assert_answered_means_stored(sessions: Sessions, portal: int, burst: Burst, answers: Answers) -> None:
    """Every delivery answered 200 (or 503: Temporal was not told, the events were kept) has all its events in the
    inbox, checked before any retry could add them."""
    stored = await inbox(sessions, portal)
    lost = [i for i, s in enumerate(answers.status) if s in (200, 503) and not burst.keys[i] <= stored.keys()]
    assert not lost, f"deliveries answered 200 or 503 whose events are not in the inbox: {lost[:10]}"


async def assert_processed_exactly_once(
    sessions: Sessions, http: httpx.AsyncClient, user_id: int, portal: int, burst: Burst
) -> None:
    """Once the summary counts every distinct event: exact revenue, nothing pending or failed, one credit each."""
    distinct = len(burst.revenue)

    async def all_counted() -> dict[str, Any]:
        report: dict[str, Any] = (await http.get("/api/attribution/summary")).json()
        assert report["conversions"] >= distinct, report
        return report

    report = await assert_eventually(all_counted, within_s=PROCESSED_WITHIN_S, interval=0.5)
    assert report["conversions"] == distinct
    total = sum(burst.revenue.values())
    assert report["attributed_revenue_cents"] + report["unattributed_revenue_cents"] == total
    assert report["unattributed_revenue_cents"] == burst.by_ad.get(None, 0)
    assert {a["ad_id"]: a["revenue_cents"] for a in report["by_ad"]} == {
        ad: cents for ad, cents in burst.by_ad.items() if ad is not None
    }
    stored = await inbox(sessions, portal)
    assert stored.keys() == burst.revenue.keys()
    assert set(stored.values()) == {"processed"}, {s for s in stored.values() if s != "processed"}
    async with sessions() as session:
        conversions = await session.execute(
            select(func.count(), func.count(func.distinct(Conversion.event_key))).where(Conversion.user_id == user_id)
        )
        assert tuple(conversions.one()) == (distinct, distinct)
        charged = await session.scalar(
            select(func.sum(CreditLedgerEntry.amount)).where(
                CreditLedgerEntry.user_id == user_id, CreditLedgerEntry.kind == "charge"
            )
        )
        balance = await session.scalar(select(User.credits).where(User.id == user_id))
    assert charged == -distinct
    assert balance == CREDITS - distinct


async def processed_count(sessions: Sessions, portal: int) -> int:
    """How many of the portal's events were applied so far."""
    return sum(1 for s in (await inbox(sessions, portal)).values() if s == "processed")


async def burst_with_fault(
    http: httpx.AsyncClient, burst: Burst, fault: Callable[[Answers], Awaitable[None]]
) -> Answers:
    """Post the burst while ``fault`` runs once ``FAULT_AFTER_OKS`` deliveries were accepted (the fault sets
    ``answers.faulted`` once it struck, and the burst's second half goes on meanwhile)."""
    answers = Answers(status=[0] * len(burst.bodies))

    async def inject() -> None:
        await answers.fault.wait()
        await fault(answers)

    await asyncio.gather(post_burst(http, burst, answers), inject())
    return answers


async def test_every_accepted_event_is_applied_once_after_the_worker_is_killed_mid_burst(tmp_path: Path) -> None:
    env = await start_dev_server()  # its own server: no other worker may take the portal's batches
    settings = stack_settings(tmp_path / "var", env.client.service_client.config.target_host)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    portal = 7001
    burst = make_burst(portal, seed=1)
    first = spawn_worker(settings, [WEBHOOK_QUEUE], tmp_path / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    processed_at_kill = -1
    try:
        async with serve_api(settings) as api_url:
            async with tenant(sessions, api_url, portal) as (user_id, http):

                async def kill_worker(answers: Answers) -> None:
                    nonlocal second, processed_at_kill

                    async def applying() -> None:  # the worker is in the middle of the burst's batches
                        assert await processed_count(sessions, portal) > 0

                    await assert_eventually(applying, within_s=60)
                    first.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(first.wait, 10)
                    answers.faulted.set()
                    processed_at_kill = await processed_count(sessions, portal)
                    second = spawn_worker(settings, [WEBHOOK_QUEUE], tmp_path / "worker2.log")

                answers = await burst_with_fault(http, burst, kill_worker)
                await assert_answered_means_stored(sessions, portal, burst, answers)
                assert set(answers.status) == {200}  # a dead worker never costs a delivery its acceptance
                await retry_until_accepted(http, burst, answers)
                await assert_processed_exactly_once(sessions, http, user_id, portal, burst)
                assert second is not None and second.poll() is None  # the new worker did the rest
    finally:
        stop_all(first, second)
        await engine.dispose()
        await env.shutdown()
    assert first.returncode == -signal.SIGKILL
    assert 0 < processed_at_kill < len(burst.revenue)  # the kill left work for the second worker


async def test_every_accepted_event_is_applied_once_after_the_temporal_server_restarts_mid_burst(
    tmp_path: Path,
) -> None:
    settings = stack_settings(
        tmp_path / "var",
        f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        temporal_db_filename=str(tmp_path / "temporal.db"),
    )

    async def start_server(log: str) -> subprocess.Popen[bytes]:
        proc = spawn(dev_server_command(settings), log_path=tmp_path / log)
        await connect(settings, attempts=240, delay=0.25)  # healthy: it answers (as `conveyor up` waits for it)
        return proc

    servers = [await start_server("temporal1.log")]
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    portal = 7002
    burst = make_burst(portal, seed=2)
    worker = spawn_worker(settings, [WEBHOOK_QUEUE], tmp_path / "worker.log")
    refused_during_outage = 0
    try:
        async with serve_api(settings) as api_url:
            async with tenant(sessions, api_url, portal) as (user_id, http):

                async def restart_server(answers: Answers) -> None:
                    nonlocal refused_during_outage
                    await asyncio.to_thread(stop_process, servers[0], timeout=30)
                    answers.faulted.set()
                    await asyncio.sleep(1.5)

                    async def refused() -> None:  # deliveries keep coming: they must be told to retry
                        assert answers.unavailable

                    # the server stays down until a delivery was answered 503 (the API's client retries a
                    # signal for a few seconds before it gives up), so the outage path is really taken
                    with suppress(AssertionError):
                        await assert_eventually(refused, within_s=45, interval=0.2)
                    refused_during_outage = len(answers.unavailable)
                    servers.append(await start_server("temporal2.log"))

                answers = await burst_with_fault(http, burst, restart_server)
                await assert_answered_means_stored(sessions, portal, burst, answers)
                assert set(answers.status) == {200, 503}, sorted(set(answers.status))
                for answer in answers.unavailable:
                    assert answer.headers["Retry-After"] == "5"
                    assert answer.json()["error"]["code"] == "TEMPORAL_UNAVAILABLE", answer.text
                added_after_503 = await retry_until_accepted(http, burst, answers)
                assert added_after_503 and set(added_after_503) == {0}  # a retry of a 503 adds nothing twice
                await assert_processed_exactly_once(sessions, http, user_id, portal, burst)
                assert worker.poll() is None  # the worker rode out the restart and reconnected by itself
    finally:
        stop_all(worker)
        for server in servers:
            stop_process(server)
        await engine.dispose()
    assert refused_during_outage > 0
