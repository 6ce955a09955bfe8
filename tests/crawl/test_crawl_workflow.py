"""CrawlSessionWorkflow with its activities replaced by fakes that serve a synthetic site.

The fakes are registered under the real activity names (the session's bookkeeping under the kernel's
``conveyor.record_run``, which gets one :class:`~conveyor.runs.RunUpdate` per change). The workflow and its
pages-queue activities run on a fresh task queue; the follow-ups go to the fixed ``crawl.media`` and
``crawl.tickets`` queues, which get their own workers (started and stopped with each test, sharing the test's
:class:`Fakes`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.crawl import contract
from activities.crawl.schemas import (
    BugKind,
    BugRef,
    CrawlConfig,
    CrawlRequest,
    CrawlResult,
    PageReport,
    PageVisit,
    RobotsRules,
    ScreenshotRequest,
    ScreenshotResult,
    Severity,
    StartInfo,
    StartRequest,
    TicketFailure,
    TicketRequest,
    TicketResult,
)
from activities.crawl.urls import url_key
from conveyor.runs import RunUpdate
from tests.helpers import DATA_CONVERTER, assert_eventually, record_run_fake, replayer
from tests.helpers import test_server_path as temporal_test_server  # aliased: pytest would collect test_*
from workflows.crawl import MEDIA_QUEUE, TICKETS_QUEUE, CrawlSessionWorkflow, workflow_id_for

HOST = "http://shop.test"


@dataclass
class Page:
    """One page of the fake site."""

    links: list[str] = field(default_factory=list)
    """Hrefs as the page has them: paths (resolved against the site) or absolute URLs."""
    bugs: list[str] = field(default_factory=list)
    """Fingerprints of the bugs the page shows."""
    delay: float = 0.0
    """Real seconds a visit takes."""
    error: ApplicationError | None = None
    """Raised by every visit."""
    fail_attempts: int = 0
    """The first attempts fail with a retryable error."""
    hold: bool = False
    """The visit waits (heartbeating) until ``Fakes.release`` is set or it is cancelled."""


def tree_site(n: int, bugs: dict[int, list[str]] | None = None) -> dict[str, Page]:
    """A binary tree of ``n`` pages: page i links to pages 2i+1 and 2i+2 (and back to the home page)."""

    def path(i: int) -> str:
        return "/" if i == 0 else f"/p{i}"

    return {
        path(i): Page(
            links=[path(c) for c in (2 * i + 1, 2 * i + 2) if c < n] + ["/"],
            bugs=(bugs or {}).get(i, []),
        )
        for i in range(n)
    }


def key(url: str) -> str:
    """Path and query of a page's identity (what the fakes and the assertions compare)."""
    parts = urlsplit(url_key(url))
    host = "" if f"{parts.scheme}://{parts.netloc}" == HOST else f"{parts.scheme}://{parts.netloc}"
    return host + parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Fakes:
    """Fake crawl activities over a synthetic site; they record what the workflow asked for."""

    site: dict[str, Page] = field(default_factory=lambda: tree_site(7))
    robots: RobotsRules | None = None
    start_error: Exception | None = None
    ticket_errors: dict[str, Exception] = field(default_factory=dict)
    """Fingerprint → what creating its ticket raises."""
    ticket_fail_attempts: dict[str, int] = field(default_factory=dict)
    """Fingerprint → how many first attempts to create its ticket fail with a retryable error."""
    ticket_hold: set[str] = field(default_factory=set)
    """Fingerprints whose ticket call waits until ``release`` is set or it is cancelled."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    starts: list[StartRequest] = field(default_factory=list)
    visits: list[PageVisit] = field(default_factory=list)
    """Every visit attempt, in call order."""
    attempts: list[tuple[str, int]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    """Keys of the pages whose visit returned, in order."""
    updates: list[RunUpdate] = field(default_factory=list)
    """Every run update the workflow recorded, in order."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    """("screenshot" | "ticket" | "ticket_error", fingerprint) in call order."""
    screenshots: list[ScreenshotRequest] = field(default_factory=list)
    tickets_created: list[str] = field(default_factory=list)
    ticket_failures: list[TicketFailure] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pages = {key(urljoin(HOST, p)): page for p, page in self.site.items()}

    def set_site(self, site: dict[str, Page]) -> None:
        self.site = site
        self.__post_init__()

    def visited(self) -> list[str]:
        """Keys of the pages visited (first attempts only), in order."""
        return [key(v.url) for v, (_, attempt) in zip(self.visits, self.attempts, strict=True) if attempt == 1]

    def count(self, kind: str, fingerprint: str | None = None) -> int:
        return sum(1 for k, fp in self.calls if k == kind and fingerprint in (None, fp))

    def crawl_activities(self) -> list[object]:
        fakes = self

        @activity.defn(name=contract.START_SESSION)
        async def start_session(request: StartRequest) -> StartInfo:
            fakes.starts.append(request)
            if fakes.start_error is not None:
                raise fakes.start_error
            return StartInfo(start_url=f"{HOST}/", origin=HOST, robots=fakes.robots, robots_status=200)

        def record(update: RunUpdate) -> None:
            assert update.table == contract.SESSION_TABLE, update
            fakes.updates.append(update)

        record_run = record_run_fake(record)

        @activity.defn(name=contract.VISIT_PAGE)
        async def visit_page(visit: PageVisit) -> PageReport:
            attempt = activity.info().attempt
            fakes.visits.append(visit)
            fakes.attempts.append((key(visit.url), attempt))
            page = fakes._pages.get(key(visit.url))
            if page is None:
                fakes.done.append(key(visit.url))
                return PageReport(url=visit.url, final_url=visit.url, status=404, load_ms=1)
            if page.error is not None:
                raise page.error
            if attempt <= page.fail_attempts:
                raise ConnectionResetError("connection reset by peer")
            if page.delay:
                await asyncio.sleep(page.delay)
            while page.hold and not fakes.release.is_set():
                activity.heartbeat()
                await asyncio.sleep(0.05)
            fakes.done.append(key(visit.url))
            return PageReport(
                url=visit.url,
                final_url=visit.url,
                status=200,
                load_ms=int(page.delay * 1000),
                links=[urljoin(visit.url, href) for href in page.links],
                bugs=[
                    BugRef(
                        fingerprint=fp,
                        kind=BugKind.BROKEN_LINK,
                        severity=Severity.HIGH,
                        title=f"bug {fp}",
                        page_url=visit.url,
                        highlight_href=f"{HOST}/missing-{fp}",
                    )
                    for fp in page.bugs
                ],
            )

        return [start_session, record_run, visit_page]

    def media_activities(self) -> list[object]:
        fakes = self

        @activity.defn(name=contract.UPLOAD_SCREENSHOT)
        async def upload_screenshot(request: ScreenshotRequest) -> ScreenshotResult:
            fakes.calls.append(("screenshot", request.fingerprint))
            fakes.screenshots.append(request)
            return ScreenshotResult(key=f"crawl/{request.session_id}/{request.fingerprint}.png", size=10)

        return [upload_screenshot]

    def ticket_activities(self) -> list[object]:
        fakes = self

        @activity.defn(name=contract.CREATE_TICKET)
        async def create_ticket(request: TicketRequest) -> TicketResult:
            fakes.calls.append(("ticket", request.fingerprint))
            if request.fingerprint in fakes.ticket_errors:
                raise fakes.ticket_errors[request.fingerprint]
            if activity.info().attempt <= fakes.ticket_fail_attempts.get(request.fingerprint, 0):
                raise ApplicationError("Linear is down", "LINEAR_DOWN", type="ExternalService")
            while request.fingerprint in fakes.ticket_hold and not fakes.release.is_set():
                await asyncio.sleep(0.05)
            fakes.tickets_created.append(request.fingerprint)
            n = len(fakes.tickets_created)
            return TicketResult(provider="builtin", key=f"BUG-{n}", url=f"{HOST}/tickets/BUG-{n}", created=True)

        @activity.defn(name=contract.RECORD_TICKET_ERROR)
        async def record_ticket_error(failure: TicketFailure) -> None:
            fakes.calls.append(("ticket_error", failure.fingerprint))
            fakes.ticket_failures.append(failure)

        return [create_ticket, record_ticket_error]


@dataclass
class Crawler:
    """Starts sessions crawling the fake site on the workers of :func:`crawl_workers`."""

    client: Client
    task_queue: str
    handles: list[WorkflowHandle[CrawlSessionWorkflow, CrawlResult]] = field(default_factory=list)

    async def start(self, **config: object) -> WorkflowHandle[CrawlSessionWorkflow, CrawlResult]:
        """Start a session on the fake site's home page with these config changes."""
        session_id = str(uuid.uuid4())
        handle = await self.client.start_workflow(
            CrawlSessionWorkflow.run,
            CrawlRequest(session_id=session_id, user_id=1, config=CrawlConfig(url=f"{HOST}/", **config)),
            id=workflow_id_for(session_id),
            task_queue=self.task_queue,
        )
        self.handles.append(handle)
        return handle

    async def stop_leftovers(self) -> None:
        """Terminate sessions still running (a failed test's), so none outlives its fakes."""
        for handle in self.handles:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


