"""Crawl sessions over HTTP: start, watch, list bugs and pages, download screenshots, cancel, re-run (seed 000)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client

from activities.crawl.models import CrawlSession, Ticket
from activities.crawl.schemas import CrawlConfig
from api.blobs import serve_blob
from api.deps import CallerDep, CurrentUser, SessionDep
from api.pages import Page, PageParams, page_of, page_params
from api.runs import RunOut, add_listing, public
from api.services import crawl as service
from conveyor.client import query_progress
from conveyor.errors import NotFound
from conveyor.progress import Progress
from conveyor.settings import Settings

router = APIRouter(prefix="/api", tags=["crawl"])

#: Bugs and tickets come 100 to a page (500 at most), visited pages 200 (1000 at most).
BugWindow = Annotated[PageParams, Depends(page_params(default=100, most=500))]
PagesWindow = Annotated[PageParams, Depends(page_params(default=200, most=1000))]


class CrawlCreate(BaseModel):
    """What to crawl."""

    url: str = Field(description="Start URL (http or https).")
    max_pages: int = Field(50, ge=1, le=1000, description="Page budget.")
    max_depth: int = Field(3, ge=0, le=10, description="Links followed from the start page (0: only the start page).")
    same_origin: bool = Field(
        True, description="Stay on the start URL's origin (else: its registrable domain, never a public suffix)."
    )
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

    model_config = ConfigDict(from_attributes=True)

    key: str
    provider: str
    url: str
    title: str
    severity: str
    status: str
    session_id: str
    fingerprint: str
    created_at: datetime


class TicketFull(TicketOut):
    """A ticket with its description."""

    description: str


class CrawlOut(RunOut):
    """A session as its owner sees it; ``live`` is the running workflow's own progress answer."""

    session_id: str = Field(validation_alias="id")
    url: str
    config: dict[str, Any]
    pages_crawled: int
    bugs_found: int
    current_url: str | None
    live: Progress | None = None
    truncated: bool
    stop_reason: str | None
    limits_reached: list[str] = Field(
        default_factory=list,
        description="Per-session caps the crawl reached (bugs, screenshots, tickets, link_checks): that kind of "
        "work stopped, the crawl went on.",
    )


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


class PageOut(BaseModel):
    """A visited page."""

    model_config = ConfigDict(from_attributes=True)

    url: str
    depth: int
    http_status: int | None
    load_ms: int
    title: str
    links: int
    bugs: int
    error: str | None
    visited_at: datetime


def crawl_out(crawl: CrawlSession, settings: Settings, live: Progress | None = None) -> CrawlOut:
    """The public form of a session; while it runs, ``progress`` is the workflow's live answer."""
    out = public(CrawlOut, crawl, settings)
    if live is not None and not crawl.finished:
        out.live, out.progress = live, live.percent
    return out


add_listing(
    router, "/crawls", CrawlSession, CrawlOut, crawl_out, name="list_crawls", description="Your sessions, newest first."
)


def _started(crawl: CrawlSession, settings: Settings) -> CrawlStarted:
    workflow_id = crawl.workflow_id or ""
    url = settings.workflow_ui_url(workflow_id)
    return CrawlStarted(session_id=crawl.id, workflow_id=workflow_id, status=crawl.status, workflow_url=url)


async def _live(client: Client, crawl: CrawlSession) -> Progress | None:
    if crawl.finished or crawl.workflow_id is None:
        return None
    return await query_progress(client, crawl.workflow_id)


@router.post("/crawls", response_model=CrawlStarted, status_code=202)
async def start_crawl(body: CrawlCreate, caller: CallerDep) -> CrawlStarted:
    """Queue a crawl session; answers at once with the session and workflow ids."""
    crawl = await service.start_session(caller, CrawlConfig(**body.model_dump()))
    return _started(crawl, caller.settings)


@router.get("/crawls/{session_id}", response_model=CrawlOut)
async def get_crawl(session_id: str, caller: CallerDep) -> CrawlOut:
    """Status, pages crawled, bugs found, the current URL and live progress of one of your sessions."""
    crawl = await service.get_session(caller, session_id)
    return crawl_out(crawl, caller.settings, await _live(caller.client, crawl))


@router.get("/crawls/{session_id}/bugs", response_model=Page[BugOut])
async def list_bugs(
    session_id: str, caller: CallerDep, window: BugWindow, kind: str | None = None, severity: str | None = None
) -> Page[BugOut]:
    """The session's bugs, most severe first, each with pages, evidence, screenshot URL and ticket."""
    crawl = await service.get_session(caller, session_id)
    views, total = await service.list_bugs(caller, crawl, window, kind=kind, severity=severity)
    base = f"{caller.settings.api_url}/api/crawls/{crawl.id}/bugs"
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
            ticket=TicketOut.model_validate(v.ticket) if v.ticket is not None else None,
            ticket_error=v.bug.ticket_error,
            created_at=v.bug.created_at,
        )
        for v in views
    ]
    return page_of(items, total, window)


@router.get("/crawls/{session_id}/bugs/{bug_id}/screenshot", response_class=Response)
async def bug_screenshot(session_id: str, bug_id: int, caller: CallerDep) -> Response:
    """The full-page screenshot (PNG) of the page where the bug was first seen."""
    crawl = await service.get_session(caller, session_id)
    bug = await service.get_bug(caller, crawl, bug_id)
    if not bug.screenshot_key:
        raise NotFound(f"bug {bug_id} has no screenshot", code="SCREENSHOT_NOT_FOUND")
    return serve_blob(caller.blobs, bug.screenshot_key, media_type="image/png")


@router.get("/crawls/{session_id}/pages", response_model=Page[PageOut])
async def list_pages(session_id: str, caller: CallerDep, window: PagesWindow) -> Page[PageOut]:
    """The pages the session visited, in visit order."""
    crawl = await service.get_session(caller, session_id)
    rows, total = await service.list_pages(caller, crawl, window)
    return page_of([PageOut.model_validate(p) for p in rows], total, window)


@router.post("/crawls/{session_id}/cancel", response_model=CrawlOut, status_code=202)
async def cancel_crawl(session_id: str, caller: CallerDep) -> CrawlOut:
    """Cancel one of your sessions; bugs found so far are kept."""
    return crawl_out(await service.cancel_session(caller, session_id), caller.settings)


@router.post("/crawls/{session_id}/rerun", response_model=CrawlStarted, status_code=202)
async def rerun_crawl(session_id: str, caller: CallerDep) -> CrawlStarted:
    """Crawl a finished session again; known bugs merge by fingerprint and keep their tickets."""
    return _started(await service.rerun_session(caller, session_id), caller.settings)


@router.get("/tickets", response_model=Page[TicketOut])
async def list_tickets(user: CurrentUser, session: SessionDep, window: BugWindow) -> Page[TicketOut]:
    """Your tickets in the built-in tracker (and references to Linear issues), newest first."""
    rows, total = await service.list_tickets(session, user, window)
    return page_of([TicketOut.model_validate(t) for t in rows], total, window)


@router.get("/tickets/{key}", response_model=TicketFull)
async def get_ticket(key: str, user: CurrentUser, session: SessionDep) -> TicketFull:
    """One ticket with its full description."""
    ticket: Ticket = await service.get_ticket(session, user, key)
    return TicketFull.model_validate(ticket)
