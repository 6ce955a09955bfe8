"""Crawl sessions: start, read, list, cancel and re-run; bugs, pages and tickets. Shared by the API and CLI."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.crawl import contract
from activities.crawl.models import CrawlBug, CrawlBugPage, CrawlPage, CrawlSession, Ticket
from activities.crawl.schemas import CrawlConfig, CrawlRequest
from activities.crawl.urls import normalize_url
from api.caller import Caller
from api.pages import PageParams, paginate
from api.runs import owned_run
from conveyor.client import start_workflow
from conveyor.errors import BadInput, Conflict, ConveyorError, NotFound
from conveyor.models import User
from conveyor.netpolicy import NetPolicy
from conveyor.quotas import RunCharge, admit
from conveyor.reconcile import cancel_run
from conveyor.runs import RunError, RunStatus

#: Most severe first when listing bugs.
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass
class BugView:
    """A bug with the pages it was seen on and its ticket."""

    bug: CrawlBug
    pages: list[str]
    ticket: Ticket | None


async def check_start_url(url: str, policy: NetPolicy) -> str:
    """The normalized start URL, or BAD_URL naming what is wrong with it, or URL_NOT_ALLOWED naming the address.

    Credentials in the URL (``user:pass@``) are refused rather than stripped: they would be stored with the
    session and shown back, and a crawl without them would not be the crawl that was asked for. The host is
    resolved and every address checked here, before anything is stored or started; the workers check again
    at connect time (a name may resolve differently later).
    """
    text = url.strip()
    if not text:
        raise BadInput("url is empty", code="BAD_URL", details={"field": "url"})
    normalized = normalize_url(text)
    if normalized is None or not text.lower().startswith(("http://", "https://")):
        raise BadInput(f"url must be an absolute http(s) URL, got {url!r}", code="BAD_URL", details={"field": "url"})
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise BadInput(
            "url must not carry credentials (user:pass@host): they would be stored and shown with the session",
            code="BAD_URL",
            details={"field": "url"},
        )
    target = urlsplit(normalized)
    await policy.check(target.hostname or "", target.port or (443 if target.scheme == "https" else 80))
    return normalized


async def start_session(caller: Caller, config: CrawlConfig, *, policy: NetPolicy | None = None) -> CrawlSession:
    """Record a queued session and start its workflow (answers at once; the crawl runs on the workers).

    ``policy`` defaults to the operator's (from the settings); tests pass one with a stub resolver.
    """
    policy = policy or NetPolicy.from_settings(caller.settings)
    config = config.model_copy(update={"url": await check_start_url(config.url, policy)})
    crawl = CrawlSession(
        id=str(uuid.uuid4()),
        user_id=caller.user.id,
        url=config.url,
        config=config.model_dump(mode="json"),
        status=RunStatus.QUEUED.value,
        stage="queued",
    )
    crawl.workflow_id = contract.workflow_id_for(crawl.id)
    await _admit(caller, crawl)
    caller.session.add(crawl)
    await caller.session.commit()
    await _start_workflow(caller, crawl)
    return crawl


async def _admit(caller: Caller, crawl: CrawlSession) -> None:
    """The kernel's admission: the per-user cap (429), then a hold of ``max_pages`` pages (402); nothing started."""
    max_pages = int(crawl.config.get("max_pages", 0))
    charge = RunCharge(
        contract.SESSION_TABLE,
        crawl.id,
        contract.PAGE_PRICE.cost(max_pages),
        {"max_pages": max_pages},
    )
    group = crawl.workflow_id or contract.workflow_id_for(crawl.id)
    await admit(
        caller.session,
        caller.settings,
        caller.user.id,
        contract.PIPELINE,
        group=group,
        charges=[charge],
        client=caller.client,
    )


async def _start_workflow(caller: Caller, crawl: CrawlSession) -> bool:
    config = CrawlConfig.model_validate(crawl.config)
    user_id = caller.user.id
    try:
        return await start_workflow(
            caller.client,
            contract.SESSION_START,
            CrawlRequest(session_id=crawl.id, user_id=user_id, config=config),
            id=contract.workflow_id_for(crawl.id),
            owner=user_id,
            execution_timeout=timedelta(seconds=config.hard_limit_s) + contract.WIND_DOWN,
        )
    except ConveyorError as err:
        crawl.set_status(RunStatus.FAILED, error=RunError(kind=err.kind.value, code=err.code, message=err.message))
        await caller.session.commit()
        raise