@asynccontextmanager
async def crawl_workers(client: Client, fakes: Fakes) -> AsyncIterator[Crawler]:
    """Workers for the workflow (a fresh queue), ``crawl.media`` and ``crawl.tickets``, all serving ``fakes``."""
    queue = f"tq-{uuid.uuid4()}"
    workers = [
        Worker(client, task_queue=queue, workflows=[CrawlSessionWorkflow], activities=fakes.crawl_activities()),
        Worker(client, task_queue=MEDIA_QUEUE, activities=fakes.media_activities()),
        Worker(client, task_queue=TICKETS_QUEUE, activities=fakes.ticket_activities()),
    ]
    crawler = Crawler(client, queue)
    async with AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        try:
            yield crawler
        finally:
            await crawler.stop_leftovers()
            fakes.release.set()  # nothing may stay parked in a fake while the workers shut down


@pytest.fixture
def fakes() -> Fakes:
    """The test's fakes (tests change the site and the failures before starting a crawl)."""
    return Fakes()


@pytest.fixture
async def crawler(client: Client, fakes: Fakes) -> AsyncIterator[Crawler]:
    """The three workers, running for the test with its ``fakes``."""
    async with crawl_workers(client, fakes) as started:
        yield started


# ------------------------------------------------------------------------------------------- the crawl itself
async def test_bfs_visits_each_allowed_page_once_within_depth(fakes: Fakes, crawler: Crawler) -> None:
    fakes.robots = RobotsRules(disallow=["/private/"], allow=["/private/open"])
    fakes.set_site(
        {
            "/": Page(
                links=[
                    "/a",
                    "/b",
                    "/b#reviews",  # fragment
                    "/b/",  # trailing slash
                    "/c?y=2&x=1",
                    "/c?x=1&y=2",  # query order
                    "/",
                    "http://other.test/x",  # another host
                    "http://blog.shop.test/",  # another origin
                    "https://shop.test/",  # another scheme
                    "mailto:bakery@shop.test",
                    "/private/secret",  # robots.txt
                    "/private/open.html",  # allowed by the longer Allow rule
                ]
            ),
            "/a": Page(links=["/a1", "/a2", "/", "/b"]),
            "/b": Page(links=["/b1", "/a#top"]),
            "/c?x=1&y=2": Page(links=["/c1"]),
            "/private/open.html": Page(),
            "/a1": Page(links=["/deep"]),  # depth 2 = max_depth: its links are not followed
            "/a2": Page(links=["/a2/"]),
            "/b1": Page(links=["/private/secret"]),
            "/c1": Page(),
            "/deep": Page(),
            "/private/secret": Page(),
        }
    )
    result = await (await crawler.start(max_depth=2)).result()

    expected = {"/", "/a", "/b", "/c?x=1&y=2", "/private/open.html", "/a1", "/a2", "/b1", "/c1"}
    visited = fakes.visited()
    assert sorted(visited) == sorted(expected)  # each exactly once, nothing else
    assert visited[0] == "/"
    depth = {key(v.url): v.depth for v in fakes.visits}
    assert depth == {p: 0 if p == "/" else 2 if p in {"/a1", "/a2", "/b1", "/c1"} else 1 for p in expected}
    assert [key(v.url) for v in fakes.visits if v.is_start] == ["/"]
    assert result.status == "completed" and result.stop_reason == "exhausted" and not result.truncated
    assert result.pages_crawled == len(expected) and result.pages_failed == 0 and result.frontier_left == 0
    assert [(u.status, u.stage) for u in fakes.updates if u.status] == [
        ("running", "crawling"),
        ("completed", "exhausted"),
    ]
    assert fakes.updates[0].fields["current_url"] == f"{HOST}/"
    assert {u.id for u in fakes.updates} == {fakes.starts[0].session_id}


