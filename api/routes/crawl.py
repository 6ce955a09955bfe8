"""Crawl sessions over HTTP: start, watch, list bugs and pages, download screenshots, cancel, re-run (seed 000)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from temporalio.client import Client

from activities.crawl.models import TERMINAL_STATUSES, CrawlPage, CrawlSession, Ticket
from activities.crawl.schemas import CrawlConfig
from api.deps import BlobDep, CurrentUser, SessionDep, SettingsDep, TemporalDep
from api.services import crawl as service
from api.services.workflows import query_progress
from conveyor.errors import NotFound
from conveyor.progress import Progress
from conveyor.settings import Settings

router = APIRouter(prefix="/api", tags=["crawl"])


class CrawlCreate(BaseModel):
    """What to crawl."""

    url: str = Field(description="Start URL (http or https).")
    max_pages: int = Field(50, ge=1, le=1000, description="Page budget.")
    max_depth: int = Field(3, ge=0, le=10, description="Links followed from the start page (0: only the start page).")
    same_origin: bool = Field(True, description="Stay on the start URL's origin (else: its host and subdomains).")
    respect_robots: bool = Field(True, description="Obey robots.txt.")
    slow_page_ms: int = Field(3000, ge=100, le=120_000, description="Pages loading slower than this are bugs.")
    check_links: bool = Field(True, description="Check every internal link on each page.")


class CrawlStarted(BaseModel):
    """A session was queued."""

    session_id: str
    workflow_id: str
    status: str
    workflow_url: str


class TicketOut(BaseModel):
    """A filed ticket."""

    key: str
    provider: str
    url: str
    title: str
    severity: str
    status: str
    session_id: str
    fingerprint: str
    created_at: datetime
    description: str | None = None


class CrawlOut(BaseModel):
    """A session as its owner sees it."""

    session_id: str
    url: str
    status: str
    config: dict[str, Any]
    pages_crawled: int
    bugs_found: int
    current_url: str | None
    progress: float
    live: Progress | None
    truncated: bool
    stop_reason: str | None
    workflow_id: str | None
    workflow_url: str | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class CrawlPageList(BaseModel):
    """One page of sessions."""

    items: list[CrawlOut]
    total: int
    limit: int
    offset: int


class BugOut(BaseModel):
    """A bug: what, how bad, where, the evidence, its screenshot and ticket."""

    id: int
    fingerprint: str
    kind: str
    severity: str
    title: str
    description: str
    page: str
    pages: list[str]
    occurrences: int
    evidence: dict[str, Any]
    screenshot_url: str | None
    ticket: TicketOut | None
    ticket_error: str | None
    created_at: datetime


class BugList(BaseModel):
    """One page of a session's bugs."""

    items: list[BugOut]
    total: int
    limit: int
    offset: int


class PageOut(BaseModel):
    """A visited page."""

    url: str
    depth: int
    http_status: int | None
    load_ms: int
    title: str
    links: int
    bugs: int
    error: str | None
    visited_at: datetime


class PageList(BaseModel):
    """One page of visited pages."""

    items: list[PageOut]
    total: int
    limit: int
    offset: int


class TicketList(BaseModel):
    """One page of tickets."""

    items: list[TicketOut]
    total: int
    limit: int
    offset: int


def ticket_out(ticket: Ticket, *, full: bool = False) -> TicketOut:
    """The public form of a ticket."""
    return TicketOut(
        key=ticket.key,
        provider=ticket.provider,
        url=ticket.url,
        title=ticket.title,
        severity=ticket.severity,
        status=ticket.status,
        session_id=ticket.session_id,
        fingerprint=ticket.fingerprint,
        created_at=ticket.created_at,
        description=ticket.description if full else None,
    )


def crawl_out(crawl: CrawlSession, settings: Settings, live: Progress | None = None) -> CrawlOut:
    """The public form of a session; ``live`` is the running workflow's progress answer."""
    return CrawlOut(
        session_id=crawl.id,
        url=crawl.url,
        status=crawl.status,
        config=crawl.config,
        pages_crawled=crawl.pages_crawled,
        bugs_found=crawl.bugs_found,
        current_url=crawl.current_url,
        progress=live.percent if live is not None and crawl.status not in TERMINAL_STATUSES else crawl.progress,
        live=live,
        truncated=crawl.truncated,
        stop_reason=crawl.stop_reason,
        workflow_id=crawl.workflow_id,
        workflow_url=settings.workflow_ui_url(crawl.workflow_id) if crawl.workflow_id else None,
        error_code=crawl.error_code,
        error_message=crawl.error_message,
        created_at=crawl.created_at,
        updated_at=crawl.updated_at,
        started_at=crawl.started_at,
        completed_at=crawl.completed_at,
    )


def _started(crawl: CrawlSession, settings: Settings) -> CrawlStarted:
    assert crawl.workflow_id is not None
    return CrawlStarted(
        session_id=crawl.id,
        workflow_id=crawl.workflow_id,
        status=crawl.status,
        workflow_url=settings.workflow_ui_url(crawl.workflow_id),
    )


async def _live(client: Client, crawl: CrawlSession) -> Progress | None:
    if crawl.status in TERMINAL_STATUSES or crawl.workflow_id is None:
        return None
    return await query_progress(client.get_workflow_handle(crawl.workflow_id))


