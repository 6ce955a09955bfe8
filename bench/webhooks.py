"""Benchmark: HubSpot deal webhooks through Conveyor vs the seed's Celery + Redis path, same workload, one run.

1. Builds one workload: ``--deliveries`` signed deliveries of mostly 1-5 deal events (now and then a batch of up
   to 25), one event per deal, of which a ``--duplicates`` share are re-posts of an earlier delivery's identical
   body (re-signed with a fresh timestamp, as HubSpot retries), placed anywhere after their original.
2. Conveyor: the dev server, migrated SQLite, the API as its own process (``conveyor api``) and a
   ``conveyor worker -q attribution.webhooks`` process. A user connects the portal; processing is done when the app
   database holds a conversion for every distinct event (read here, so counting does not load the API measured).
3. Celery: ``redis-server`` on a free loopback port (no persistence), the peer endpoint of
   :mod:`bench.celery_webhooks` as its own uvicorn process, and a ``celery worker --concurrency=4`` prefork
   process on ``hubspot-webhook-events``; done when the worker's processed set in Redis holds every distinct event.
4. Both sides get one warm-up delivery on another portal first, then the same bodies posted ``--concurrency`` at a
   time with httpx (a 503 is retried, as HubSpot would); the default, 10, is HubSpot's default
   ``maxConcurrentRequests`` for an app's webhooks (``--concurrency 32`` stresses both sides harder).
   Measured: deliveries accepted/s over the posting wall time, distinct events fully processed/s from the first
   post to the last event applied, p50/p95 accept latency.
   Each side's totals are checked exactly against the generator's (revenue cents per ad, unattributed, count of
   conversions): a lost or double-counted event prints a FAIL line and exits 1.

Needs ``scripts/bench-setup.sh`` (redis-server, Celery and redis-py: bench-only). Its last line:
``webhooks: conveyor P events/s processed, celery Q events/s processed, ratio R`` (goal R ≥ 1.0, p95 < 100 ms).
Usage: ``python -m bench.webhooks [--deliveries N] [--duplicates F] [--concurrency N] [--only conveyor|celery]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

from activities.attribution.contract import WEBHOOK_QUEUE
from activities.attribution.revenue import DEFAULT_STAGE_PROBABILITIES, deal_revenue_cents
from activities.attribution.signatures import signed_headers
from conveyor.temporal import free_port, stop_process

console = Console(width=None if sys.stdout.isatty() else 120)
SECRET = "bench-hubspot-client-secret"
WEBHOOK_PATH = "/webhooks/hubspot"
PORTAL = 424242
WARMUP_PORTAL = 424243
APP_ID = 9001
SUBSCRIPTION_ID = 77
#: Key of unattributed revenue in the expected totals (events without ``utm_content``).
UNATTRIBUTED = "(unattributed)"
#: Share of events that carry no ``utm_content`` (unattributed revenue).
UNATTRIBUTED_SHARE = 0.08
CAMPAIGNS = 6
ADS_PER_CAMPAIGN = 5
#: How long a side may take to process everything before its missing events count as lost.
PROCESS_TIMEOUT_S = 300.0
#: After the count is reached, wait this long and read again so late double applications show up.
SETTLE_S = 1.0
POLL_S = 0.05


@dataclass(frozen=True)
class Workload:
    """The bodies to post, in order, and what correct processing of their distinct events adds up to."""

    bodies: list[bytes]
    distinct_deliveries: int
    distinct_events: int
    revenue_cents: dict[str, int]
    """Expected revenue per ``utm_content`` (``UNATTRIBUTED`` for none)."""
    conversions: dict[str, int]


def _event(rng: random.Random, portal_id: int, event_id: int, now_ms: int) -> tuple[dict[str, Any], str, int]:
    """One deal stage change on the wire (one deal per event), its ad (or ``UNATTRIBUTED``) and revenue in cents."""
    stage = rng.choice(sorted(DEFAULT_STAGE_PROBABILITIES))
    amount = f"{rng.randint(100, 250_000)}.{rng.randint(0, 99):02d}"
    properties = {"amount": amount, "dealstage": stage}
    ad = UNATTRIBUTED
    if rng.random() >= UNATTRIBUTED_SHARE:
        campaign = rng.randrange(CAMPAIGNS)
        ad = f"ad-{campaign}-{rng.randrange(ADS_PER_CAMPAIGN)}"  # one of all_ads()
        properties |= {"utm_content": ad, "utm_campaign": f"campaign-{campaign}"}
    event = {
        "eventId": event_id,
        "subscriptionId": SUBSCRIPTION_ID,
        "portalId": portal_id,
        "appId": APP_ID,
        "occurredAt": now_ms - rng.randint(0, 60_000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 10_000_000 + event_id,
        "propertyName": "dealstage",
        "propertyValue": stage,
        "properties": properties,
    }
    return event, ad, deal_revenue_cents(amount, stage)


def build_workload(portal_id: int, deliveries: int, duplicates: float, seed: int = 7) -> Workload:
    """``deliveries`` bodies for ``portal_id``, ``duplicates`` of them re-posts of an earlier one."""
    rng = random.Random(seed)
    repeats = round(deliveries * duplicates)
    distinct = deliveries - repeats
    if distinct < 1:
        raise SystemExit("--duplicates leaves no distinct delivery")
    now_ms = int(time.time() * 1000)
    revenue: Counter[str] = Counter()
    conversions: Counter[str] = Counter()
    originals: list[bytes] = []
    next_id = 1
    for _ in range(distinct):
        size = rng.randint(10, 25) if rng.random() < 0.03 else rng.randint(1, 5)
        events = []
        for _ in range(size):
            event, ad, cents = _event(rng, portal_id, next_id, now_ms)
            next_id += 1
            events.append(event)
            revenue[ad] += cents
            conversions[ad] += 1
        originals.append(json.dumps(events).encode())
    order = list(originals)
    for _ in range(repeats):  # each re-post lands somewhere after its original
        source = rng.randrange(distinct)
        position = order.index(originals[source])
        order.insert(rng.randint(position + 1, len(order)), originals[source])
    return Workload(order, distinct, next_id - 1, dict(revenue), dict(conversions))


@dataclass
class Posting:
    """What posting the workload measured."""

    started: float = 0.0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    retries: int = 0
    refused: Counter[int] = field(default_factory=Counter)


async def post_one(http: httpx.AsyncClient, url: str, body: bytes, posting: Posting) -> None:
    """Post one delivery, signed now; retry a 503 (with a fresh signature) as HubSpot would; record its latency."""
    begun = time.perf_counter()
    for attempt in range(20):
        headers = signed_headers(SECRET, "POST", url, body, datetime.now(UTC))
        response = await http.post(url, content=body, headers=headers)
        if response.status_code == 200:
            posting.latencies_ms.append((time.perf_counter() - begun) * 1000)
            return
        if response.status_code != 503:
            posting.refused[response.status_code] += 1
            console.print(f"[red]{url}: {response.status_code} {response.text[:300]}")
            return
        posting.retries += 1
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    posting.refused[503] += 1


async def post_all(base_url: str, bodies: list[bytes], concurrency: int) -> Posting:
    """Post ``bodies`` in order, ``concurrency`` requests at a time."""
    url = base_url + WEBHOOK_PATH
    posting = Posting()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def sender() -> None:
            while not queue.empty():
                await post_one(http, url, queue.get_nowait(), posting)

        posting.started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        posting.seconds = time.perf_counter() - posting.started
    return posting


async def wait_for_count(read: Callable[[], Awaitable[int]], target: int, within_s: float) -> tuple[int, float]:
    """Poll ``read`` until it reaches ``target`` or ``within_s`` pass; returns the last count and its perf_counter."""
    deadline = time.perf_counter() + within_s
    count = await read()
    while count < target and time.perf_counter() < deadline:
        await asyncio.sleep(POLL_S)
        count = await read()
    return count, time.perf_counter()


@asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this process on 127.0.0.1:``port``; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError(f"uvicorn did not start on port {port}")
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@asynccontextmanager
async def serve_process(command: list[str], env: dict[str, str], port: int, log: Path) -> AsyncIterator[str]:
    """Run an HTTP endpoint as its own process (as it runs in production) on 127.0.0.1:``port``; yields its URL.

    Each side's endpoint gets a process of its own, so neither shares this process's interpreter with the load
    generator posting to it.
    """
    out = log.open("ab")
    process = subprocess.Popen(command, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{command[2:4]} exited with {process.returncode}; see {log}")
                try:
                    await http.get(f"{url}/")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{command[2:4]} did not listen on {port} within 60 s") from None
                    await asyncio.sleep(0.1)
        yield url
    finally:
        stop_process(process, timeout=30)
        out.close()


@dataclass
class Totals:
    """What a side applied: conversions and revenue cents per ``utm_content`` (``UNATTRIBUTED`` for none)."""

    conversions: int
    revenue_cents: dict[str, int]
    conversions_by_ad: dict[str, int]


@dataclass
class SideResult:
    """One side's measurements and its correctness check."""

    name: str
    posting: Posting
    processed_count: int
    processed_seconds: float
    totals: Totals
    problems: list[str]

    @property
    def accepted_per_s(self) -> float:
        """Deliveries answered 200 per second of posting."""
        return len(self.posting.latencies_ms) / self.posting.seconds

    @property
    def processed_per_s(self) -> float:
        """Distinct events fully processed per second, first post to last event applied."""
        return self.processed_count / self.processed_seconds

    def latency(self, quantile: int) -> float:
        """The accept latency at percentile ``quantile`` (ms)."""
        return statistics.quantiles(self.posting.latencies_ms, n=100, method="inclusive")[quantile - 1]