async def test_page_budget_stops_with_frontier_left(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(tree_site(31))
    result = await (await crawler.start(max_pages=5, parallel_pages=3, max_depth=10)).result()

    assert len(fakes.visits) == 5  # no visit is started beyond the budget, even with 3 in flight
    assert len(set(fakes.visited())) == 5
    assert result.pages_crawled == 5 and result.stop_reason == "page_budget" and not result.truncated
    assert result.frontier_left > 0
    assert fakes.updates[-1].status == "completed" and fakes.updates[-1].fields["stop_reason"] == "page_budget"


async def test_page_depth_is_the_shortest_link_distance_when_visits_finish_out_of_order(
    fakes: Fakes, crawler: Crawler
) -> None:
    # /x is 2 links from home through /a and 3 through /b -> /b1; /y (linked from /x only) is at depth 3.
    fakes.set_site(
        {
            "/": Page(links=["/a", "/b"]),
            "/a": Page(links=["/x"], hold=True),  # still loading while the other branch goes deeper
            "/b": Page(links=["/b1"]),
            "/b1": Page(links=["/x"]),
            "/x": Page(links=["/y"]),
            "/y": Page(),
        }
    )
    handle = await crawler.start(max_depth=3, parallel_pages=2)

    async def deeper_branch_done() -> None:
        assert "/b1" in fakes.done

    await assert_eventually(deeper_branch_done)
    # /x, queued at depth 3 through /b1, waits for /a (depth 1), which may still find a shorter path to it
    assert "/x" not in fakes.visited()
    fakes.release.set()
    await handle.result()
    assert "/y" in fakes.visited()


# ------------------------------------------------------------------------------------------- bugs and follow-ups
async def test_each_bug_fingerprint_gets_one_screenshot_then_one_ticket(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(
        {
            "/": Page(links=["/a", "/b"], bugs=["X"]),
            "/a": Page(bugs=["Y", "X"]),
            "/b": Page(bugs=["X", "Y", "Z"]),
        }
    )
    result = await (await crawler.start()).result()

    for fp in ("X", "Y", "Z"):
        assert fakes.count("screenshot", fp) == 1 and fakes.count("ticket", fp) == 1, fakes.calls
        assert fakes.calls.index(("screenshot", fp)) < fakes.calls.index(("ticket", fp))
    # the screenshot is of the page where the bug was first seen, with its broken link outlined
    shots = {s.fingerprint: s for s in fakes.screenshots}
    assert key(shots["X"].page_url) == "/" and shots["X"].highlight_href == f"{HOST}/missing-X"
    assert result.bugs_found == 3 and result.tickets_filed == 3
    assert fakes.ticket_failures == []


async def test_failed_ticket_is_recorded_and_the_session_completes(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site({"/": Page(links=["/a"], bugs=["X"]), "/a": Page(bugs=["Y"])})
    fakes.ticket_errors["Y"] = ApplicationError(
        "Linear rejected the issue", "LINEAR_REJECTED", type="BadInput", non_retryable=True
    )
    result = await (await crawler.start()).result()

    assert fakes.count("ticket", "Y") == 1  # permanent: not retried
    assert [(f.fingerprint, f.code) for f in fakes.ticket_failures] == [("Y", "LINEAR_REJECTED")]
    assert "Linear rejected" in fakes.ticket_failures[0].message
    assert fakes.calls.index(("ticket", "Y")) < fakes.calls.index(("ticket_error", "Y"))
    assert result.status == "completed" and result.bugs_found == 2 and result.tickets_filed == 1
    assert fakes.tickets_created == ["X"]


@pytest.fixture
async def unlocked_client(request: pytest.FixtureRequest, env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """A client of a time-skipping server of its own (with ``--workflow-environment local``: the shared one).

    The shared test server stops skipping time for good once a workflow closes with an activity still running
    (temporalio/sdk-java#1138), which every cancellation test does; a test that waits out real retry delays
    (tens of seconds) gets a server where time still skips.
    """
    if request.config.getoption("--workflow-environment") == "local":
        yield env.client
        return
    own = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=DATA_CONVERTER
    )
    try:
        yield own.client
    finally:
        await own.shutdown()


async def test_transient_ticket_failure_is_retried_and_filed_once(unlocked_client: Client) -> None:
    fakes = Fakes(site={"/": Page(bugs=["X"])})
    fakes.ticket_fail_attempts["X"] = 2  # Linear down twice: the 30 s and 60 s retry delays are skipped
    async with crawl_workers(unlocked_client, fakes) as crawler:
        result = await (await crawler.start()).result()

    assert fakes.count("ticket", "X") == 3 and fakes.count("screenshot", "X") == 1
    assert fakes.tickets_created == ["X"] and fakes.ticket_failures == []
    assert result.tickets_filed == 1


# ------------------------------------------------------------------------------------------- continue-as-new
async def test_long_crawl_continues_as_new_without_revisiting_pages(fakes: Fakes, crawler: Crawler) -> None:
    # the same bug on the first and the last pages (different runs), a new one in a later run
    fakes.set_site(tree_site(35, bugs={1: ["X"], 2: ["Y"], 30: ["X"], 33: ["Z"]}))
    handle = await crawler.start(pages_per_run=10, max_pages=100, max_depth=10)
    result = await handle.result()

    assert result.status == "completed" and result.stop_reason == "exhausted"
    assert result.pages_crawled == 35 and result.frontier_left == 0
    visited = fakes.visited()
    assert len(visited) == 35 and len(set(visited)) == 35  # no page visited twice across runs
    assert len(fakes.starts) == 1  # the start URL is checked once, by the first run
    assert [u.status for u in fakes.updates if u.status] == ["running", "completed"]
    for fp in ("X", "Y", "Z"):
        assert fakes.count("ticket", fp) == 1, fakes.calls  # bugs known from earlier runs are not filed again
    assert result.bugs_found == 3

    runs = 0
    run_id: str | None = handle.first_execution_run_id
    while run_id:
        history = await crawler.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        runs += 1
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            assert last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
            break
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    assert runs == 4  # 10 + 10 + 10 + 5 pages


async def test_tickets_filed_counts_tickets_of_every_run(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(tree_site(25, bugs={1: ["X"], 22: ["Y"]}))
    result = await (await crawler.start(pages_per_run=10, max_pages=100, max_depth=10)).result()
    assert fakes.tickets_created == ["X", "Y"]
    assert result.tickets_filed == 2


# ------------------------------------------------------------------------------------------- limits and failures
async def test_soft_time_limit_completes_truncated(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(tree_site(31))
    for page in fakes.site.values():
        page.delay = 0.3
    result = await (await crawler.start(soft_limit_s=0.8, max_depth=10)).result()

    assert result.status == "completed" and result.truncated and result.stop_reason == "time_limit"
    assert 1 <= result.pages_crawled < 31 and result.frontier_left > 0
    assert len(fakes.visits) == result.pages_crawled  # visits in flight at the limit still finish and count
    final = fakes.updates[-1]
    assert final.status == "completed" and final.fields["truncated"] is True
    assert final.fields["stop_reason"] == "time_limit"


async def test_failing_page_is_counted_and_the_session_completes(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(tree_site(7))
    fakes.site["/p1"].error = ApplicationError(
        "page crashed the agent", "PAGE_BROKEN", type="BadInput", non_retryable=True
    )
    result = await (await crawler.start()).result()

    assert fakes.visited().count("/p1") == 1  # a permanent failure is not retried
    assert sorted(fakes.visited()) == ["/", "/p1", "/p2", "/p5", "/p6"]  # /p1's links are never known
    assert result.status == "completed" and result.pages_failed == 1 and result.pages_crawled == 4
    assert fakes.updates[-1].status == "completed" and fakes.updates[-1].error is None


async def test_retryable_page_failure_is_retried_and_counted_once(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(tree_site(3, bugs={1: ["X"]}))
    fakes.site["/p1"].fail_attempts = 1
    result = await (await crawler.start(page_retry_initial_s=0.1)).result()

    assert [a for a in fakes.attempts if a[0] == "/p1"] == [("/p1", 1), ("/p1", 2)]
    assert result.pages_crawled == 3 and result.pages_failed == 0
    assert fakes.count("ticket", "X") == 1 and result.tickets_filed == 1


async def test_unreachable_start_page_fails_the_session(fakes: Fakes, crawler: Crawler) -> None:
    fakes.site["/"].error = ApplicationError(
        "cannot reach the start URL", "START_URL_UNREACHABLE", type="BadInput", non_retryable=True
    )
    handle = await crawler.start()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BadInput"
    assert cause.details[0] == "START_URL_UNREACHABLE"
    assert len(fakes.visits) == 1  # not retried
    final = fakes.updates[-1]
    assert final.status == "failed" and final.error is not None
    assert (final.error.kind, final.error.code) == ("BadInput", "START_URL_UNREACHABLE")
    assert "cannot reach" in final.error.message


async def test_start_session_failure_fails_the_session(fakes: Fakes, crawler: Crawler) -> None:
    fakes.start_error = ApplicationError("not an http(s) URL", "BAD_URL", type="BadInput", non_retryable=True)
    handle = await crawler.start()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.details[0] == "BAD_URL"
    assert len(fakes.starts) == 1 and fakes.visits == []
    assert [(u.status, u.error and u.error.code) for u in fakes.updates] == [("failed", "BAD_URL")]


# ------------------------------------------------------------------------------------------- cancel and progress
async def test_cancel_mid_crawl_keeps_finished_follow_ups_and_marks_cancelled(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(
        {
            "/": Page(links=["/b", "/hold"], bugs=["X"]),
            "/b": Page(bugs=["Y"]),
            "/hold": Page(hold=True),
        }
    )
    fakes.ticket_hold.add("Y")  # Y's ticket is still being filed when the cancel comes
    handle = await crawler.start()

    async def mid_crawl() -> None:
        assert "X" in fakes.tickets_created
        assert ("ticket", "Y") in fakes.calls
        assert "/hold" in fakes.visited()

    await assert_eventually(mid_crawl)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()

    assert isinstance(info.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    final = fakes.updates[-1]
    assert final.status == "cancelled" and final.error is None and final.fields["stop_reason"] == "cancelled"
    assert not any(u.status == "completed" for u in fakes.updates)
    # X was fully followed up before the cancel; Y got its screenshot and its ticket call was cancelled, not failed
    assert fakes.calls.index(("screenshot", "X")) < fakes.calls.index(("ticket", "X"))
    assert fakes.calls.index(("screenshot", "Y")) < fakes.calls.index(("ticket", "Y"))
    assert fakes.ticket_failures == [] and "Y" not in fakes.tickets_created
    history = await handle.fetch_history()
    cancel_requested = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
    ]
    assert len(cancel_requested) == 2  # the held page visit and Y's ticket


async def test_progress_query_reports_pages_and_bugs_while_crawling(fakes: Fakes, crawler: Crawler) -> None:
    fakes.set_site(
        {
            "/": Page(links=["/a", "/hold"], bugs=["X"]),
            "/a": Page(bugs=["Y"]),
            "/hold": Page(hold=True),
        }
    )
    handle = await crawler.start(max_pages=20)

    async def two_pages_done() -> None:
        progress = await handle.query(CrawlSessionWorkflow.progress)
        assert progress.stage == "crawling"
        assert progress.done == 2, progress
        assert progress.total == 20 and progress.percent == 10
        assert progress.message.startswith("2 bugs"), progress.message

    await assert_eventually(two_pages_done)
    fakes.release.set()
    result = await handle.result()
    final = await handle.query(CrawlSessionWorkflow.progress)
    assert final.stage == "completed" and final.percent == 100 and final.done == result.pages_crawled == 3


async def test_fresh_crawl_histories_replay(client: Client) -> None:
    histories = []
    # bugs on several pages (one repeated), a failing page, and enough pages to continue as new once
    site = tree_site(14, bugs={0: ["X"], 3: ["Y", "X"], 12: ["Z"]})
    site["/p5"] = Page(links=["/p11", "/p12"], bugs=["W"])
    site["/p6"].fail_attempts = 9  # fails every attempt
    fakes = Fakes(site=site)
    async with crawl_workers(client, fakes) as crawler:
        done = await crawler.start(pages_per_run=10, page_retry_initial_s=0.1, max_depth=5)
        result = await done.result()
        assert result.pages_failed == 1 and result.bugs_found == 4
        run_id = done.first_execution_run_id
        while run_id:  # every run of the chain: the first ends continuing as new
            history = await client.get_workflow_handle(done.id, run_id=run_id).fetch_history()
            histories.append(history)
            run_id = history.events[-1].workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        assert len(histories) == 2

    fakes = Fakes(site={"/": Page(links=["/a", "/hold"], bugs=["X"]), "/a": Page(bugs=["Y"]), "/hold": Page(hold=True)})
    async with crawl_workers(client, fakes) as crawler:
        cancelled = await crawler.start()

        async def holding() -> None:
            assert "/hold" in fakes.visited() and "/a" in fakes.done

        await assert_eventually(holding)
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        histories.append(await cancelled.fetch_history())
    for history in histories:
        replayed = await replayer().replay_workflow(history)
        assert replayed.replay_failure is None
