"""A crawl survives its worker being killed: kill -9 mid-page, start another worker, the session completes once."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import PendingActivityState

from activities.crawl.contract import MEDIA_QUEUE, PAGES_QUEUE, TICKETS_QUEUE, VISIT_PAGE
from activities.crawl.models import CrawlBug, CrawlPage, CrawlSession, Ticket
from activities.crawl.schemas import CrawlConfig, CrawlResult
from api.caller import Caller
from api.services import crawl as service
from cli.sample_site import SampleSite
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.storage import LocalBlobStore
from tests.helpers import TEST_CHROMIUM_ARGS, assert_eventually, start_dev_server
from tests.helpers.processes import max_activity_attempt, spawn_worker, stop_all

pytestmark = [pytest.mark.process, pytest.mark.needs_chromium, pytest.mark.slow]

CRAWL_QUEUES = (PAGES_QUEUE, MEDIA_QUEUE, TICKETS_QUEUE)


async def test_crawl_completes_after_the_worker_is_killed_mid_page(sample_site: SampleSite) -> None:
    env = await start_dev_server()  # its own server: no in-process worker may pick up the retried visit
    var = Path(tempfile.mkdtemp(prefix="conveyor-crawl-durability-"))
    settings = Settings(
        var_dir=var,
        temporal_address=env.client.service_client.config.target_host,
        crawl_allowed_hosts=[f"127.0.0.1:{sample_site.port}"],  # exactly the sample site
    )
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    manifest = json.loads((Path(__file__).resolve().parents[2] / "samples/site/expected.json").read_text())
    worker_env = {
        "CONVEYOR_CHROMIUM_ARGS": json.dumps(TEST_CHROMIUM_ARGS),
        "CONVEYOR_CRAWL_ALLOWED_HOSTS": json.dumps(settings.crawl_allowed_hosts),
    }
    first = spawn_worker(settings, CRAWL_QUEUES, var / "worker1.log", worker_env)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with sessions() as session:
            user, _ = await create_user(session, "durable-crawler", 10_000)
            await session.commit()
            blobs = LocalBlobStore(Path(settings.blob_url_resolved))
            crawl = await service.start_session(
                Caller(user=user, session=session, client=env.client, blobs=blobs, settings=settings),
                CrawlConfig(
                    url=f"{sample_site.url}/",
                    slow_page_ms=manifest["slow_page_ms"],
                    max_depth=manifest["max_depth"],
                    page_retry_initial_s=1.0,  # the seed's 60 s start is covered by the workflow tests
                ),
            )
        assert crawl.workflow_id is not None
        handle = env.client.get_workflow_handle(crawl.workflow_id, result_type=CrawlResult)

        async def visiting_after_a_few_pages() -> None:
            async with sessions() as session:
                pages = await session.scalar(
                    select(func.count()).select_from(CrawlPage).where(CrawlPage.session_id == crawl.id)
                )
            assert (pages or 0) >= 3, pages
            pending = (await handle.describe()).raw_description.pending_activities
            running = [
                p
                for p in pending
                if p.activity_type.name == VISIT_PAGE and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            ]
            assert running, "no page visit is running on the worker"

        await assert_eventually(visiting_after_a_few_pages, within_s=120, interval=0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(settings, CRAWL_QUEUES, var / "worker2.log", worker_env)
        result = await asyncio.wait_for(handle.result(), timeout=240)
    finally:
        stop_all(first, second)
    assert result.status == "completed"
    assert result.bugs_found == len(manifest["bugs"])
    async with sessions() as session:
        row = await session.get(CrawlSession, crawl.id)
        assert row is not None and row.status == "completed"
        bugs = await session.scalar(select(func.count()).select_from(CrawlBug).where(CrawlBug.session_id == crawl.id))
        tickets = list(await session.scalars(select(Ticket).where(Ticket.session_id == crawl.id)))
        ticketed = await session.scalar(
            select(func.count())
            .select_from(CrawlBug)
            .where(CrawlBug.session_id == crawl.id, CrawlBug.severity.in_(["critical", "high", "medium"]))
        )
    assert bugs == len(manifest["bugs"])
    assert ticketed and len(tickets) == ticketed  # one ticket per bug at or above medium, none filed twice
    assert len({t.fingerprint for t in tickets}) == len(tickets)
    history = await handle.fetch_history()
    assert max_activity_attempt(history) >= 2  # the interrupted page really was visited again on the new worker
    await engine.dispose()
    await env.shutdown()
