"""Bug tickets: the built-in tracker (rows in the app DB) and Linear issues, one per bug fingerprint."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.crawl.linear import LinearIssue
from activities.crawl.models import CrawlBug, CrawlSession, Ticket
from conveyor.db import dialect_insert

#: Namespace of the deterministic Linear issue ids (so a retried create files nothing twice).
TICKET_NAMESPACE = uuid.UUID("6f1d4a52-2c1b-4d6e-9a43-6b7f0c1e2d3a")
MAX_PAGES_LISTED = 20


def linear_issue_id(session_id: str, fingerprint: str) -> str:
    """The Linear issue id of a bug: the same for every attempt and re-run of the session."""
    return str(uuid.uuid5(TICKET_NAMESPACE, f"{session_id}:{fingerprint}"))


def ticket_description(bug: CrawlBug, crawl: CrawlSession, pages: list[str], screenshot_url: str | None) -> str:
    """The ticket body: what was found, where, the evidence and the screenshot."""
    lines = [
        bug.description.strip(),
        "",
        f"**Kind:** {bug.kind} · **Severity:** {bug.severity} · **Fingerprint:** `{bug.fingerprint}`",
        f"**Crawl:** {crawl.url} (session `{crawl.id}`)",
        "",
        f"**Seen on {len(pages)} page(s):**",
        *[f"- {p}" for p in pages[:MAX_PAGES_LISTED]],
    ]
    if len(pages) > MAX_PAGES_LISTED:
        lines.append(f"- … and {len(pages) - MAX_PAGES_LISTED} more")
    evidence = {k: v for k, v in bug.evidence.items() if v not in (None, "", [], {})}
    if evidence:
        lines += ["", "**Evidence:**", *[f"- {k}: `{v}`" for k, v in evidence.items()]]
    if screenshot_url:
        lines += ["", f"**Screenshot:** {screenshot_url}"]
    return "\n".join(lines)


def _ticket_of(session_id: str, fingerprint: str) -> Select[Ticket]:
    return select(Ticket).where(Ticket.session_id == session_id, Ticket.fingerprint == fingerprint)


async def existing_ticket(session: AsyncSession, session_id: str, fingerprint: str) -> Ticket | None:
    """The ticket already filed for a bug of a session, if any."""
    return (await session.scalars(_ticket_of(session_id, fingerprint))).one_or_none()


async def store_ticket(
    session: AsyncSession,
    crawl: CrawlSession,
    bug: CrawlBug,
    description: str,
    *,
    provider: str,
    issue: LinearIssue | None = None,
    base_url: str = "",
) -> tuple[Ticket, bool]:
    """Record the bug's ticket once (unique per session and fingerprint); returns it and whether it is new."""
    insert = dialect_insert(session, Ticket).values(
        user_id=crawl.user_id,
        session_id=crawl.id,
        bug_id=bug.id,
        fingerprint=bug.fingerprint,
        provider=provider,
        key=issue.identifier if issue else "",
        external_id=issue.id if issue else None,
        url=issue.url if issue else "",
        title=bug.title,
        description=description,
        severity=bug.severity,
        status="open",
    )
    result = await session.execute(insert.on_conflict_do_nothing(index_elements=["session_id", "fingerprint"]))
    created = bool(getattr(result, "rowcount", 0))
    ticket = (await session.scalars(_ticket_of(crawl.id, bug.fingerprint))).one()
    if created and issue is None:
        ticket.key = f"BUG-{ticket.id}"
        ticket.url = f"{base_url}/api/tickets/{ticket.key}"
    return ticket, created
