"""How a page visit's findings are stored: idempotent upserts, so retried visits and concurrent pages agree."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.crawl.models import CrawlBug, CrawlBugPage, CrawlPage, CrawlSession
from activities.crawl.schemas import Finding, PageReport, PageVisit
from activities.crawl.urls import url_key
from conveyor.db import dialect_insert
from conveyor.runs import RunStatus


async def record_page(session: AsyncSession, visit: PageVisit, report: PageReport, findings: list[Finding]) -> None:
    """Store the visited page and its bugs (one bug per fingerprint; a page counted once per bug).

    A visit that ends after its session was cancelled or failed stores nothing: the session's record is final.
    """
    status = await session.scalar(select(CrawlSession.status).where(CrawlSession.id == visit.session_id))
    if status in (RunStatus.CANCELLED, RunStatus.FAILED):
        return
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


async def refresh_counters(session: AsyncSession, session_id: str, *, current_url: str | None = None) -> None:
    """Set the session's page and bug counts from the stored rows (right however many visits race)."""
    pages = select(func.count()).select_from(CrawlPage).where(CrawlPage.session_id == session_id).scalar_subquery()
    bugs = select(func.count()).select_from(CrawlBug).where(CrawlBug.session_id == session_id).scalar_subquery()
    values: dict[str, object] = {"pages_crawled": pages, "bugs_found": bugs}
    if current_url is not None:
        values["current_url"] = current_url
    await session.execute(update(CrawlSession).where(CrawlSession.id == session_id).values(**values))