def check_totals(workload: Workload, totals: Totals) -> list[str]:
    """Every difference between what the side applied and what the workload's distinct events add up to."""
    problems: list[str] = []
    if totals.conversions < workload.distinct_events:
        problems.append(f"lost {workload.distinct_events - totals.conversions} of {workload.distinct_events} events")
    if totals.conversions > workload.distinct_events:
        problems.append(f"double-counted {totals.conversions - workload.distinct_events} events")
    for ad in sorted(set(workload.revenue_cents) | set(totals.revenue_cents)):
        want, got = workload.revenue_cents.get(ad, 0), totals.revenue_cents.get(ad, 0)
        if want != got:
            problems.append(f"{ad}: revenue {got} cents, expected {want}")
    for ad in sorted(set(workload.conversions) | set(totals.conversions_by_ad)):
        want, got = workload.conversions.get(ad, 0), totals.conversions_by_ad.get(ad, 0)
        if want != got:
            problems.append(f"{ad}: {got} conversions, expected {want}")
    return problems


async def measure(
    name: str,
    base_url: str,
    workload: Workload,
    concurrency: int,
    count: Callable[[], Awaitable[int]],
    totals: Callable[[], Awaitable[Totals]],
) -> SideResult:
    """Post the workload to ``base_url``, wait for ``count`` to reach its distinct events, then check ``totals``."""
    posting = await post_all(base_url, workload.bodies, concurrency)
    done, finished = await wait_for_count(count, workload.distinct_events, PROCESS_TIMEOUT_S)
    await asyncio.sleep(SETTLE_S)
    final = await totals()
    problems = check_totals(workload, final)
    if posting.refused:
        problems.append(f"deliveries refused: {dict(posting.refused)}")
    return SideResult(name, posting, min(done, workload.distinct_events), finished - posting.started, final, problems)


