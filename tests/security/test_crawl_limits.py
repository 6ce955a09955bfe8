"""Issue 12, item 11 and part of 14: a crawl cannot be turned into an amplifier, and what it files is inert.

Per-session caps on bugs, screenshots, tickets and link checks; a frontier that never rides through
continue-as-new; a per-host politeness delay that honours robots.txt's Crawl-delay (capped); accessibility
findings grouped by rule and page with tickets only from a severity up; Markdown-escaped ticket evidence; and
``same_origin: false`` scoped to the registrable domain. Crawls reach only loopback sample sites.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from markdown_it import MarkdownIt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.crawl import contract
from activities.crawl.agent import MAX_LINKS
from activities.crawl.models import CrawlBug, CrawlPage, CrawlSession
from activities.crawl.records import record_page
from activities.crawl.schemas import (
    BugKind,
    CrawlConfig,
    CrawlRequest,
    CrawlResult,
    Finding,
    PageReport,
    PageVisit,
    Severity,
)
from activities.crawl.tickets import escape_markdown, ticket_description
from activities.crawl.urls import should_visit
from cli.sample_site import SampleSite, start_sample_site
from conveyor.auth import create_user
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.stack import Stack, run_stack, stack_settings

TERMINAL = {"completed", "failed", "cancelled"}
#: The caps of this module's stack: small, so the sample site (11 planted bugs) passes each of them.
MAX_BUGS = 8
MAX_SCREENSHOTS = 1
MAX_TICKETS = 2
MAX_LINK_CHECKS = 3
MAX_CRAWL_DELAY_S = 1.0
#: Links on the big site's start page: a frontier of thousands of URLs.
BIG_FRONTIER = 3000
#: The continue-as-new input stays below this however large the frontier (~150 KB before, for 1000 + 1000 URLs).
CONTINUE_AS_NEW_INPUT_MAX = 32 * 1024
IMAGES_WITHOUT_ALT = 33

_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body>{body}</body></html>'
)


@dataclass
class Sites:
    """The loopback sites of this module, each served from a folder built for one test."""

    big: SampleSite
    polite: SampleSite
    gallery: SampleSite

    def stop(self) -> None:
        """Stop serving them all."""
        for site in (self.big, self.polite, self.gallery):
            site.stop()


def _write(root: Path, path: str, text: str) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    """A page linking to thousands of pages, a site asking for a long Crawl-delay, a page of images without alt."""
    big = tmp_path_factory.mktemp("big")
    links = "".join(f'<a href="/p/{n}.html">{n}</a> ' for n in range(BIG_FRONTIER))
    _write(big, "index.html", _PAGE.format(title="Big", body=links))
    for n in range(BIG_FRONTIER):
        _write(big, f"p/{n}.html", _PAGE.format(title=f"Page {n}", body="<p>ok</p>"))
    polite = tmp_path_factory.mktemp("polite")
    _write(polite, "robots.txt", "User-agent: *\nCrawl-delay: 30\nDisallow: /private/\n")
    nav = '<a href="/a.html">a</a> <a href="/b.html">b</a> <a href="/c.html">c</a>'
    _write(polite, "index.html", _PAGE.format(title="Polite", body=nav))
    for name in "abc":
        _write(polite, f"{name}.html", _PAGE.format(title=name, body="<p>ok</p>"))
    gallery = tmp_path_factory.mktemp("gallery")
    images = "".join(f'<img src="/img/{n}.svg" width="10" height="10">' for n in range(IMAGES_WITHOUT_ALT))
    _write(gallery, "index.html", _PAGE.format(title="Gallery", body=images))
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    for n in range(IMAGES_WITHOUT_ALT):
        _write(gallery, f"img/{n}.svg", svg)
    served = Sites(start_sample_site(root=big), start_sample_site(root=polite), start_sample_site(root=gallery))
    yield served
    served.stop()


@pytest.fixture(scope="module")
async def limited(
    sites: Sites, sample_site: SampleSite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """A stack of its own (own dev server, so no other stack's workers take its tasks) with small crawl caps."""
    server: WorkflowEnvironment = await start_dev_server()
    hosts = tuple(f"127.0.0.1:{site.port}" for site in (sample_site, sites.big, sites.polite, sites.gallery))
    settings = stack_settings(
        tmp_path_factory.mktemp("var"),
        server.client.service_client.config.target_host,
        allowed_hosts=hosts,
        crawl_max_bugs=MAX_BUGS,
        crawl_max_screenshots=MAX_SCREENSHOTS,
        crawl_max_tickets=MAX_TICKETS,
        crawl_max_link_checks=MAX_LINK_CHECKS,
        crawl_host_delay_s=0.05,
        crawl_max_crawl_delay_s=MAX_CRAWL_DELAY_S,
    )
    try:
        async with run_stack(server.client, settings) as stack:
            yield stack
    finally:
        await server.shutdown()


async def _crawl(stack: Stack, url: str, **config: Any) -> tuple[httpx.AsyncClient, dict[str, Any]]:
    """Start a crawl as a fresh user and wait until it finished; the user's client and the final session."""
    _, key = await stack.new_user()
    http = stack.http(key)
    resp = await http.post("/api/crawls", json={"url": url, **config})
    assert resp.status_code == 202, resp.text
    session_id = resp.json()["session_id"]

    async def finished() -> dict[str, Any]:
        crawl = dict((await http.get(f"/api/crawls/{session_id}")).json())
        assert crawl["status"] in TERMINAL, crawl["status"]
        return crawl

    crawl = await assert_eventually(finished, within_s=300, interval=0.2)
    assert crawl["status"] == "completed", crawl
    return http, crawl


async def _bugs(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    resp = await http.get(f"/api/crawls/{session_id}/bugs", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


async def _tickets(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    resp = await http.get("/api/tickets", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


async def _runs(client: Client, workflow_id: str) -> list[list[Any]]:
    """The history events of every run of a continue-as-new chain, first run first."""
    runs: list[list[Any]] = []
    run_id: str | None = None
    while True:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        events = [event async for event in handle.fetch_history_events()]
        runs.insert(0, events)
        previous = events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            return runs
        run_id = previous


# ------------------------------------------------------------------------------------------- caps
@pytest.mark.stack
@pytest.mark.needs_chromium
async def test_bugs_screenshots_tickets_and_link_checks_stop_at_their_caps(
    limited: Stack, sample_site: SampleSite
) -> None:
    """The sample site has 11 bugs and dozens of links: each kind of work stops at its cap, the crawl completes."""
    heads_before = sum(1 for method, _ in sample_site.requests if method == "HEAD")
    http, crawl = await _crawl(limited, sample_site.url + "/", max_pages=50)
    heads = sum(1 for method, _ in sample_site.requests if method == "HEAD") - heads_before
    bugs = await _bugs(http, crawl["session_id"])
    tickets = await _tickets(http)
    await http.aclose()
    assert len(bugs) == MAX_BUGS
    assert sum(1 for bug in bugs if bug["screenshot_url"]) <= MAX_SCREENSHOTS
    assert len(tickets) == MAX_TICKETS
    assert heads <= MAX_LINK_CHECKS
    assert set(crawl["limits_reached"]) == {"bugs", "screenshots", "tickets", "link_checks"}
    assert crawl["pages_crawled"] > 10  # the caps stopped the extra work, not the crawl


# ------------------------------------------------------------------------------------------- frontier
@pytest.mark.stack
@pytest.mark.needs_chromium
async def test_a_frontier_of_thousands_of_urls_stays_out_of_the_continue_as_new_input(
    limited: Stack, sites: Sites
) -> None:
    """3000 queued URLs continue as new through the blob store: every run's input stays small, no page twice."""
    # The API keeps the seed's 200 pages a run; the workflow's own config rolls over every 10 to keep this short.
    user_id, _ = await limited.new_user()
    config = CrawlConfig(url=sites.big.url + "/", max_pages=25, max_depth=1, pages_per_run=10, check_links=False)
    session_id = str(uuid.uuid4())
    async with limited.sessions.begin() as session:
        session.add(CrawlSession(id=session_id, user_id=user_id, url=config.url, config=config.model_dump(mode="json")))
    workflow_id = contract.workflow_id_for(session_id)
    handle = await limited.client.start_workflow(
        contract.SESSION_WORKFLOW,
        CrawlRequest(session_id=session_id, user_id=user_id, config=config),
        id=workflow_id,
        task_queue=contract.PAGES_QUEUE,
        result_type=CrawlResult,
    )
    result = await handle.result()
    runs = await _runs(limited.client, workflow_id)
    assert len(runs) >= 3, "the session should continue as new twice"
    for events in runs:
        started = events[0].workflow_execution_started_event_attributes
        size = sum(len(payload.data) for payload in started.input.payloads)
        assert size < CONTINUE_AS_NEW_INPUT_MAX, size
    assert result.pages_crawled == 25 and result.frontier_left == MAX_LINKS - 24  # a page gives 1000 links at most
    async with limited.sessions() as session:
        visited = list(await session.scalars(select(CrawlPage.url_key).where(CrawlPage.session_id == session_id)))
    assert len(visited) == 25  # one row per page: none visited twice across the runs


# ------------------------------------------------------------------------------------------- politeness
@pytest.mark.stack
@pytest.mark.needs_chromium
async def test_visits_to_one_host_wait_for_its_crawl_delay_capped_by_the_setting(limited: Stack, sites: Sites) -> None:
    """robots.txt asks for 30 s, the setting caps it at 1 s: each visit starts at least 1 s after the last."""
    http, crawl = await _crawl(limited, sites.polite.url + "/", max_pages=4, check_links=False)
    await http.aclose()
    (events,) = await _runs(limited.client, crawl["workflow_id"])
    timers = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    assert timers and max(timers) <= timedelta(seconds=MAX_CRAWL_DELAY_S)
    # When the workflow decided each visit: its workflow task's start (what ``workflow.now()`` read then).
    by_id = {e.event_id: e for e in events}
    visits = []
    for e in events:
        if e.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attributes = e.activity_task_scheduled_event_attributes
        if attributes.activity_type.name != "crawl.visit_page":
            continue
        completed = by_id[attributes.workflow_task_completed_event_id].workflow_task_completed_event_attributes
        visits.append(by_id[completed.started_event_id].event_time.ToDatetime())
    assert len(visits) == 4
    # Lower bounds only: a Temporal timer never fires early, however busy the machine is.
    gaps = [later - earlier for earlier, later in zip(visits, visits[1:], strict=False)]
    assert min(gaps) >= timedelta(seconds=MAX_CRAWL_DELAY_S), gaps


# ------------------------------------------------------------------------------------------- grouping, severity
@pytest.mark.stack
@pytest.mark.needs_chromium
async def test_images_without_alt_on_a_page_are_one_finding_without_a_ticket(limited: Stack, sites: Sites) -> None:
    """33 images without alt: one low finding listing them, visible in the API, with no screenshot or ticket."""
    http, crawl = await _crawl(limited, sites.gallery.url + "/", max_pages=1, check_links=False)
    bugs = await _bugs(http, crawl["session_id"])
    tickets = await _tickets(http)
    await http.aclose()
    (bug,) = [b for b in bugs if b["kind"] == "missing_alt"]
    assert bug["severity"] == "low"
    assert len(bug["evidence"]["elements"]) == IMAGES_WITHOUT_ALT
    assert bug["ticket"] is None and bug["screenshot_url"] is None
    assert tickets == []


# ------------------------------------------------------------------------------------------- markdown
HOSTILE = "# Owned ![pixel](https://evil.example/p.png) [click me](https://evil.example/x) <img src=x> www.evil.example"


def _rendered_kinds(markdown: str) -> set[str]:
    """The kinds of Markdown tokens (inline ones included) that ``markdown`` renders to."""
    kinds: set[str] = set()
    for token in MarkdownIt("commonmark").parse(markdown):
        kinds.add(token.type)
        kinds.update(child.type for child in token.children or [])
    return kinds


def test_ticket_evidence_from_the_page_renders_no_link_image_heading_or_html() -> None:
    """Title, description, page URLs and evidence taken from a hostile page render as literal text or code."""
    bug = CrawlBug(
        id=1,
        fingerprint="0123456789abcdef",
        kind="console_error",
        severity="medium",
        title=HOSTILE,
        description=f"{HOSTILE}\n\n> quoted\n\n[another](javascript:alert(1))",
        evidence={"message": f"`` {HOSTILE} ``", "target": "https://shop.example/[x](https://evil.example)"},
    )
    crawl = CrawlSession(id="s-1", url="https://shop.example/")
    text = ticket_description(bug, crawl, ["https://shop.example/a?q=![i](https://evil.example/i.png)"], None)
    kinds = _rendered_kinds(text)
    assert not kinds & {"link_open", "image", "heading_open", "html_inline", "html_block", "blockquote_open"}, text
    for token in MarkdownIt("commonmark").parse(text):
        for child in token.children or []:
            if child.type == "text":
                assert "://" not in child.content and "www." not in child.content, child.content  # no bare URL
    assert not _rendered_kinds(escape_markdown(HOSTILE)) & {"link_open", "image", "heading_open", "html_inline"}


# ------------------------------------------------------------------------------------------- scope
@pytest.mark.parametrize(
    ("start", "url"),
    [
        ("https://a.github.io/", "https://b.github.io/"),
        ("https://x.co.uk/", "https://y.co.uk/"),
        ("https://www.x.co.uk/", "https://y.co.uk/"),
        ("https://x.example.com/", "https://example.org/"),
    ],
)
def test_same_origin_false_never_roams_a_public_suffix(start: str, url: str) -> None:
    """Off the start origin, a crawl stays on the start host's registrable domain (Public Suffix List)."""
    assert not should_visit(url, start, same_origin=False, robots=None)


def test_same_origin_false_roams_the_registrable_domain() -> None:
    """Sibling hosts of one registrable domain are one site."""
    assert should_visit("https://docs.x.co.uk/", "https://www.x.co.uk/", same_origin=False, robots=None)
    assert should_visit("https://a.github.io/blog", "https://a.github.io/", same_origin=False, robots=None)


async def test_concurrent_visits_of_one_session_cannot_both_pass_the_bug_cap(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Eight visits storing new bugs at once, on SQLite: the session ends with exactly its cap of bugs."""
    async with sessions.begin() as session:
        user, _ = await create_user(session, f"cap-{uuid.uuid4().hex[:6]}", 0)
        crawl = CrawlSession(id=str(uuid.uuid4()), user_id=user.id, url="http://127.0.0.1:1/", config={})
        session.add(crawl)

    async def visit(n: int) -> None:
        url = f"http://127.0.0.1:1/page-{n}"
        findings = [
            Finding(
                fingerprint=f"{n:04d}{i:012d}",
                kind=BugKind.CONSOLE_ERROR,
                severity=Severity.MEDIUM,
                title=f"error {n}.{i}",
                description="",
                page_url=url,
            )
            for i in range(2)
        ]
        visit = PageVisit(session_id=crawl.id, url=url, depth=1, origin="http://127.0.0.1:1", max_bugs=5)
        async with sessions.begin() as session:
            await record_page(session, visit, PageReport(url=url, final_url=url, status=200, load_ms=1), findings)

    await asyncio.gather(*(visit(n) for n in range(8)))
    async with sessions() as session:
        stored = list(await session.scalars(select(CrawlBug).where(CrawlBug.session_id == crawl.id)))
        row = await session.get(CrawlSession, crawl.id)
    assert len(stored) == 5
    assert row is not None and "bugs" in row.config.get("limits_reached", [])
