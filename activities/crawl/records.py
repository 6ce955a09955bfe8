"""How a page visit's findings are stored: idempotent upserts, so retried visits and concurrent pages agree."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.crawl.models import LIMITS_REACHED, CrawlBug, CrawlBugPage, CrawlPage, CrawlSession
from activities.crawl.schemas import LIMIT_BUGS, Finding, PageReport, PageVisit
from activities.crawl.urls import url_key
from conveyor.db import dialect_insert
from conveyor.models import utcnow
from conveyor.runs import RunStatus


async def record_page(
    session: AsyncSession, visit: PageVisit, report: PageReport, findings: list[Finding]
) -> list[Finding]:
    """Store the visited page and its bugs (one bug per fingerprint; a page counted once per bug).

    Returns the findings stored: once the session holds ``visit.max_bugs`` bugs, new fingerprints are dropped
    (known ones still count the page) and the session notes ``bugs`` in its reached limits. A visit that ends
    after its session was cancelled or failed stores nothing: the session's record is final.
    """
    # A no-op write to the session's row first: it takes the row's lock on PostgreSQL and SQLite's write lock
    # (whose driver starts a transaction only at the first write, so a leading SELECT would count bugs outside
    # it), so concurrent visits of one session count and store their bugs one at a time and cannot both pass
    # the bug cap.
    await session.execute(
        update(CrawlSession).where(CrawlSession.id == visit.session_id).values(status=CrawlSession.status)
    )
    status = await session.scalar(select(CrawlSession.status).where(CrawlSession.id == visit.session_id))
    if status in (RunStatus.CANCELLED, RunStatus.FAILED):
        return []
    findings = await _within_bug_cap(session, visit, findings)
    key = url_key(visit.url)
    values = {
        "url": visit.url,
        "depth": visit.depth,
        "http_status": report.status,
        "load_ms": report.load_ms,
        "title": report.title[:500],
        "links": len(report.links),
        "bugs": len(findings),
        "error": report.error,
        # a rerun's visit of a page stored before dates it anew: each run pays for the pages it visited
        "visited_at": utcnow(),
    }
    page = dialect_insert(session, CrawlPage).values(session_id=visit.session_id, url_key=key, **values)
    await session.execute(page.on_conflict_do_update(index_elements=["session_id", "url_key"], set_=values))
    for finding in findings:
        bug = dialect_insert(session, CrawlBug).values(
            session_id=visit.session_id,
            fingerprint=finding.fingerprint,
            kind=finding.kind.value,
            severity=finding.severity.value,
            title=finding.title,
            description=finding.description,
            page_url=finding.page_url,
            evidence=finding.evidence,
        )
        await session.execute(bug.on_conflict_do_nothing(index_elements=["session_id", "fingerprint"]))
        bug_id = await session.scalar(
            select(CrawlBug.id).where(
                CrawlBug.session_id == visit.session_id, CrawlBug.fingerprint == finding.fingerprint
            )
        )
        seen = dialect_insert(session, CrawlBugPage).values(
            bug_id=bug_id, url=visit.url, url_key=key, count=finding.count
        )
        await session.execute(seen.on_conflict_do_nothing(index_elements=["bug_id", "url_key"]))
    await refresh_counters(session, visit.session_id, current_url=visit.url)
    return findings


async def _within_bug_cap(session: AsyncSession, visit: PageVisit, findings: list[Finding]) -> list[Finding]:
    """The findings that may be stored: known fingerprints, and new ones while the session is under its cap."""
    if visit.max_bugs is None or not findings:
        return findings
    prints = [f.fingerprint for f in findings]
    known = set(
        await session.scalars(
            select(CrawlBug.fingerprint).where(
                CrawlBug.session_id == visit.session_id, CrawlBug.fingerprint.in_(prints)
            )
        )
    )
    stored = int(
        await session.scalar(select(func.count()).select_from(CrawlBug).where(CrawlBug.session_id == visit.session_id))
        or 0
    )
    kept: list[Finding] = []
    for finding in findings:  # worst first (triage's order), so the cap keeps the most severe
        if finding.fingerprint in known:
            kept.append(finding)
        elif stored < visit.max_bugs:
            kept.append(finding)
            known.add(finding.fingerprint)
            stored += 1
    if len(kept) < len(findings):
        await note_limit(session, visit.session_id, LIMIT_BUGS)
    return kept


async def note_limit(session: AsyncSession, session_id: str, limit: str) -> None:
    """Add ``limit`` to the session's reached limits (kept in its config, shown by the API), once."""
    crawl = await session.get(CrawlSession, session_id)
    if crawl is None:
        return
    reached = list(crawl.config.get(LIMITS_REACHED, []))
    if limit not in reached:
        crawl.config = {**crawl.config, LIMITS_REACHED: [*reached, limit]}


async def refresh_counters(session: AsyncSession, session_id: str, *, current_url: str | None = None) -> None:
    """Set the session's page and bug counts from the stored rows (right however many visits race)."""
    pages = select(func.count()).select_from(CrawlPage).where(CrawlPage.session_id == session_id).scalar_subquery()
    bugs = select(func.count()).select_from(CrawlBug).where(CrawlBug.session_id == session_id).scalar_subquery()
    values: dict[str, object] = {"pages_crawled": pages, "bugs_found": bugs}
    if current_url is not None:
        values["current_url"] = current_url
    await session.execute(update(CrawlSession).where(CrawlSession.id == session_id).values(**values))