async def warm_up(base_url: str, count: Callable[[], Awaitable[int]]) -> None:
    """One delivery on the warm-up portal, waited for, so both sides start the measurement warm."""
    warm = build_workload(WARMUP_PORTAL, 1, 0.0, seed=1)
    posting = await post_all(base_url, warm.bodies, 1)
    if posting.refused:
        raise SystemExit(f"warm-up delivery refused: {dict(posting.refused)}")
    done, _ = await wait_for_count(count, warm.distinct_events, 60)
    if done < warm.distinct_events:
        raise SystemExit("the warm-up delivery was not processed within 60 s")


def all_ads() -> list[dict[str, str]]:
    """Every ad the workload's events can name, with its campaign."""
    return [
        {"ad_id": f"ad-{c}-{a}", "campaign_id": f"campaign-{c}", "name": f"Ad {a} of campaign {c}"}
        for c in range(CAMPAIGNS)
        for a in range(ADS_PER_CAMPAIGN)
    ]


async def register(http: httpx.AsyncClient, url: str, key: str, bodies: list[dict[str, Any]]) -> None:
    """POST each of ``bodies`` to ``url`` as the key's user; any refusal ends the bench."""
    for body in bodies:
        response = await http.post(url, json=body, headers={"X-API-Key": key})
        if response.status_code >= 300:
            raise SystemExit(f"POST {url} {body}: {response.status_code} {response.text[:300]}")


# --- Conveyor -------------------------------------------------------------------------------------------------


