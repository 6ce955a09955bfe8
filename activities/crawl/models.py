"""The crawl pipeline's tables: sessions, visited pages, bugs (with the pages they were seen on) and tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.db import Base
from conveyor.models import CreditHold, utcnow
from conveyor.records import RunColumns
from conveyor.runs import RunUpdate

#: Key of a session's ``config`` that lists the caps it reached (``bugs``, ``screenshots``, ``tickets``…).
LIMITS_REACHED = "limits_reached"


class CrawlSession(RunColumns, Base):
    """One crawl of a site: its configuration, where it is, and how it ended (``stage``: starting, crawling…)."""

    __tablename__ = "crawl_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pages_crawled: Mapped[int] = mapped_column(Integer, default=0)
    bugs_found: Mapped[int] = mapped_column(Integer, default=0)
    current_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    @property
    def limits_reached(self) -> list[str]:
        """The per-session caps this session reached (that kind of work stopped; the crawl went on)."""
        return [str(limit) for limit in (self.config or {}).get(LIMITS_REACHED, [])]

    async def after_record(self, session: AsyncSession, update: RunUpdate) -> None:
        """A session that ends counts its pages and bugs from the stored rows."""
        if self.finished:
            from activities.crawl.records import refresh_counters

            await refresh_counters(session, self.id)

    def credits_due(self, session: Session, held: CreditHold) -> int:
        """The pages this run visited (stored pages dated since it started: a rerun's earlier pages are not
        charged again, the ones it visits again are), at the page price."""
        from activities.crawl.contract import PAGE_PRICE

        if self.started_at is None:  # never started (a start that failed, a cancel while queued): nothing visited
            return 0
        pages = session.scalar(
            select(func.count())
            .select_from(CrawlPage)
            .where(CrawlPage.session_id == self.id, CrawlPage.visited_at >= self.started_at)
        )
        return PAGE_PRICE.cost(int(pages or 0))


class CrawlPage(Base):
    """A page a session visited (one row per normalized URL)."""

    __tablename__ = "crawl_pages"
    __table_args__ = (UniqueConstraint("session_id", "url_key", name="uq_crawl_pages_session_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("crawl_sessions.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    url_key: Mapped[str] = mapped_column(Text)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    load_ms: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(Text, default="")
    links: Mapped[int] = mapped_column(Integer, default=0)
    bugs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    visited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CrawlBug(Base):
    """A bug of a session: one row per fingerprint, however many pages show it."""

    __tablename__ = "crawl_bugs"
    __table_args__ = (UniqueConstraint("session_id", "fingerprint", name="uq_crawl_bugs_session_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("crawl_sessions.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    page_url: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    screenshot_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    ticket_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CrawlBugPage(Base):
    """A page on which a bug was seen (unique, so retried visits never count a page twice)."""

    __tablename__ = "crawl_bug_pages"
    __table_args__ = (UniqueConstraint("bug_id", "url_key", name="uq_crawl_bug_pages_bug_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bug_id: Mapped[int] = mapped_column(ForeignKey("crawl_bugs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    url_key: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)


class Ticket(Base):
    """A filed ticket: in the built-in tracker, or a reference to the Linear issue. One per bug fingerprint."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("session_id", "fingerprint", name="uq_tickets_session_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("crawl_sessions.id", ondelete="CASCADE"), index=True)
    bug_id: Mapped[int] = mapped_column(ForeignKey("crawl_bugs.id", ondelete="CASCADE"), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    url: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
