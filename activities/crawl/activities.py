"""The crawl pipeline's activities: all of its I/O (browser, database, blob store, HTTP) lives here."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.crawl import contract
from activities.crawl.agent import NAVIGATION_TIMEOUT_MS, PageAgent, browser_gone
from activities.crawl.browser import BrowserPool
from activities.crawl.contract import DEFAULT_QUEUE, MEDIA_QUEUE, PAGES_QUEUE, TICKETS_QUEUE
from activities.crawl.linear import LinearClient
from activities.crawl.llm import LlmConfig
from activities.crawl.models import LIMITS_REACHED, CrawlBug, CrawlBugPage, CrawlPage, CrawlSession, Ticket
from activities.crawl.records import note_limit, record_page
from activities.crawl.schemas import (
    BugKind,
    BugRef,
    CleanupRequest,
    CleanupResult,
    CrawlLimits,
    LimitNote,
    LoadPart,
    PageReport,
    PageVisit,
    RobotsRules,
    ScreenshotRequest,
    ScreenshotResult,
    Severity,
    SpillBatch,
    SpillPart,
    StartInfo,
    StartRequest,
    TicketFailure,
    TicketRequest,
    TicketResult,
)
from activities.crawl.tickets import existing_ticket, linear_issue_id, store_ticket, ticket_description
from activities.crawl.triage import LINEAR_PRIORITY
from activities.crawl.urls import normalize_url, origin_of, parse_robots
from conveyor.errors import BadInput, ExternalServiceError, NotFound, Retryable
from conveyor.heartbeat import HEARTBEAT_INTERVAL_S, ProgressBox
from conveyor.logging import get_logger
from conveyor.netpolicy import UrlNotAllowed, guarded_transport
from conveyor.runs import RunStatus
from conveyor.settings import Settings
from conveyor.storage import BlobInfo, BlobStore

log = get_logger(__name__)

START_CHECK_TIMEOUT_S = 15.0
#: Redirects the start check follows while they stay on the start URL's host.
MAX_START_REDIRECTS = 5
ROBOTS_MAX_BYTES = 512 * 1024
#: Full-page screenshots stop at this height (a 100 000 px page would make a useless, huge image).
SCREENSHOT_MAX_HEIGHT = 8000
SCREENSHOT_STYLE = "outline: 4px solid #e5383b !important; outline-offset: 2px !important;"


def session_prefix(session_id: str) -> str:
    """Blob-store folder of a session's files."""
    return f"crawl/{session_id}"


def screenshot_key(session_id: str, fingerprint: str) -> str:
    """Blob key of a bug's screenshot."""
    return f"{session_prefix(session_id)}/screenshots/{fingerprint}.png"


def frontier_prefix(session_id: str) -> str:
    """Blob-store folder of a session's spilled frontier and visited set."""
    return f"{session_prefix(session_id)}/frontier"


def frontier_key(session_id: str, run: int, kind: str, part: int) -> str:
    """Blob key of one spilled part of a session's frontier (``kind`` frontier) or visited set (``seen``)."""
    return f"{frontier_prefix(session_id)}/run-{run}/{kind}-{part:05d}.json"


def screenshot_url(settings: Settings, session_id: str, bug_id: int) -> str:
    """API URL serving a bug's screenshot."""
    return f"{settings.api_url}/api/crawls/{session_id}/bugs/{bug_id}/screenshot"


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 0, 0