async def run_conveyor(workload: Workload, concurrency: int) -> SideResult:
    """The workload through Conveyor's API and an ``attribution.webhooks`` worker process."""
    from conveyor.auth import create_user
    from conveyor.codec import process_keys
    from conveyor.db import create_engine, migrate, session_factory
    from conveyor.logging import configure_logging
    from conveyor.settings import Settings
    from conveyor.temporal import start_ephemeral_server

    process_keys("bench")  # the worker process inherits the same payload key through the environment
    var = Path(tempfile.mkdtemp(prefix="conveyor-bench-webhooks-"))
    env = await start_ephemeral_server()
    settings = Settings(
        var_dir=var,
        temporal_address=env.client.service_client.config.target_host,
        hubspot_client_secret=SECRET,
        api_port=free_port(),
        rate_limit_per_minute=1_000_000,
        rate_limit_burst=100_000,
        log_level="warning",
    )
    configure_logging(settings)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    keys: dict[int, str] = {}
    async with sessions.begin() as session:
        for portal in (WARMUP_PORTAL, PORTAL):
            _, keys[portal] = await create_user(session, f"bench-portal-{portal}", 10**9)

    async def applied(portal: int) -> int:
        """Events applied for the portal, read from the app database (as the peer's are read from Redis), so
        counting does not load the API being measured."""
        from sqlalchemy import func, select

        from activities.attribution.models import Conversion

        async with sessions() as session:
            found = await session.scalar(
                select(func.count()).select_from(Conversion).where(Conversion.portal_id == portal)
            )
            return int(found or 0)

    worker_env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(var),
        "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONVEYOR_HUBSPOT_CLIENT_SECRET": SECRET,
        "CONVEYOR_LOG_LEVEL": "warning",
    }
    log = (var / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "-q", WEBHOOK_QUEUE], env=worker_env, stdout=log, stderr=log
    )
    try:
        api_env = {
            **worker_env,
            "CONVEYOR_API_HOST": "127.0.0.1",
            "CONVEYOR_API_PORT": str(settings.api_port),
            "CONVEYOR_RATE_LIMIT_PER_MINUTE": str(settings.rate_limit_per_minute),
            "CONVEYOR_RATE_LIMIT_BURST": str(settings.rate_limit_burst),
        }
        api_command = [sys.executable, "-m", "cli", "api"]
        async with (
            serve_process(api_command, api_env, settings.api_port, var / "api.log") as url,
            httpx.AsyncClient(timeout=30) as http,
        ):
            for portal, key in keys.items():
                await register(http, f"{url}/api/hubspot/portals", key, [{"portal_id": portal}])
                await register(http, f"{url}/api/ads", key, all_ads())  # Conveyor credits only known ads

            async def summary(portal: int) -> dict[str, Any]:
                response = await http.get(f"{url}/api/attribution/summary", headers={"X-API-Key": keys[portal]})
                response.raise_for_status()
                body: dict[str, Any] = response.json()
                return body

            async def warm_count() -> int:
                return await applied(WARMUP_PORTAL)

            async def count() -> int:
                return await applied(PORTAL)

            async def totals() -> Totals:
                body = await summary(PORTAL)
                revenue = {row["ad_id"]: int(row["revenue_cents"]) for row in body["by_ad"]}
                by_ad = {row["ad_id"]: int(row["conversions"]) for row in body["by_ad"]}
                if body["unattributed_conversions"] or body["unattributed_revenue_cents"]:
                    revenue[UNATTRIBUTED] = int(body["unattributed_revenue_cents"])
                    by_ad[UNATTRIBUTED] = int(body["unattributed_conversions"])
                return Totals(int(body["conversions"]), revenue, by_ad)

            await warm_up(url, warm_count)
            return await measure("Conveyor", url, workload, concurrency, count, totals)
    except BaseException:
        log.flush()
        tail = (var / "worker.log").read_text(errors="replace").splitlines()[-40:]
        console.print("attribution worker log (last lines):", *tail, sep="\n", markup=False, highlight=False)
        raise
    finally:
        stop_process(worker, timeout=30)
        log.close()
        await engine.dispose()
        await env.shutdown()
        shutil.rmtree(var, ignore_errors=True)


# --- Celery + Redis -------------------------------------------------------------------------------------------


