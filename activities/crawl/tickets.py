"""Bug tickets: the built-in tracker (rows in the app DB) and Linear issues, one per bug fingerprint."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.crawl.linear import LinearIssue
from activities.crawl.models import CrawlBug, CrawlSession, Ticket
from conveyor.db import dialect_insert

#: Namespace of the deterministic Linear issue ids (so a retried create files nothing twice).
TICKET_NAMESPACE = uuid.UUID("6f1d4a52-2c1b-4d6e-9a43-6b7f0c1e2d3a")
MAX_PAGES_LISTED = 20
#: Characters that open Markdown links, images, autolinks, HTML, headings, quotes, emphasis or tables.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~])")
_BACKTICKS = re.compile(r"`+")
_BARE_URL = re.compile(r"\b(?:[a-z][a-z0-9+.-]*://|www\.)[^\s`<>]*", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LINE_START = re.compile(r"^(\s*)([#>=])")


def linear_issue_id(session_id: str, fingerprint: str) -> str:
    """The Linear issue id of a bug: the same for every attempt and re-run of the session."""
    return str(uuid.uuid5(TICKET_NAMESPACE, f"{session_id}:{fingerprint}"))


def ticket_description(bug: CrawlBug, crawl: CrawlSession, pages: list[str], screenshot_url: str | None) -> str:
    """The ticket body: what was found, where, the evidence and the screenshot.

    Everything that came from the crawled site (URLs, titles, console text, element sources, and a description an
    LLM may have reworded) is escaped or shown as code, so a page cannot put links, images, headings or HTML into
    the ticket.
    """
    lines = [
        f"**{escape_markdown(bug.title)}**",
        "",
        defang_markdown(bug.description.strip()),
        "",
        f"**Kind:** {escape_markdown(bug.kind)} · **Severity:** {escape_markdown(bug.severity)} · "
        f"**Fingerprint:** {markdown_code(bug.fingerprint)}",
        f"**Crawl:** {markdown_code(crawl.url)} (session {markdown_code(crawl.id)})",
        "",
        f"**Seen on {len(pages)} page(s):**",
        *[f"- {markdown_code(p)}" for p in pages[:MAX_PAGES_LISTED]],
    ]
    if len(pages) > MAX_PAGES_LISTED:
        lines.append(f"- … and {len(pages) - MAX_PAGES_LISTED} more")
    evidence = {k: v for k, v in bug.evidence.items() if v not in (None, "", [], {})}
    if evidence:
        lines += [
            "",
            "**Evidence:**",
            *[f"- {escape_markdown(str(k))}: {markdown_code(str(v))}" for k, v in evidence.items()],
        ]
    if screenshot_url:
        lines += ["", f"**Screenshot:** {screenshot_url}"]
    return "\n".join(lines)


def escape_markdown(text: str) -> str:
    """``text`` as one line of literal Markdown text: special characters backslash-escaped, bare URLs as code."""
    line = " ".join(str(text).split())
    out: list[str] = []
    last = 0
    for match in _BARE_URL.finditer(line):
        out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", line[last : match.start()]))
        out.append(markdown_code(match.group(0)))
        last = match.end()
    out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", line[last:]))
    return "".join(out)


def markdown_code(text: str) -> str:
    """``text`` as inline code (nothing in it renders), whatever backticks it holds."""
    line = " ".join(str(text).split())
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(line)), default=0) + 1)
    padded = f" {line} " if line.startswith("`") or line.endswith("`") else line
    return f"{fence}{padded}{fence}"


def defang_markdown(text: str) -> str:
    """Markdown text that keeps its emphasis, lists and code, but can open no link, image, heading or HTML.

    Fenced blocks and inline code spans stay as they are (nothing renders in them); elsewhere brackets, angle
    brackets and exclamation marks are escaped, bare URLs become code, and a line cannot start a heading or quote.
    """
    out: list[str] = []
    fence = ""
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence:
            out.append(line)
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            out.append(line)
            continue
        out.append(_LINE_START.sub(r"\1\\\2", _defang_line(line)))
    return "\n".join(out)


def _defang_line(line: str) -> str:
    """One line with its inline code spans kept and link, image, autolink and HTML openers escaped elsewhere."""
    out: list[str] = []
    i = 0
    while i < len(line):
        run = _BACKTICKS.match(line, i)
        if run:
            closing = re.compile(r"(?<!`)" + run.group(0) + r"(?!`)").search(line, run.end())
            if closing:
                out.append(line[i : closing.end()])
                i = closing.end()
                continue
            out.append("\\`" * len(run.group(0)))
            i = run.end()
            continue
        nxt = _BACKTICKS.search(line, i)
        end = nxt.start() if nxt else len(line)
        chunk = line[i:end]
        parts: list[str] = []
        last = 0
        for match in _BARE_URL.finditer(chunk):
            parts.append(re.sub(r"([\[\]<>!\\])", r"\\\1", chunk[last : match.start()]))
            parts.append(markdown_code(match.group(0)))
            last = match.end()
        parts.append(re.sub(r"([\[\]<>!\\])", r"\\\1", chunk[last:]))
        out.append("".join(parts))
        i = end
    return "".join(out)


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
