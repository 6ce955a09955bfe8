"""Crawl sessions: start, read, list, cancel and re-run; bugs, pages and tickets. Shared by the API and CLI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.crawl.models import (
    TERMINAL_STATUSES,
    CrawlBug,
    CrawlBugPage,
    CrawlPage,
    CrawlSession,
    SessionStatus,
    Ticket,
)
from activities.crawl.schemas import CrawlConfig, CrawlRequest
from activities.crawl.urls import normalize_url
from api.services.workflows import abnormal_end
from conveyor.errors import BadInput, Conflict, ExternalServiceError, NotFound
from conveyor.models import User
from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR
from workflows.crawl import TASK_QUEUE, CrawlSessionWorkflow, workflow_id_for

#: Most severe first when listing bugs.
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
#: Room for winding down after the seed's hard limit before Temporal ends the run itself.
WIND_DOWN = timedelta(minutes=2)


@dataclass
class BugView:
    """A bug with the pages it was seen on and its ticket."""

    bug: CrawlBug
    pages: list[str]
    ticket: Ticket | None


def check_start_url(url: str) -> str:
    """The normalized start URL, or BAD_URL naming what is wrong with it."""
    text = url.strip()
    if not text:
        raise BadInput("url is empty", code="BAD_URL", details={"field": "url"})
    normalized = normalize_url(text)
    if normalized is None or not text.lower().startswith(("http://", "https://")):
        raise BadInput(f"url must be an absolute http(s) URL, got {url!r}", code="BAD_URL", details={"field": "url"})
    return normalized


async def start_session(session: AsyncSession, client: Client, user: User, config: CrawlConfig) -> CrawlSession:
    """Record a queued session and start its workflow (answers at once; the crawl runs on the workers)."""
    config = config.model_copy(update={"url": check_start_url(config.url)})
    crawl = CrawlSession(
        id=str(uuid.uuid4()),
        user_id=user.id,
        url=config.url,
        config=config.model_dump(mode="json"),
        status=SessionStatus.QUEUED.value,
    )
    crawl.workflow_id = workflow_id_for(crawl.id)
    session.add(crawl)
    await session.commit()
    await _start_workflow(session, client, crawl, user.id)
    return crawl


async def _start_workflow(session: AsyncSession, client: Client, crawl: CrawlSession, user_id: int) -> bool:
    config = CrawlConfig.model_validate(crawl.config)
    try:
        await client.start_workflow(
            CrawlSessionWorkflow.run,
            CrawlRequest(session_id=crawl.id, user_id=user_id, config=config),
            id=workflow_id_for(crawl.id),
            task_queue=TASK_QUEUE,
            execution_timeout=timedelta(seconds=config.hard_limit_s) + WIND_DOWN,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PIPELINE_ATTR, "crawl"), SearchAttributePair(OWNER_ATTR, str(user_id))]
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    except RPCError as err:
        crawl.status = SessionStatus.FAILED.value
        crawl.error_code = "TEMPORAL_UNAVAILABLE"
        crawl.error_message = f"could not start the workflow: {err.message}"
        await session.commit()
        raise ExternalServiceError(crawl.error_message, code="TEMPORAL_UNAVAILABLE") from err
    return True


async def get_session(session: AsyncSession, user: User, session_id: str) -> CrawlSession:
    """The user's session (another user's is reported as not found)."""
    crawl = await session.get(CrawlSession, session_id)
    if crawl is None or crawl.user_id != user.id:
        raise NotFound(f"crawl session {session_id} not found", code="SESSION_NOT_FOUND")
    return crawl


async def list_sessions(
    session: AsyncSession, user: User, *, limit: int, offset: int, status: str | None = None
) -> tuple[list[CrawlSession], int]:
    """A page of the user's sessions, newest first, and the total count."""
    where = [CrawlSession.user_id == user.id]
    if status:
        where.append(CrawlSession.status == status)
    total = await session.scalar(select(func.count()).select_from(CrawlSession).where(*where))
    rows = await session.scalars(
        select(CrawlSession).where(*where).order_by(CrawlSession.created_at.desc()).limit(limit).offset(offset)
    )
    return list(rows), int(total or 0)