def start_redis(port: int) -> subprocess.Popen[bytes]:
    """``redis-server`` on 127.0.0.1:``port`` without persistence; returns once it answers PING."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: run scripts/bench-setup.sh")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)
        finally:
            client.close()


def wait_for_celery_worker(timeout: float = 60) -> None:
    """Block until the Celery worker answers a ping."""
    from bench.celery_webhooks import celery_app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if celery_app.control.ping(timeout=0.5):
            return
    raise SystemExit(f"the Celery worker did not answer within {timeout:.0f} s")


async def run_celery(workload: Workload, concurrency: int) -> SideResult:
    """The workload through the Celery + Redis peer (:mod:`bench.celery_webhooks`)."""
    try:
        import redis

        from bench.celery_webhooks import QUEUE, configure, read_totals
    except ImportError:
        raise SystemExit("Celery or redis-py is missing: run scripts/bench-setup.sh") from None

    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port)
    logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-celery-"))
    log = (logs / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_webhooks", "worker"]
        + ["--concurrency=4", "--pool=prefork", "-Q", QUEUE, "--loglevel=warning"],
        env={**os.environ, "CONVEYOR_BENCH_REDIS_URL": redis_url},
        stdout=log,
        stderr=log,
    )
    client = redis.Redis.from_url(redis_url)
    configure(redis_url)  # this process pings the worker through the same broker
    try:
        await asyncio.to_thread(wait_for_celery_worker)

        async def warm_count() -> int:
            return (await asyncio.to_thread(read_totals, client, WARMUP_PORTAL)).processed

        async def count() -> int:
            return (await asyncio.to_thread(read_totals, client, PORTAL)).processed

        async def totals() -> Totals:
            peer = await asyncio.to_thread(read_totals, client, PORTAL)
            return Totals(sum(peer.conversions.values()), peer.revenue_cents, peer.conversions)

        peer_port = free_port()
        peer_env = {**os.environ, "CONVEYOR_BENCH_REDIS_URL": redis_url, "CONVEYOR_BENCH_SECRET": SECRET}
        peer_command = [sys.executable, "-m", "uvicorn", "--factory", "bench.celery_webhooks:peer_app_from_env"]
        peer_command += ["--host", "127.0.0.1", "--port", str(peer_port), "--log-level", "warning", "--no-access-log"]
        async with serve_process(peer_command, peer_env, peer_port, logs / "peer.log") as url:
            await warm_up(url, warm_count)
            return await measure("Celery+Redis", url, workload, concurrency, count, totals)
    finally:
        client.close()
        stop_process(worker, timeout=30)
        log.close()
        server.terminate()
        server.wait(10)
        shutil.rmtree(logs, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------------------------


def report(workload: Workload, results: list[SideResult], concurrency: int) -> int:
    """Print the table, any FAIL lines and the last line; returns the exit status."""
    posted = len(workload.bodies)
    table = Table(
        "side",
        "accepted/s",
        "processed/s",
        "p50 ms",
        "p95 ms",
        "retries",
        "lost",
        "double",
        title=(
            f"HubSpot webhooks: {posted} deliveries ({posted - workload.distinct_deliveries} duplicates), "
            f"{workload.distinct_events} distinct events, {concurrency} concurrent posts"
        ),
        caption="accepted/s: deliveries per s of posting; processed/s: distinct events, first post to last applied",
    )
    for side in results:
        lost = max(0, workload.distinct_events - side.totals.conversions)
        double = max(0, side.totals.conversions - workload.distinct_events)
        table.add_row(
            side.name,
            f"{side.accepted_per_s:.1f}",
            f"{side.processed_per_s:.1f}",
            f"{side.latency(50):.1f}",
            f"{side.latency(95):.1f}",
            str(side.posting.retries),
            str(lost),
            str(double),
        )
    console.print(table)
    status = 0
    for side in results:
        for problem in side.problems:
            console.print(f"FAIL {side.name}: {problem}")
            status = 1
    if status == 0:
        console.print("totals: every side applied each distinct event once, revenue exact to the cent")
    rates = {side.name: side.processed_per_s for side in results}
    if len(results) == 2:
        ours, theirs = results[0].processed_per_s, results[1].processed_per_s
        console.print(f"goal: ratio ≥ 1.0, p95 accept latency < 100 ms (Conveyor p95 {results[0].latency(95):.0f} ms)")
        line = (
            f"webhooks: conveyor {ours:.1f} events/s processed, celery {theirs:.1f} events/s processed, "
            f"ratio {ours / theirs:.2f}"
        )
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    else:
        for name, rate in rates.items():
            line = f"webhooks: {name} {rate:.1f} events/s processed (one side only)"
            console.print(line, soft_wrap=True, highlight=False, markup=False)
    return status


async def main(deliveries: int, duplicates: float, concurrency: int, only: str) -> int:
    """Run the chosen sides over one workload and report."""
    workload = build_workload(PORTAL, deliveries, duplicates)
    results: list[SideResult] = []
    if only in ("both", "conveyor"):
        results.append(await run_conveyor(workload, concurrency))
    if only in ("both", "celery"):
        results.append(await run_celery(workload, concurrency))
    return report(workload, results, concurrency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000, help="deliveries posted, duplicates included")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of deliveries that are re-posts")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="requests in flight at once (HubSpot's default: 10)"
    )
    parser.add_argument("--only", choices=("both", "conveyor", "celery"), default="both")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.deliveries, args.duplicates, args.concurrency, args.only)))