@router.post("/crawls", response_model=CrawlStarted, status_code=202)
async def start_crawl(
    body: CrawlCreate, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> CrawlStarted:
    """Queue a crawl session; answers at once with the session and workflow ids."""
    crawl = await service.start_session(session, client, user, CrawlConfig(**body.model_dump()))
    return _started(crawl, settings)


@router.get("/crawls", response_model=CrawlPageList)
async def list_crawls(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: str | None = None,
) -> CrawlPageList:
    """Your sessions, newest first."""
    rows, total = await service.list_sessions(session, user, limit=limit, offset=offset, status=status)
    return CrawlPageList(items=[crawl_out(c, settings) for c in rows], total=total, limit=limit, offset=offset)


@router.get("/crawls/{session_id}", response_model=CrawlOut)
async def get_crawl(
    session_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> CrawlOut:
    """Status, pages crawled, bugs found, the current URL and live progress of one of your sessions."""
    crawl = await service.get_session(session, user, session_id)
    crawl = await service.reconcile(session, client, crawl)
    return crawl_out(crawl, settings, await _live(client, crawl))


@router.get("/crawls/{session_id}/bugs", response_model=BugList)
async def list_bugs(
    session_id: str,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    kind: str | None = None,
    severity: str | None = None,
) -> BugList:
    """The session's bugs, most severe first, each with pages, evidence, screenshot URL and ticket."""
    crawl = await service.get_session(session, user, session_id)
    views, total = await service.list_bugs(session, crawl, limit=limit, offset=offset, kind=kind, severity=severity)
    base = f"{settings.api_url}/api/crawls/{crawl.id}/bugs"
    items = [
        BugOut(
            id=v.bug.id,
            fingerprint=v.bug.fingerprint,
            kind=v.bug.kind,
            severity=v.bug.severity,
            title=v.bug.title,
            description=v.bug.description,
            page=v.bug.page_url,
            pages=v.pages,
            occurrences=len(v.pages),
            evidence=v.bug.evidence,
            screenshot_url=f"{base}/{v.bug.id}/screenshot" if v.bug.screenshot_key else None,
            ticket=ticket_out(v.ticket) if v.ticket is not None else None,
            ticket_error=v.bug.ticket_error,
            created_at=v.bug.created_at,
        )
        for v in views
    ]
    return BugList(items=items, total=total, limit=limit, offset=offset)


@router.get("/crawls/{session_id}/bugs/{bug_id}/screenshot", response_class=Response)
async def bug_screenshot(
    session_id: str, bug_id: int, user: CurrentUser, session: SessionDep, blobs: BlobDep
) -> Response:
    """The full-page screenshot (PNG) of the page where the bug was first seen."""
    crawl = await service.get_session(session, user, session_id)
    bug = await service.get_bug(session, crawl, bug_id)
    if not bug.screenshot_key:
        raise NotFound(f"bug {bug_id} has no screenshot", code="SCREENSHOT_NOT_FOUND")
    local = blobs.local_path(bug.screenshot_key)
    if local is not None:
        return FileResponse(local, media_type="image/png")
    return StreamingResponse(blobs.iter_chunks(bug.screenshot_key), media_type="image/png")


@router.get("/crawls/{session_id}/pages", response_model=PageList)
async def list_pages(
    session_id: str,
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PageList:
    """The pages the session visited, in visit order."""
    crawl = await service.get_session(session, user, session_id)
    rows, total = await service.list_pages(session, crawl, limit=limit, offset=offset)
    return PageList(items=[_page_out(p) for p in rows], total=total, limit=limit, offset=offset)


def _page_out(page: CrawlPage) -> PageOut:
    return PageOut(
        url=page.url,
        depth=page.depth,
        http_status=page.http_status,
        load_ms=page.load_ms,
        title=page.title,
        links=page.links,
        bugs=page.bugs,
        error=page.error,
        visited_at=page.visited_at,
    )


@router.post("/crawls/{session_id}/cancel", response_model=CrawlOut, status_code=202)
async def cancel_crawl(
    session_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> CrawlOut:
    """Cancel one of your sessions; bugs found so far are kept."""
    crawl = await service.cancel_session(session, client, user, session_id)
    return crawl_out(crawl, settings)


@router.post("/crawls/{session_id}/rerun", response_model=CrawlStarted, status_code=202)
async def rerun_crawl(
    session_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> CrawlStarted:
    """Crawl a finished session again; known bugs merge by fingerprint and keep their tickets."""
    crawl = await service.rerun_session(session, client, user, session_id)
    return _started(crawl, settings)


@router.get("/tickets", response_model=TicketList)
async def list_tickets(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TicketList:
    """Your tickets in the built-in tracker (and references to Linear issues), newest first."""
    rows, total = await service.list_tickets(session, user, limit=limit, offset=offset)
    return TicketList(items=[ticket_out(t) for t in rows], total=total, limit=limit, offset=offset)


@router.get("/tickets/{key}", response_model=TicketOut)
async def get_ticket(key: str, user: CurrentUser, session: SessionDep) -> TicketOut:
    """One ticket with its full description."""
    return ticket_out(await service.get_ticket(session, user, key), full=True)
