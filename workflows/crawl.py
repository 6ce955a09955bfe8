"""CrawlSessionWorkflow: the QA crawl of seed 000 (BugHive), one workflow per session.

The workflow owns the crawl: frontier, visited set, depth and page budgets and the URL rules (normalized
keys, same origin, robots.txt). It keeps a few page visits in flight on the ``crawl`` queue; each visit runs
the LangGraph QA agent for one page and stores what it found. Every bug fingerprint seen for the first time
is followed up once: a screenshot on the ``media`` queue, then a ticket on the ``tickets`` queue. The session
continues as new every few hundred pages, stops scheduling pages at the soft time limit (completing with
``truncated``), and keeps everything found so far when cancelled or failed.

Limits (fixed from the settings when the session starts, :class:`CrawlLimits`): bugs below the ticket severity get
no follow-up; screenshots, tickets, link checks and recorded bugs stop at per-session caps (noted on the session,
never failing it); two visits to one host are at least the host delay apart (a timer; robots.txt's Crawl-delay
counts); and a frontier or visited set too large to carry through continue-as-new waits in the blob store.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.crawl import contract
    from activities.crawl.schemas import (
        LIMIT_BUGS,
        LIMIT_LINK_CHECKS,
        LIMIT_SCREENSHOTS,
        LIMIT_TICKETS,
        BugRef,
        CleanupRequest,
        CleanupResult,
        CrawlConfig,
        CrawlLimits,
        CrawlRequest,
        CrawlResult,
        CrawlState,
        FrontierItem,
        FrontierSpill,
        LimitNote,
        LoadPart,
        PageReport,
        PageVisit,
        ScreenshotRequest,
        ScreenshotResult,
        SpillBatch,
        SpillPart,
        StartInfo,
        StartRequest,
        TicketFailure,
        TicketRequest,
        TicketResult,
    )
    from activities.crawl.triage import SEVERITY_RANK
    from activities.crawl.urls import origin_of, should_visit, url_key
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
NOTE_LIMIT = Step(contract.NOTE_LIMIT, BOOKKEEPING_TIMEOUT, BOOKKEEPING_RETRY, priority=CRAWL_PRIORITY)
FRONTIER_TIMEOUT = timedelta(seconds=60)
SPILL = Step(contract.SPILL_FRONTIER, FRONTIER_TIMEOUT, retries(5), priority=CRAWL_PRIORITY)
LOAD = Step(contract.LOAD_FRONTIER, FRONTIER_TIMEOUT, retries(5), priority=CRAWL_PRIORITY)
#: Past this many URLs (frontier plus visited set) the state continues as new without them: they wait in the
#: blob store, written and read back in batches, so the continue-as-new input stays small (~100 B a URL).
FRONTIER_INLINE_MAX = 500
#: URLs per stored part: one activity's input or result stays far below Temporal's 2 MB payload limit.
FRONTIER_BATCH = 500
#: Runs whose history lacks this marker never stored their frontier outside the payload (they replay as they ran).
FRONTIER_SPILL_PATCH = "crawl-frontier-spill"


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
        self._limits = CrawlLimits()
        self._notes: list[asyncio.Task[None]] = []
        #: Link checks handed to each visit in flight (their share of the session's budget).
        self._allotted: dict[asyncio.Task[PageReport], int] = {}
        #: When each host may be visited next (politeness delay).
        self._next_visit: dict[str, datetime] = {}

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
        if state.spill is not None:
            await self._load_spill(state, state.spill)
        self._limits = state.limits or CrawlLimits()  # sessions started before there were limits: none
        self._known = {b.fingerprint: b for b in state.bugs}
        self._report_pages(config, state)
        reason = await self._crawl(config, state)
        await self._drain_followups()
        state.bugs = list(self._known.values())
        state.tickets_filed += sum(1 for t in self._followups if t.result())
        if reason == "continue":
            state.runs += 1
            if len(state.frontier) + len(state.seen) > FRONTIER_INLINE_MAX and workflow.patched(FRONTIER_SPILL_PATCH):
                await self._spill(state)
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
            limits=info.limits,
        )

    async def _spill(self, state: CrawlState) -> None:
        """Store the frontier and visited set in parts; the state carries only where they are."""
        frontier = [state.frontier[i : i + FRONTIER_BATCH] for i in range(0, len(state.frontier), FRONTIER_BATCH)]
        seen = [state.seen[i : i + FRONTIER_BATCH] for i in range(0, len(state.seen), FRONTIER_BATCH)]
        self._report(stage="storing frontier", message=f"{len(state.frontier)} queued · {len(state.seen)} known")
        for part, items in enumerate(frontier or [[]]):  # part 0 always exists: writing it clears an older spill
            await SPILL.call(
                SpillPart(session_id=self._session_id, run=state.runs, kind="frontier", part=part, frontier=items)
            )
        for part, keys in enumerate(seen):
            await SPILL.call(SpillPart(session_id=self._session_id, run=state.runs, kind="seen", part=part, seen=keys))
        state.spill = FrontierSpill(run=state.runs, frontier_parts=max(1, len(frontier)), seen_parts=len(seen))
        state.frontier, state.seen = [], []

    async def _load_spill(self, state: CrawlState, spill: FrontierSpill) -> None:
        """Read the frontier and visited set the previous run stored."""
        for kind, parts in (("frontier", spill.frontier_parts), ("seen", spill.seen_parts)):
            for part in range(parts):
                load = LoadPart(session_id=self._session_id, run=spill.run, kind=kind, part=part)
                batch = await LOAD.run(load, SpillBatch)
                state.frontier += batch.frontier
                state.seen += batch.seen
        state.spill = None

    async def _crawl(self, config: CrawlConfig, state: CrawlState) -> str:
        """Visit pages breadth-first; returns why it stopped: exhausted, page_budget, time_limit or continue."""
        seen = set(state.seen)
        started_this_run = 0
        out_of_time = False
        while True:
            out_of_time = out_of_time or (workflow.now() - state.started_at).total_seconds() >= config.soft_limit_s
            rolling_over = started_this_run >= config.pages_per_run or workflow.info().is_continue_as_new_suggested()
            polite_wait: timedelta | None = None
            while (
                not out_of_time
                and not rolling_over
                and state.frontier
                and len(self._pages) < config.parallel_pages
                and state.pages_crawled + state.pages_failed + len(self._pages) < config.max_pages
                and self._depth_settled(state.frontier[0])
            ):
                polite_wait = self._host_wait(state.frontier[0])
                if polite_wait is not None:
                    break
                self._visit(config, state, state.frontier.pop(0))
                started_this_run += 1
                rolling_over = started_this_run >= config.pages_per_run
            if not self._pages and polite_wait is None:
                break
            waiting: list[asyncio.Task[Any]] = list(self._pages)
            timer = asyncio.ensure_future(workflow.sleep(polite_wait)) if polite_wait is not None else None
            if timer is not None:
                waiting.append(timer)
            await workflow.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if timer is not None and not timer.done():
                timer.cancel()
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

    def _host_wait(self, item: FrontierItem) -> timedelta | None:
        """How long ``item``'s host must still rest before the next visit (politeness), or None: visit now."""
        ready_at = self._next_visit.get(origin_of(item.url))
        if ready_at is None:
            return None
        wait = ready_at - workflow.now()
        return wait if wait > timedelta(0) else None

    def _link_check_share(self, config: CrawlConfig, state: CrawlState) -> int | None:
        """The link checks the next visit may make: an equal share of what is left, None without a cap."""
        budget = self._limits.max_link_checks
        if budget is None or not config.check_links:
            return None
        free = budget - state.link_checks - sum(self._allotted.values())
        return max(0, min(free, max(1, budget // config.parallel_pages)))

    def _visit(self, config: CrawlConfig, state: CrawlState, item: FrontierItem) -> None:
        self._current_url = item.url
        if self._limits.host_delay_s > 0:
            self._next_visit[origin_of(item.url)] = workflow.now() + timedelta(seconds=self._limits.host_delay_s)
        share = self._link_check_share(config, state)
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
                max_link_checks=share,
                max_bugs=self._limits.max_bugs,
            ),
            PageReport,
        )
        task = asyncio.ensure_future(handle)
        self._pages[task] = item
        if share is not None:
            self._allotted[task] = share

    def _page_done(
        self,
        config: CrawlConfig,
        state: CrawlState,
        item: FrontierItem,
        task: asyncio.Task[PageReport],
        seen: set[str],
    ) -> None:
        """Count the page, queue its new links and follow up its new bugs (a failed start page fails the run)."""
        self._allotted.pop(task, None)
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
        state.link_checks += report.link_checks
        if report.link_checks_skipped:
            self._reached(state, LIMIT_LINK_CHECKS)
        if report.bugs_dropped:
            self._reached(state, LIMIT_BUGS, noted=True)  # the visit noted it on the session already
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
                if SEVERITY_RANK[bug.severity] > SEVERITY_RANK[self._limits.ticket_min_severity]:
                    continue  # below the ticket threshold: listed in the API, no screenshot, no ticket
                screenshot = self._within(state, LIMIT_SCREENSHOTS)
                ticket = self._within(state, LIMIT_TICKETS)
                if screenshot or ticket:
                    self._followups.append(asyncio.ensure_future(self._follow_up(bug, screenshot, ticket)))

    def _within(self, state: CrawlState, limit: str) -> bool:
        """Whether one more screenshot or ticket fits the session's cap (counting it), noting the cap once hit."""
        if limit == LIMIT_SCREENSHOTS:
            cap, used = self._limits.max_screenshots, state.screenshots_taken
        else:
            cap, used = self._limits.max_tickets, state.tickets_asked
        if cap is not None and used >= cap:
            self._reached(state, limit)
            return False
        if limit == LIMIT_SCREENSHOTS:
            state.screenshots_taken += 1
        else:
            state.tickets_asked += 1
        return True

    def _reached(self, state: CrawlState, limit: str, *, noted: bool = False) -> None:
        """Remember that the session hit ``limit`` and note it on the session's row (once)."""
        if limit in state.limits_reached:
            return
        state.limits_reached.append(limit)
        workflow.logger.info("crawl session reached its %s limit", limit)
        if not noted:
            note = LimitNote(session_id=self._session_id, limit=limit)
            self._notes.append(asyncio.ensure_future(NOTE_LIMIT.call(note)))

    async def _follow_up(self, bug: BugRef, screenshot: bool = True, ticket: bool = True) -> bool:
        """Screenshot the bug's page, then file its ticket (each when within its cap); whether a ticket exists."""
        if screenshot:
            await self._screenshot(bug)
        if not ticket:
            return False
        return await self._ticket(bug)

    async def _screenshot(self, bug: BugRef) -> None:
        """Capture the bug's page; a failure is logged, never fatal."""
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

    async def _ticket(self, bug: BugRef) -> bool:
        """File the bug's ticket, or note why it could not be; whether a ticket exists afterwards."""
        session_id = self._session_id
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
        if self._notes:
            await asyncio.gather(*self._notes)

    async def _wind_down(self, end: RunEnd) -> None:
        """Stop visits and follow-ups still running and record the final status; found bugs stay stored."""
        for task in [*self._pages, *self._followups, *self._notes]:
            if not task.done():
                task.cancel()
        pending = [t for t in [*self._pages, *self._followups, *self._notes] if not t.done()]
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