class CrawlActivities:
    """Activities of ``CrawlSessionWorkflow``; the worker gives them the DB, blob store and browser."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        blobs: BlobStore,
        settings: Settings,
        browser: BrowserPool,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._settings = settings
        self._browser = browser
        llm = (
            LlmConfig(
                base_url=settings.llm_base_url,
                api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else "",
                model=settings.llm_model,
            )
            if settings.llm_base_url
            else None
        )
        self._agent = PageAgent(browser, llm)

    async def _crawl(self, session: AsyncSession, session_id: str) -> CrawlSession:
        crawl = await session.get(CrawlSession, session_id)
        if crawl is None:
            raise NotFound(f"crawl session {session_id} not found", code="SESSION_NOT_FOUND")
        return crawl

    @activity.defn(name=contract.START_SESSION)
    async def start_session(self, request: StartRequest) -> StartInfo:
        """Mark the session starting, check that the start URL answers, and read robots.txt."""
        async with self._sessions.begin() as session:
            crawl = await self._crawl(session, request.session_id)
            crawl.set_status(RunStatus.RUNNING, stage="starting")
            crawl.workflow_id = request.workflow_id
            # A session's reached caps are those of its latest crawl (a re-run starts with none).
            crawl.config = {k: v for k, v in crawl.config.items() if k != LIMITS_REACHED}
        start = normalize_url(request.config.url)
        if start is None:
            raise BadInput(f"not an http(s) URL: {request.config.url!r}", code="BAD_URL")
        headers = {"User-Agent": self._settings.crawl_user_agent}
        # every connection (each redirect hop, robots.txt) is checked by the network policy: URL_NOT_ALLOWED
        transport = guarded_transport(self._browser.policy)
        async with httpx.AsyncClient(timeout=START_CHECK_TIMEOUT_S, headers=headers, transport=transport) as http:
            try:
                final = await _start_url_on_host(http, start)
            except httpx.ConnectError as err:
                raise BadInput(
                    f"cannot reach the start URL {start}: {_reason(err)}", code="START_URL_UNREACHABLE"
                ) from err
            except httpx.TimeoutException as err:
                raise ExternalServiceError(
                    f"the start URL {start} did not answer in time", code="START_URL_TIMEOUT"
                ) from err
            except httpx.HTTPError as err:
                raise BadInput(
                    f"cannot fetch the start URL {start}: {_reason(err)}", code="START_URL_UNREACHABLE"
                ) from err
            origin = origin_of(final)
            info = StartInfo(start_url=final, origin=origin)
            if request.config.respect_robots:
                info.robots, info.robots_status = await self._robots(http, origin)
        info.limits = self._limits(info.robots)
        return info

    def _limits(self, robots: RobotsRules | None) -> CrawlLimits:
        """The session's caps and pacing from the settings; robots.txt's Crawl-delay counts up to its cap."""
        s = self._settings
        delay = s.crawl_host_delay_s
        if robots is not None and robots.crawl_delay is not None:
            delay = max(delay, min(robots.crawl_delay, s.crawl_max_crawl_delay_s))
        return CrawlLimits(
            max_bugs=s.crawl_max_bugs,
            max_screenshots=s.crawl_max_screenshots,
            max_tickets=s.crawl_max_tickets,
            max_link_checks=s.crawl_max_link_checks,
            ticket_min_severity=Severity(s.crawl_ticket_min_severity),
            host_delay_s=delay,
        )

    async def _robots(self, http: httpx.AsyncClient, origin: str) -> tuple[Any, int | None]:
        """The robots rules for our agent (RFC 9309: none on 4xx, everything disallowed on 5xx)."""
        try:
            response = await http.get(f"{origin}/robots.txt", follow_redirects=True)
        except (httpx.HTTPError, UrlNotAllowed):  # a redirect into a denied address is not followed
            return None, None
        if response.status_code >= 500:
            return parse_robots("User-agent: *\nDisallow: /\n", self._settings.crawl_user_agent), response.status_code
        if response.status_code >= 400:
            return None, response.status_code
        text = response.content[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace")
        return parse_robots(text, self._settings.crawl_user_agent), response.status_code

    @activity.defn(name=contract.VISIT_PAGE)
    async def visit_page(self, visit: PageVisit) -> PageReport:
        """Run the page's QA graph (navigate, collect, triage, extract links) and store what it found."""
        box = ProgressBox({"stage": "queued", "url": visit.url})
        beating = asyncio.create_task(_heartbeat_every(box))
        try:
            state = await self._agent.run(visit, box)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        findings = state.get("findings", [])
        report = PageReport(
            url=visit.url,
            final_url=state.get("final_url") or visit.url,
            status=state.get("status"),
            load_ms=state.get("load_ms", 0),
            title=state.get("title", ""),
            links=state.get("links", []),
            bugs=[
                BugRef(
                    fingerprint=f.fingerprint,
                    kind=f.kind,
                    severity=f.severity,
                    title=f.title,
                    page_url=f.page_url,
                    highlight_href=str(f.evidence.get("target") or "") or None
                    if f.kind == BugKind.BROKEN_LINK
                    else None,
                )
                for f in findings
            ],
            error=state.get("error"),
            link_checks=state.get("link_checks", 0),
            link_checks_skipped=state.get("link_checks_skipped", 0),
        )
        async with self._sessions.begin() as session:
            stored = {f.fingerprint for f in await record_page(session, visit, report, findings)}
        kept = [bug for bug in report.bugs if bug.fingerprint in stored]
        report.bugs_dropped = len(report.bugs) - len(kept)
        report.bugs = kept
        return report

    @activity.defn(name=contract.UPLOAD_SCREENSHOT)
    async def upload_screenshot(self, request: ScreenshotRequest) -> ScreenshotResult:
        """Capture a full-page screenshot of the bug's page and store it in the blob store."""
        key = screenshot_key(request.session_id, request.fingerprint)
        async with self._sessions() as session:
            bug = await self._bug(session, request.session_id, request.fingerprint)
            existing = bug.screenshot_key
        if existing is not None:
            exists: bool = await asyncio.to_thread(self._blobs.exists, existing)
            if exists:  # a retry or a re-run: the picture is already stored
                info = await asyncio.to_thread(self._blobs.stat, existing)
                return ScreenshotResult(key=existing, size=info.size)
        data = await self._capture(request)
        await asyncio.to_thread(self._blobs.put_bytes, key, data, "image/png")
        async with self._sessions.begin() as session:
            bug = await self._bug(session, request.session_id, request.fingerprint)
            bug.screenshot_key = key
        width, height = _png_size(data)
        return ScreenshotResult(key=key, size=len(data), width=width, height=height)

    async def _capture(self, request: ScreenshotRequest) -> bytes:
        try:
            async with self._browser.context() as context:
                page = await context.new_page()
                with contextlib.suppress(Exception):  # an error page or a slow one is still worth a picture
                    await page.goto(request.page_url, wait_until="load", timeout=NAVIGATION_TIMEOUT_MS)
                if request.highlight_href:
                    await page.evaluate(
                        """([href, style]) => { for (const a of document.querySelectorAll('a[href]'))
                             if (a.href === href || a.href.split('#')[0] === href) a.style.cssText += style; }""",
                        [request.highlight_href, SCREENSHOT_STYLE],
                    )
                height = int(await page.evaluate("() => document.documentElement.scrollHeight") or 0)
                if height > SCREENSHOT_MAX_HEIGHT:
                    return await page.screenshot(
                        full_page=True,
                        type="png",
                        clip={"x": 0, "y": 0, "width": 1280, "height": SCREENSHOT_MAX_HEIGHT},
                    )
                return await page.screenshot(full_page=True, type="png")
        except Exception as err:
            if browser_gone(err):
                raise Retryable(f"the browser went away capturing {request.page_url}", code="BROWSER_CRASHED") from err
            raise

    async def _bug(self, session: AsyncSession, session_id: str, fingerprint: str) -> CrawlBug:
        bug: CrawlBug | None = await session.scalar(
            select(CrawlBug).where(CrawlBug.session_id == session_id, CrawlBug.fingerprint == fingerprint)
        )
        if bug is None:
            raise NotFound(f"bug {fingerprint} of session {session_id} not found", code="BUG_NOT_FOUND")
        return bug

    @activity.defn(name=contract.CREATE_TICKET)
    async def create_ticket(self, request: TicketRequest) -> TicketResult:
        """File the bug's ticket (built-in tracker, or Linear when configured); once per fingerprint."""
        async with self._sessions.begin() as session:
            found = await existing_ticket(session, request.session_id, request.fingerprint)
            if found is not None:
                return TicketResult(provider=found.provider, key=found.key, url=found.url, created=False)
            crawl = await self._crawl(session, request.session_id)
            bug = await self._bug(session, request.session_id, request.fingerprint)
            pages = list(
                await session.scalars(
                    select(CrawlBugPage.url).where(CrawlBugPage.bug_id == bug.id).order_by(CrawlBugPage.id)
                )
            )
            shot = screenshot_url(self._settings, crawl.id, bug.id) if bug.screenshot_key else None
            description = ticket_description(bug, crawl, pages, shot)
        s = self._settings
        issue = None
        provider = "builtin"
        if s.linear_api_key and s.linear_team_id:
            provider = "linear"
            client = LinearClient(s.linear_api_key.get_secret_value(), s.linear_team_id, api_url=s.linear_api_url)
            try:
                issue = await client.create_issue(
                    issue_id=linear_issue_id(request.session_id, request.fingerprint),
                    # Linear shows titles as plain text; the description, which renders, escapes the title.
                    title=" ".join(bug.title.split()),
                    description=description,
                    priority=LINEAR_PRIORITY[Severity(bug.severity)],
                )
            finally:
                await client.aclose()
        async with self._sessions.begin() as session:
            crawl = await self._crawl(session, request.session_id)
            bug = await self._bug(session, request.session_id, request.fingerprint)
            ticket, created = await store_ticket(
                session, crawl, bug, description, provider=provider, issue=issue, base_url=s.api_url
            )
            bug.ticket_error = None
            return TicketResult(provider=ticket.provider, key=ticket.key, url=ticket.url, created=created)

    @activity.defn(name=contract.RECORD_TICKET_ERROR)
    async def record_ticket_error(self, failure: TicketFailure) -> None:
        """Note on the bug why its ticket could not be filed."""
        async with self._sessions.begin() as session:
            bug = await self._bug(session, failure.session_id, failure.fingerprint)
            bug.ticket_error = f"{failure.code}: {failure.message}"[:1000]

    @activity.defn(name=contract.NOTE_LIMIT)
    async def note_limit(self, note: LimitNote) -> None:
        """Note on the session that it reached one of its caps (shown as ``limits_reached`` by the API)."""
        async with self._sessions.begin() as session:
            await note_limit(session, note.session_id, note.limit)

    @activity.defn(name=contract.SPILL_FRONTIER)
    async def spill_frontier(self, part: SpillPart) -> None:
        """Store one part of a session's frontier or visited set (the first part replaces an older spill)."""
        if part.kind == "frontier" and part.part == 0:
            await asyncio.to_thread(self._blobs.delete_prefix, frontier_prefix(part.session_id))
        batch = SpillBatch(frontier=part.frontier, seen=part.seen)
        key = frontier_key(part.session_id, part.run, part.kind, part.part)
        await asyncio.to_thread(self._blobs.put_bytes, key, batch.model_dump_json().encode(), "application/json")

    @activity.defn(name=contract.LOAD_FRONTIER)
    async def load_frontier(self, part: LoadPart) -> SpillBatch:
        """Read back one stored part of a session's frontier or visited set."""
        key = frontier_key(part.session_id, part.run, part.kind, part.part)
        data: bytes = await asyncio.to_thread(self._blobs.get_bytes, key)  # NotFound (BLOB_NOT_FOUND) if missing
        return SpillBatch.model_validate_json(data)

    @activity.defn(name=contract.CLEANUP_OLD_SESSIONS)
    async def cleanup_old_sessions(self, request: CleanupRequest) -> CleanupResult:
        """Delete sessions (with pages, bugs, tickets and screenshots) created more than the retention ago."""
        days = request.retention_days or self._settings.crawl_retention_days
        cutoff = datetime.now(UTC) - timedelta(days=days)
        result = CleanupResult()
        async with self._sessions() as session:
            old = list(await session.scalars(select(CrawlSession.id).where(CrawlSession.created_at < cutoff)))
        for session_id in old:
            activity.heartbeat({"sessions_done": result.sessions})
            files = await asyncio.to_thread(_files_under, self._blobs, session_prefix(session_id))
            await asyncio.to_thread(self._blobs.delete_prefix, session_prefix(session_id))
            result.screenshots += len(files)
            result.bytes_freed += sum(f.size for f in files)
            async with self._sessions.begin() as session:
                result.pages += await _count(session, CrawlPage, CrawlPage.session_id == session_id)
                result.bugs += await _count(session, CrawlBug, CrawlBug.session_id == session_id)
                result.tickets += await _count(session, Ticket, Ticket.session_id == session_id)
                await session.execute(delete(Ticket).where(Ticket.session_id == session_id))
                bug_ids = select(CrawlBug.id).where(CrawlBug.session_id == session_id)
                await session.execute(delete(CrawlBugPage).where(CrawlBugPage.bug_id.in_(bug_ids)))
                await session.execute(delete(CrawlBug).where(CrawlBug.session_id == session_id))
                await session.execute(delete(CrawlPage).where(CrawlPage.session_id == session_id))
                await session.execute(delete(CrawlSession).where(CrawlSession.id == session_id))
            result.sessions += 1
        log.info("old crawl sessions deleted", retention_days=days, **result.model_dump())
        return result