async def get_session(caller: Caller, session_id: str) -> CrawlSession:
    """The caller's session, reconciled with Temporal (another user's is reported as not found)."""
    return await owned_run(caller, CrawlSession, session_id, what="crawl session", code="SESSION_NOT_FOUND")


async def cancel_session(caller: Caller, session_id: str) -> CrawlSession:
    """Cancel a queued or running session; bugs found so far are kept."""
    crawl = await get_session(caller, session_id)
    await cancel_run(
        caller.session, caller.client, crawl, what=f"crawl session {session_id}", finished_code="SESSION_FINISHED"
    )
    return crawl


async def rerun_session(caller: Caller, session_id: str) -> CrawlSession:
    """Crawl a finished session again: bugs merge by fingerprint and no ticket is filed twice."""
    crawl = await get_session(caller, session_id)
    if not crawl.finished:
        raise Conflict(f"crawl session {session_id} is still {crawl.status}", code="SESSION_RUNNING")
    await _admit(caller, crawl)  # a rerun visits the site again: it pays for the pages it visits as it ends
    crawl.set_status(RunStatus.QUEUED, stage="queued")
    crawl.started_at = crawl.completed_at = None
    crawl.progress = 0
    crawl.truncated = False
    crawl.stop_reason = None
    await caller.session.commit()
    await _start_workflow(caller, crawl)
    return crawl


async def list_bugs(
    caller: Caller,
    crawl: CrawlSession,
    window: PageParams,
    *,
    kind: str | None = None,
    severity: str | None = None,
) -> tuple[list[BugView], int]:
    """A page of a session's bugs (most severe first), with their pages and tickets."""
    session = caller.session
    where: list[Any] = [CrawlBug.session_id == crawl.id]
    if kind:
        where.append(CrawlBug.kind == kind)
    if severity:
        where.append(CrawlBug.severity == severity)
    rank = case(SEVERITY_ORDER, value=CrawlBug.severity, else_=len(SEVERITY_ORDER))
    found, total = await paginate(session, select(CrawlBug).where(*where).order_by(rank, CrawlBug.id), window)
    bugs = list(found)
    ids = [b.id for b in bugs]
    pages: dict[int, list[str]] = {i: [] for i in ids}
    tickets: dict[int, Ticket] = {}
    if ids:
        for bug_id, url in await session.execute(
            select(CrawlBugPage.bug_id, CrawlBugPage.url).where(CrawlBugPage.bug_id.in_(ids)).order_by(CrawlBugPage.id)
        ):
            pages[bug_id].append(url)
        for ticket in await session.scalars(select(Ticket).where(Ticket.bug_id.in_(ids))):
            tickets[ticket.bug_id] = ticket
    return [BugView(b, pages[b.id], tickets.get(b.id)) for b in bugs], total


async def get_bug(caller: Caller, crawl: CrawlSession, bug_id: int) -> CrawlBug:
    """One bug of the session."""
    bug = await caller.session.get(CrawlBug, bug_id)
    if bug is None or bug.session_id != crawl.id:
        raise NotFound(f"bug {bug_id} not found in session {crawl.id}", code="BUG_NOT_FOUND")
    return bug


async def list_pages(caller: Caller, crawl: CrawlSession, window: PageParams) -> tuple[Sequence[CrawlPage], int]:
    """A page of the visited pages, in visit order."""
    query = select(CrawlPage).where(CrawlPage.session_id == crawl.id).order_by(CrawlPage.id)
    return await paginate(caller.session, query, window)


async def list_tickets(session: AsyncSession, user: User, window: PageParams) -> tuple[Sequence[Ticket], int]:
    """The user's tickets, newest first."""
    return await paginate(session, select(Ticket).where(Ticket.user_id == user.id).order_by(Ticket.id.desc()), window)


async def get_ticket(session: AsyncSession, user: User, key: str) -> Ticket:
    """One of the user's tickets by key (``BUG-12`` or a Linear identifier)."""
    ticket = await session.scalar(select(Ticket).where(Ticket.user_id == user.id, Ticket.key == key))
    if ticket is None:
        raise NotFound(f"ticket {key} not found", code="TICKET_NOT_FOUND")
    return ticket
