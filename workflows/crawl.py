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
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.crawl.activities import CrawlActivities
    from activities.crawl.schemas import (
        BugRef,
        CrawlConfig,
        CrawlRequest,
        CrawlResult,
        CrawlState,
        FrontierItem,
        PageReport,
        PageVisit,
        ScreenshotRequest,
        SessionUpdate,
        StartRequest,
        TicketFailure,
        TicketRequest,
    )
    from activities.crawl.urls import should_visit, url_key
    from conveyor.errors import NON_RETRYABLE_ERROR_TYPES, ErrorKind, failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress

TASK_QUEUE = "crawl"
MEDIA_QUEUE = "media"
TICKETS_QUEUE = "tickets"
WORKFLOW_ID_PREFIX = "crawl-"

BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
START_TIMEOUT = timedelta(seconds=60)
PAGE_TIMEOUT = timedelta(minutes=3)
PAGE_HEARTBEAT = timedelta(seconds=20)
SCREENSHOT_TIMEOUT = timedelta(minutes=2)
TICKET_TIMEOUT = timedelta(minutes=1)
#: Seed: run_crawl_session max_retries=3, retry delay 60 s, exponential backoff (initial from the config).
PAGE_MAX_ATTEMPTS = 4
PAGE_MAX_INTERVAL = timedelta(minutes=10)
#: Seed: create_linear_ticket max_retries=5, retry delay 30 s, exponential backoff.
TICKET_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=6,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
#: Seed: upload_screenshot max_retries=3 with the default delay.
SCREENSHOT_RETRY = RetryPolicy(maximum_attempts=4, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)
BOOKKEEPING_RETRY = RetryPolicy(
    maximum_attempts=5, maximum_interval=timedelta(seconds=10), non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES
)
START_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
#: Seed queue priorities: crawl high, tickets medium, media low (1 is the highest priority key).
CRAWL_PRIORITY = Priority(priority_key=1)
TICKETS_PRIORITY = Priority(priority_key=3)
MEDIA_PRIORITY = Priority(priority_key=5)


def workflow_id_for(session_id: str) -> str:
    """The workflow id of a session (deterministic: a second start is refused while one runs)."""
    return f"{WORKFLOW_ID_PREFIX}{session_id}"


def page_retry(config: CrawlConfig) -> RetryPolicy:
    """The page visits' retry policy."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=config.page_retry_initial_s),
        backoff_coefficient=2.0,
        maximum_interval=PAGE_MAX_INTERVAL,
        maximum_attempts=PAGE_MAX_ATTEMPTS,
        non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
    )


@workflow.defn(name="CrawlSessionWorkflow")
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

    async def _update(self, update: SessionUpdate) -> None:
        await workflow.execute_local_activity_method(
            CrawlActivities.update_session,
            update,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )

    @workflow.run
    async def run(self, request: CrawlRequest) -> CrawlResult:
        """Crawl until the frontier, the page budget or the time runs out; file a ticket per new bug."""
        self._session_id = request.session_id
        config = request.config
        try:
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
            await self._update(
                SessionUpdate(
                    session_id=request.session_id,
                    status="completed",
                    progress=100.0,
                    truncated=truncated,
                    stop_reason=reason,
                )
            )
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
        except (asyncio.CancelledError, ActivityError) as err:
            if is_cancelled_exception(err):
                await self._wind_down("cancelled", None, None)
                raise
            info = failure_info(err)
            await self._wind_down("failed", info.code, info.message)
            raise ApplicationError(info.message, info.code, type=info.kind.value, non_retryable=True) from err

    async def _start(self, request: CrawlRequest) -> CrawlState:
        """Check the start URL and read robots.txt; the session becomes ``running``."""
        self._report(stage="starting", message=f"checking {request.config.url}")
        info = await workflow.execute_activity_method(
            CrawlActivities.start_session,
            StartRequest(session_id=request.session_id, config=request.config, workflow_id=workflow.info().workflow_id),
            start_to_close_timeout=START_TIMEOUT,
            retry_policy=START_RETRY,
            priority=CRAWL_PRIORITY,
        )
        await self._update(SessionUpdate(session_id=request.session_id, status="running", current_url=info.start_url))
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
        handle = workflow.start_activity_method(
            CrawlActivities.visit_page,
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
            start_to_close_timeout=PAGE_TIMEOUT,
            heartbeat_timeout=PAGE_HEARTBEAT,
            retry_policy=page_retry(config),
            priority=CRAWL_PRIORITY,
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
            await workflow.execute_activity_method(
                CrawlActivities.upload_screenshot,
                ScreenshotRequest(
                    session_id=session_id,
                    fingerprint=bug.fingerprint,
                    page_url=bug.page_url,
                    highlight_href=bug.highlight_href,
                ),
                task_queue=MEDIA_QUEUE,
                start_to_close_timeout=SCREENSHOT_TIMEOUT,
                retry_policy=SCREENSHOT_RETRY,
                priority=MEDIA_PRIORITY,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            info = failure_info(err)
            workflow.logger.warning("screenshot failed for %s: %s", bug.fingerprint, info.message)
        request = TicketRequest(session_id=session_id, fingerprint=bug.fingerprint)
        try:
            await workflow.execute_activity_method(
                CrawlActivities.create_ticket,
                request,
                task_queue=TICKETS_QUEUE,
                start_to_close_timeout=TICKET_TIMEOUT,
                retry_policy=TICKET_RETRY,
                priority=TICKETS_PRIORITY,
            )
            return True
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            info = failure_info(err)
            workflow.logger.warning("ticket not filed for %s: %s (%s)", bug.fingerprint, info.message, info.code)
            try:
                await workflow.execute_activity_method(
                    CrawlActivities.record_ticket_error,
                    TicketFailure(
                        session_id=session_id, fingerprint=bug.fingerprint, code=info.code, message=info.message
                    ),
                    task_queue=TICKETS_QUEUE,
                    start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                    retry_policy=BOOKKEEPING_RETRY,
                )
            except ActivityError as note_err:
                if is_cancelled_exception(note_err):
                    raise
            return False

    async def _drain_followups(self) -> None:
        """Wait until every bug found so far has its screenshot and ticket (or a recorded failure)."""
        if self._followups:
            self._report(stage="filing tickets", message=f"{len(self._known)} bugs")
            await asyncio.gather(*self._followups)

    async def _wind_down(self, status: str, code: str | None, message: str | None) -> None:
        """Stop visits and follow-ups still running and record the final status; found bugs stay stored."""
        for task in [*self._pages, *self._followups]:
            if not task.done():
                task.cancel()
        pending = [t for t in [*self._pages, *self._followups] if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if code != "SESSION_NOT_FOUND":
            await self._update(
                SessionUpdate(
                    session_id=self._session_id,
                    status=status,
                    error_code=code,
                    error_message=message,
                    stop_reason=status,
                )
            )
        self._report(stage=status, message=message or status)


__all__ = ["CrawlSessionWorkflow", "ErrorKind", "workflow_id_for"]
