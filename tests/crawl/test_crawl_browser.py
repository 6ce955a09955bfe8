"""The page agent with a real Chromium: a crashed browser is a retryable error, and the next visit relaunches it."""

from __future__ import annotations

import asyncio
import os

import psutil
import pytest

from activities.crawl.agent import PageAgent
from activities.crawl.browser import BrowserPool
from activities.crawl.schemas import PageVisit
from cli.sample_site import SampleSite
from conveyor.errors import BadInput, ErrorKind, Retryable
from conveyor.heartbeat import ProgressBox
from conveyor.netpolicy import NetPolicy
from conveyor.settings import Settings
from tests.helpers import TEST_CHROMIUM_ARGS, assert_eventually, free_port


def _visit(url: str, origin: str, *, is_start: bool = False) -> PageVisit:
    return PageVisit(session_id="s", url=url, depth=0, origin=origin, slow_page_ms=60_000, is_start=is_start)


def _kill_chromium() -> int:
    """SIGKILL every Chromium process this test process started (what an OOM kill or a crash looks like)."""
    killed = 0
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "chrom" in child.name().lower():
                child.kill()
                killed += 1
        except psutil.NoSuchProcess:
            continue
    return killed


def _pool(url: str) -> BrowserPool:
    """A browser pool whose network policy allows exactly the test's own server."""
    return BrowserPool(Settings().chromium_path, TEST_CHROMIUM_ARGS, "ConveyorBot/0.1", policy=_allowing(url))


def _allowing(url: str) -> NetPolicy:
    """The network policy with exactly ``url``'s loopback host:port allowed (the test's own server)."""
    return NetPolicy.build(allowed_hosts=[url.removeprefix("http://").rstrip("/")])


@pytest.mark.needs_chromium
@pytest.mark.process
async def test_a_browser_crash_mid_visit_is_retryable_and_the_next_visit_relaunches(sample_site: SampleSite) -> None:
    pool = _pool(sample_site.url)
    agent = PageAgent(pool)
    try:
        first = await agent.run(_visit(f"{sample_site.url}/about.html", sample_site.url), ProgressBox())
        assert first["status"] == 200 and first["findings"] == []
        slow_page = ("GET", "/bake-schedule.html")
        asked_before = list(sample_site.requests).count(slow_page)
        slow = asyncio.create_task(
            agent.run(_visit(f"{sample_site.url}{slow_page[1]}", sample_site.url), ProgressBox())
        )

        async def navigating() -> None:
            assert list(sample_site.requests).count(slow_page) > asked_before

        # the slow page takes 2.5 s to answer once asked: the browser dies mid-navigation
        await assert_eventually(navigating, within_s=10, interval=0.02)
        assert not slow.done()
        assert _kill_chromium() > 0
        with pytest.raises(Retryable) as crash:
            await slow
        assert crash.value.code == "BROWSER_CRASHED" and crash.value.retryable
        again = await agent.run(_visit(f"{sample_site.url}/contact.html", sample_site.url), ProgressBox())
        assert again["status"] == 200
        assert pool.launches == 2
        assert pool.open_contexts == 0
    finally:
        await pool.close()


@pytest.mark.needs_chromium
@pytest.mark.process
async def test_a_browser_that_died_between_visits_is_relaunched_in_place(sample_site: SampleSite) -> None:
    pool = _pool(sample_site.url)
    agent = PageAgent(pool)
    try:
        await agent.run(_visit(f"{sample_site.url}/about.html", sample_site.url), ProgressBox())
        assert _kill_chromium() > 0
        state = await agent.run(_visit(f"{sample_site.url}/contact.html", sample_site.url), ProgressBox())
        assert state["status"] == 200
        assert pool.launches == 2
    finally:
        await pool.close()


@pytest.mark.needs_chromium
async def test_an_unreachable_start_page_is_bad_input_but_other_pages_are_recorded(sample_site: SampleSite) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    pool = BrowserPool(Settings().chromium_path, TEST_CHROMIUM_ARGS, "ConveyorBot/0.1", policy=_allowing(closed))
    agent = PageAgent(pool)
    try:
        with pytest.raises(BadInput) as refused:
            await agent.run(_visit(f"{closed}/", closed, is_start=True), ProgressBox())
        assert refused.value.code == "START_URL_UNREACHABLE" and refused.value.kind == ErrorKind.BAD_INPUT
        assert closed in refused.value.message and "ERR_CONNECTION_REFUSED" in refused.value.message
        state = await agent.run(_visit(f"{closed}/page.html", closed), ProgressBox())
        assert state["error"] == "net::ERR_CONNECTION_REFUSED" and state["links"] == []
        assert pool.open_contexts == 0
    finally:
        await pool.close()


async def test_a_missing_chromium_is_a_clear_configuration_error() -> None:
    pool = BrowserPool("/nonexistent/chromium", [], "ConveyorBot/0.1")
    with pytest.raises(BadInput) as missing:
        await PageAgent(pool).run(_visit("http://127.0.0.1:9/", "http://127.0.0.1:9"), ProgressBox())
    assert missing.value.code == "BROWSER_MISSING" and "CONVEYOR_CHROMIUM_PATH" in missing.value.message


@pytest.mark.needs_chromium
async def test_the_browser_is_recycled_after_serving_its_share_of_pages(sample_site: SampleSite) -> None:
    pool = BrowserPool(
        Settings().chromium_path,
        TEST_CHROMIUM_ARGS,
        "ConveyorBot/0.1",
        recycle_after=2,
        policy=_allowing(sample_site.url),
    )
    agent = PageAgent(pool)
    try:
        for path in ("/about.html", "/contact.html", "/about.html"):
            state = await agent.run(_visit(f"{sample_site.url}{path}", sample_site.url), ProgressBox())
            assert state["status"] == 200
        assert pool.launches == 2 and pool.served == 1
    finally:
        await pool.close()