async def cancel_session(session: AsyncSession, client: Client, user: User, session_id: str) -> CrawlSession:
    """Cancel a queued or running session; bugs found so far are kept."""
    crawl = await get_session(session, user, session_id)
    if crawl.status in TERMINAL_STATUSES:
        raise Conflict(f"crawl session {session_id} is already {crawl.status}", code="SESSION_FINISHED")
    try:
        await client.get_workflow_handle(workflow_id_for(crawl.id)).cancel()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise ExternalServiceError(f"could not cancel: {err.message}", code="TEMPORAL_UNAVAILABLE") from err
        crawl.status = SessionStatus.CANCELLED.value
        crawl.completed_at = datetime.now(UTC)
        await session.commit()
    return crawl


async def rerun_session(session: AsyncSession, client: Client, user: User, session_id: str) -> CrawlSession:
    """Crawl a finished session again: bugs merge by fingerprint and no ticket is filed twice."""
    crawl = await get_session(session, user, session_id)
    if crawl.status not in TERMINAL_STATUSES:
        raise Conflict(f"crawl session {session_id} is still {crawl.status}", code="SESSION_RUNNING")
    crawl.status = SessionStatus.QUEUED.value
    crawl.error_code = crawl.error_message = None
    crawl.completed_at = None
    crawl.truncated = False
    crawl.stop_reason = None
    await session.commit()
    await _start_workflow(session, client, crawl, user.id)
    return crawl


async def reconcile(session: AsyncSession, client: Client, crawl: CrawlSession) -> CrawlSession:
    """Fix a session whose workflow ended without its own bookkeeping (terminated, or past the hard limit)."""
    if crawl.status in TERMINAL_STATUSES or crawl.workflow_id is None:
        return crawl
    end = await abnormal_end(client, crawl.workflow_id)
    if end is not None:
        crawl.error_code, crawl.error_message = end.code, end.message
        crawl.status = SessionStatus.FAILED.value
        crawl.completed_at = end.closed_at
        await session.commit()
    return crawl


async def list_bugs(
    session: AsyncSession,
    crawl: CrawlSession,
    *,
    limit: int,
    offset: int,
    kind: str | None = None,
    severity: str | None = None,
) -> tuple[list[BugView], int]:
    """A page of a session's bugs (most severe first), with their pages and tickets."""
    where: list[Any] = [CrawlBug.session_id == crawl.id]
    if kind:
        where.append(CrawlBug.kind == kind)
    if severity:
        where.append(CrawlBug.severity == severity)
    total = await session.scalar(select(func.count()).select_from(CrawlBug).where(*where))
    rank = case(SEVERITY_ORDER, value=CrawlBug.severity, else_=len(SEVERITY_ORDER))
    bugs = list(
        await session.scalars(select(CrawlBug).where(*where).order_by(rank, CrawlBug.id).limit(limit).offset(offset))
    )
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
    return [BugView(b, pages[b.id], tickets.get(b.id)) for b in bugs], int(total or 0)


async def get_bug(session: AsyncSession, crawl: CrawlSession, bug_id: int) -> CrawlBug:
    """One bug of the session."""
    bug = await session.get(CrawlBug, bug_id)
    if bug is None or bug.session_id != crawl.id:
        raise NotFound(f"bug {bug_id} not found in session {crawl.id}", code="BUG_NOT_FOUND")
    return bug


async def list_pages(
    session: AsyncSession, crawl: CrawlSession, *, limit: int, offset: int
) -> tuple[list[CrawlPage], int]:
    """A page of the visited pages, in visit order."""
    where = CrawlPage.session_id == crawl.id
    total = await session.scalar(select(func.count()).select_from(CrawlPage).where(where))
    rows = await session.scalars(select(CrawlPage).where(where).order_by(CrawlPage.id).limit(limit).offset(offset))
    return list(rows), int(total or 0)


async def list_tickets(session: AsyncSession, user: User, *, limit: int, offset: int) -> tuple[list[Ticket], int]:
    """The user's tickets, newest first."""
    where = Ticket.user_id == user.id
    total = await session.scalar(select(func.count()).select_from(Ticket).where(where))
    rows = await session.scalars(select(Ticket).where(where).order_by(Ticket.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total or 0)


async def get_ticket(session: AsyncSession, user: User, key: str) -> Ticket:
    """One of the user's tickets by key (``BUG-12`` or a Linear identifier)."""
    ticket = await session.scalar(select(Ticket).where(Ticket.user_id == user.id, Ticket.key == key))
    if ticket is None:
        raise NotFound(f"ticket {key} not found", code="TICKET_NOT_FOUND")
    return ticket
