"""CrawlSessionWorkflow: the QA crawl of seed 000 (BugHive), one workflow per session.

The workflow owns the crawl: frontier, visited set, depth and page budgets and the URL rules (normalized
keys, same origin, robots.txt). It keeps a few page visits in flight on the ``crawl`` queue; each visit runs
the LangGraph QA agent for one page and stores what it found. Every bug fingerprint seen for the first time
is followed up once: a screenshot on the ``media`` queue, then a ticket on the ``tickets`` queue. The session
continues as new every few hundred pages, stops scheduling pages at the soft time limit (completing with
``truncated``), and keeps everything found so far when cancelled or failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.crawl import contract
    from activities.crawl.schemas import (
        BugRef,
        CleanupRequest,
        CleanupResult,
        CrawlConfig,
        CrawlRequest,
        CrawlResult,
        CrawlState,
        FrontierItem,
        PageReport,
        PageVisit,
        ScreenshotRequest,
        ScreenshotResult,
        StartInfo,
        StartRequest,
        TicketFailure,
        TicketRequest,
        TicketResult,
    )
    from activities.crawl.urls import should_visit, url_key
    from conveyor import runs
    from conveyor.errors import ErrorKind, failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress
    from conveyor.runs import BOOKKEEPING_RETRY, BOOKKEEPING_TIMEOUT, RunEnd, RunError, RunStatus, RunUpdate
    from conveyor.steps import Step, retries

TASK_QUEUE = contract.PAGES_QUEUE
SESSION = contract.SESSION_TABLE
MEDIA_QUEUE = contract.MEDIA_QUEUE
TICKETS_QUEUE = contract.TICKETS_QUEUE

START_TIMEOUT = timedelta(seconds=60)
PAGE_TIMEOUT = timedelta(minutes=3)
PAGE_HEARTBEAT = timedelta(seconds=20)
SCREENSHOT_TIMEOUT = timedelta(minutes=2)
TICKET_TIMEOUT = timedelta(minutes=1)
#: Seed: run_crawl_session max_retries=3, retry delay 60 s, exponential backoff (initial from the config).
PAGE_MAX_ATTEMPTS = 4
PAGE_MAX_INTERVAL = timedelta(minutes=10)
#: Seed: create_linear_ticket max_retries=5, retry delay 30 s, exponential backoff.
TICKET_RETRY = retries(6, first=timedelta(seconds=30), most=timedelta(minutes=10))
#: Seed: upload_screenshot max_retries=3 with the default delay.
SCREENSHOT_RETRY = retries(4)
START_RETRY = retries(3, first=timedelta(seconds=2))
#: Seed queue priorities: crawl high, tickets medium, media low (1 is the highest priority key).
CRAWL_PRIORITY = Priority(priority_key=1)
TICKETS_PRIORITY = Priority(priority_key=3)
MEDIA_PRIORITY = Priority(priority_key=5)
START = Step(contract.START_SESSION, START_TIMEOUT, START_RETRY, priority=CRAWL_PRIORITY)
#: The retry policy comes from the session's config (:func:`page_retry`).
VISIT = Step(contract.VISIT_PAGE, PAGE_TIMEOUT, RetryPolicy(), heartbeat=PAGE_HEARTBEAT, priority=CRAWL_PRIORITY)
SCREENSHOT = Step(
    contract.UPLOAD_SCREENSHOT, SCREENSHOT_TIMEOUT, SCREENSHOT_RETRY, queue=MEDIA_QUEUE, priority=MEDIA_PRIORITY
)
TICKET = Step(contract.CREATE_TICKET, TICKET_TIMEOUT, TICKET_RETRY, queue=TICKETS_QUEUE, priority=TICKETS_PRIORITY)
TICKET_ERROR = Step(contract.RECORD_TICKET_ERROR, BOOKKEEPING_TIMEOUT, BOOKKEEPING_RETRY, queue=TICKETS_QUEUE)


workflow_id_for = contract.workflow_id_for


def page_retry(config: CrawlConfig) -> RetryPolicy:
    """The page visits' retry policy."""
    return retries(PAGE_MAX_ATTEMPTS, first=timedelta(seconds=config.page_retry_initial_s), most=PAGE_MAX_INTERVAL)