def _files_under(blobs: BlobStore, prefix: str) -> list[BlobInfo]:
    return list(blobs.list(prefix))


async def _count(session: AsyncSession, model: type[Any], where: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(where)) or 0)


async def _heartbeat_every(box: ProgressBox) -> None:
    while True:
        activity.heartbeat(box.get())
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)


async def _start_url_on_host(http: httpx.AsyncClient, start: str) -> str:
    """The start URL after the redirects that stay on its host (a scheme upgrade, another path).

    A redirect to another host is not adopted: the crawl keeps the start URL's origin and its page visit meets
    the redirect like any other (checked by the policy, recorded). Each hop here is checked by the transport.
    """
    url = start
    host = urlsplit(start).hostname
    for _ in range(MAX_START_REDIRECTS):
        async with http.stream("GET", url) as response:
            location = response.headers.get("location") if response.is_redirect else None
        target = normalize_url(location, url) if location else None
        if target is None or urlsplit(target).hostname != host:
            return url
        url = target
    return url


def _reason(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:200]


def crawl_activities(acts: CrawlActivities, queue: str) -> list[Any]:
    """The activities served on one of the crawl pipeline's queues."""
    by_queue: dict[str, list[Any]] = {
        PAGES_QUEUE: [
            acts.start_session,
            acts.visit_page,
            acts.note_limit,
            acts.spill_frontier,
            acts.load_frontier,
        ],
        MEDIA_QUEUE: [acts.upload_screenshot],
        TICKETS_QUEUE: [acts.create_ticket, acts.record_ticket_error],
        DEFAULT_QUEUE: [acts.cleanup_old_sessions],
    }
    return by_queue[queue]