@workflow.defn(name=contract.SESSION_WORKFLOW)
class CrawlSessionWorkflow:
    """Crawls one site for bugs; answers ``progress``; cancellation keeps what was found."""

    def __init__(self) -> None:
        self._progress = Progress(stage="queued")
        self._session_id = ""
        self._known: dict[str, BugRef] = {}
        self._followups: list[asyncio.Task[bool]] = []
        self._pages: dict[asyncio.Task[PageReport], FrontierItem] = {}
        self._current_url = ""

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Where the crawl is: pages done of the budget, bugs found, the page being visited."""
        return self._progress

    def _report(self, **changes: object) -> None:
        self._progress = self._progress.advance(workflow.now(), **changes)

    def _report_pages(self, config: CrawlConfig, state: CrawlState) -> None:
        self._report(
            stage="crawling",
            done=state.pages_crawled,
            total=config.max_pages,
            percent=100.0 * state.pages_crawled / config.max_pages,
            message=f"{len(self._known)} bugs · {self._current_url}",
        )

    async def _record(self, status: RunStatus, *, error: RunError | None = None, **fields: Any) -> None:
        """Record the session's status (its error when it failed) and columns on its row."""
        update = RunUpdate.of(SESSION, self._session_id, status=status, error=error, **fields)
        await runs.record(update, legacy=contract.LEGACY_UPDATE_SESSION)

    @workflow.run
    async def run(self, request: CrawlRequest) -> CrawlResult:
        """Crawl until the frontier, the page budget or the time runs out; file a ticket per new bug."""
        self._session_id = request.session_id
        return await runs.guarded(self._session(request), self._wind_down)

    async def _session(self, request: CrawlRequest) -> CrawlResult:
        config = request.config
        state = request.state or await self._start(request)
        self._known = {b.fingerprint: b for b in state.bugs}
        self._report_pages(config, state)
        reason = await self._crawl(config, state)
        await self._drain_followups()
        state.bugs = list(self._known.values())
        state.tickets_filed += sum(1 for t in self._followups if t.result())
        if reason == "continue":
            state.runs += 1
            workflow.continue_as_new(
                CrawlRequest(session_id=request.session_id, user_id=request.user_id, config=config, state=state)
            )
        truncated = reason == "time_limit"
        await self._record(RunStatus.COMPLETED, stage=reason, truncated=truncated, stop_reason=reason)
        self._report(
            stage="completed",
            percent=100.0,
            done=state.pages_crawled,
            message=f"{len(self._known)} bugs · {reason}",
        )
        return CrawlResult(
            session_id=request.session_id,
            status="completed",
            pages_crawled=state.pages_crawled,
            pages_failed=state.pages_failed,
            bugs_found=len(self._known),
            tickets_filed=state.tickets_filed,
            truncated=truncated,
            stop_reason=reason,
            frontier_left=len(state.frontier),
        )

    async def _start(self, request: CrawlRequest) -> CrawlState:
        """Check the start URL and read robots.txt; the session becomes ``running``."""
        self._report(stage="starting", message=f"checking {request.config.url}")
        workflow_id = workflow.info().workflow_id
        start = StartRequest(session_id=request.session_id, config=request.config, workflow_id=workflow_id)
        info = await START.run(start, StartInfo)
        self._session_id = request.session_id
        await self._record(RunStatus.RUNNING, stage="crawling", current_url=info.start_url)
        return CrawlState(
            started_at=workflow.now(),
            origin=info.origin,
            start_url=info.start_url,
            robots=info.robots,
            frontier=[FrontierItem(url=info.start_url, depth=0)],
            seen=[url_key(info.start_url)],
        )

    async def _crawl(self, config: CrawlConfig, state: CrawlState) -> str:
        """Visit pages breadth-first; returns why it stopped: exhausted, page_budget, time_limit or continue."""
        seen = set(state.seen)
        started_this_run = 0
        out_of_time = False
        while True:
            out_of_time = out_of_time or (workflow.now() - state.started_at).total_seconds() >= config.soft_limit_s
            rolling_over = started_this_run >= config.pages_per_run or workflow.info().is_continue_as_new_suggested()
            while (
                not out_of_time
                and not rolling_over
                and state.frontier
                and len(self._pages) < config.parallel_pages
                and state.pages_crawled + state.pages_failed + len(self._pages) < config.max_pages
                and self._depth_settled(state.frontier[0])
            ):
                self._visit(config, state, state.frontier.pop(0))
                started_this_run += 1
                rolling_over = started_this_run >= config.pages_per_run
            if not self._pages:
                break
            await workflow.wait(list(self._pages), return_when=asyncio.FIRST_COMPLETED)
            for task in [t for t in self._pages if t.done()]:
                self._page_done(config, state, self._pages.pop(task), task, seen)
            self._report_pages(config, state)
        state.seen = sorted(seen)
        if not state.frontier:
            return "exhausted"
        if out_of_time:
            return "time_limit"
        if state.pages_crawled + state.pages_failed >= config.max_pages:
            return "page_budget"
        return "continue"

    def _depth_settled(self, item: FrontierItem) -> bool:
        """Whether ``item``'s depth is final: no page two or more levels above it is still being visited.

        A page still in flight at depth d may link to pages at d + 1, so a page queued at d + 2 or deeper
        waits for it; otherwise a shorter path found later would come too late and the depth budget would cut
        pages that are within it.
        """
        return all(queued.depth >= item.depth - 1 for queued in self._pages.values())

    def _visit(self, config: CrawlConfig, state: CrawlState, item: FrontierItem) -> None:
        self._current_url = item.url
        handle = replace(VISIT, retry=page_retry(config)).start(
            PageVisit(
                session_id=self._session_id,
                url=item.url,
                depth=item.depth,
                origin=state.origin,
                same_origin=config.same_origin,
                robots=state.robots,
                slow_page_ms=config.slow_page_ms,
                check_links=config.check_links,
                is_start=item.depth == 0 and item.url == state.start_url,
                referrer=item.referrer,
            ),
            PageReport,
        )
        self._pages[asyncio.ensure_future(handle)] = item

    def _page_done(
        self,
        config: CrawlConfig,
        state: CrawlState,
        item: FrontierItem,
        task: asyncio.Task[PageReport],
        seen: set[str],
    ) -> None:
        """Count the page, queue its new links and follow up its new bugs (a failed start page fails the run)."""
        try:
            report = task.result()
        except ActivityError as err:
            if is_cancelled_exception(err) or (item.depth == 0 and item.url == state.start_url):
                raise
            info = failure_info(err)
            workflow.logger.warning("page visit failed: %s (%s: %s)", item.url, info.code, info.message)
            state.pages_failed += 1
            return
        state.pages_crawled += 1
        seen.add(url_key(report.final_url))
        if item.depth < config.max_depth:
            queued = {url_key(f.url): f for f in state.frontier}
            shortened = False
            for link in report.links:
                key = url_key(link)
                if key in queued and queued[key].depth > item.depth + 1:
                    queued[key].depth = item.depth + 1  # a shorter path to a page not visited yet
                    shortened = True
                if key in seen or not should_visit(
                    link, state.origin, same_origin=config.same_origin, robots=state.robots
                ):
                    continue
                seen.add(key)
                queued[key] = FrontierItem(url=link, depth=item.depth + 1, referrer=item.url)
                state.frontier.append(queued[key])
            if shortened:
                state.frontier.sort(key=lambda f: f.depth)  # stable: breadth-first order within a depth
        for bug in report.bugs:
            if bug.fingerprint not in self._known:
                self._known[bug.fingerprint] = bug
                self._followups.append(asyncio.ensure_future(self._follow_up(bug)))

    async def _follow_up(self, bug: BugRef) -> bool:
        """Screenshot the bug's page, then file its ticket; returns whether a ticket exists afterwards."""
        session_id = self._session_id
        try:
            await SCREENSHOT.run(
                ScreenshotRequest(
                    session_id=session_id,
                    fingerprint=bug.fingerprint,
                    page_url=bug.page_url,
                    highlight_href=bug.highlight_href,
                ),
                ScreenshotResult,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            info = failure_info(err)
            workflow.logger.warning("screenshot failed for %s: %s", bug.fingerprint, info.message)
        request = TicketRequest(session_id=session_id, fingerprint=bug.fingerprint)
        try:
            await TICKET.run(request, TicketResult)
            return True
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            info = failure_info(err)
            workflow.logger.warning("ticket not filed for %s: %s (%s)", bug.fingerprint, info.message, info.code)
            try:
                failure = TicketFailure(
                    session_id=session_id, fingerprint=bug.fingerprint, code=info.code, message=info.message
                )
                await TICKET_ERROR.call(failure)
            except ActivityError as note_err:
                if is_cancelled_exception(note_err):
                    raise
            return False

    async def _drain_followups(self) -> None:
        """Wait until every bug found so far has its screenshot and ticket (or a recorded failure)."""
        if self._followups:
            self._report(stage="filing tickets", message=f"{len(self._known)} bugs")
            await asyncio.gather(*self._followups)

    async def _wind_down(self, end: RunEnd) -> None:
        """Stop visits and follow-ups still running and record the final status; found bugs stay stored."""
        for task in [*self._pages, *self._followups]:
            if not task.done():
                task.cancel()
        pending = [t for t in [*self._pages, *self._followups] if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if end.error is None or end.error.code != "SESSION_NOT_FOUND":
            await self._record(end.status, error=end.error, stop_reason=end.status.value)
        self._report(stage=end.status.value, message=end.message if end.error else end.status.value)


CLEANUP = Step(
    contract.CLEANUP_OLD_SESSIONS,
    timedelta(minutes=30),
    retries(3),
    heartbeat=timedelta(seconds=60),
)


@workflow.defn(name=contract.CLEANUP_WORKFLOW)
class CleanupCrawlSessionsWorkflow:
    """Seed 000 ``cleanup_old_sessions``: deletes old crawl sessions, their bugs, tickets and screenshots."""

    @workflow.run
    async def run(self, request: CleanupRequest) -> CleanupResult:
        """Clean up and report the counts removed."""
        return await CLEANUP.run(request, CleanupResult)


__all__ = ["CleanupCrawlSessionsWorkflow", "CrawlSessionWorkflow", "ErrorKind", "workflow_id_for"]
