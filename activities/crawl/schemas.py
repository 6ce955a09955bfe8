"""Inputs and outputs of the crawl workflow and its activities (one model each, fields addable)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

#: The per-session caps a session can reach, as named in its ``limits_reached``.
LIMIT_BUGS = "bugs"
LIMIT_SCREENSHOTS = "screenshots"
LIMIT_TICKETS = "tickets"
LIMIT_LINK_CHECKS = "link_checks"


class BugKind(StrEnum):
    """What a signal or bug is about."""

    HTTP_ERROR = "http_error"
    """The page itself answered 4xx."""
    SERVER_ERROR = "server_error"
    """The page itself answered 5xx."""
    BROKEN_LINK = "broken_link"
    """An internal link on the page answers >= 400 or cannot be reached."""
    MISSING_RESOURCE = "missing_resource"
    """An image, script, stylesheet or font failed or answered >= 400."""
    CONSOLE_ERROR = "console_error"
    """``console.error`` output (resource load failures are reported as missing resources instead)."""
    PAGE_ERROR = "page_error"
    """An uncaught exception in the page."""
    FAILED_REQUEST = "failed_request"
    """A fetch/XHR call answered >= 500 or failed at the network level."""
    SLOW_PAGE = "slow_page"
    """The page took longer than the session's threshold to load."""
    MISSING_ALT = "missing_alt"
    """An ``<img>`` without an ``alt`` attribute."""
    MISSING_LANG = "missing_lang"
    """``<html>`` without a ``lang`` attribute."""
    MISSING_TITLE = "missing_title"
    """A page without a ``<title>`` (or an empty one)."""
    BLOCKED_REQUEST = "blocked_request"
    """The page (a redirect, a sub-request, a link) led to an address the network policy denies: not followed."""


class Severity(StrEnum):
    """How bad a bug is; drives ticket priority."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Signal(BaseModel):
    """One raw observation made while visiting a page."""

    kind: BugKind
    page_url: str
    target: str = ""
    """The URL or element the signal is about: a link, a resource or request URL, an image ``src``."""
    status: int | None = None
    """HTTP status, when there was a response."""
    message: str = ""
    """Error text: console message, exception message, network error."""
    resource_type: str = ""
    """Playwright's resource type of the request (``image``, ``script``, ``fetch``…)."""
    method: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)


class Finding(BaseModel):
    """A triaged bug seen on one page: identical signals on the page folded into one, with a fingerprint."""

    fingerprint: str
    """Stable across pages and runs: the same defect on many pages has one fingerprint."""
    kind: BugKind
    severity: Severity
    title: str
    description: str
    page_url: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    count: int = 1
    """How many identical signals on this page were folded into this finding."""


class RobotsRules(BaseModel):
    """The robots.txt group that applies to the crawler's user agent (RFC 9309 matching)."""

    allow: list[str] = Field(default_factory=list)
    disallow: list[str] = Field(default_factory=list)
    crawl_delay: float | None = None
    """The group's ``Crawl-delay`` in seconds, when it gives one (not in RFC 9309, but widely honoured)."""


class CrawlLimits(BaseModel):
    """A session's caps and pacing, fixed from the settings when it starts (None: unlimited, for older runs)."""

    max_bugs: int | None = None
    """Bugs recorded per session; later new fingerprints are dropped."""
    max_screenshots: int | None = None
    """Screenshots taken per session."""
    max_tickets: int | None = None
    """Tickets filed per session."""
    max_link_checks: int | None = None
    """Link checks (HEAD/GET requests) made per session."""
    ticket_min_severity: Severity = Severity.LOW
    """Bugs below this severity get no screenshot and no ticket (they stay listed in the API)."""
    host_delay_s: float = 0.0
    """Least time between two page visits to one host (the setting, or robots.txt's capped Crawl-delay)."""


class CrawlConfig(BaseModel):
    """What to crawl and how (the API's request body plus the seed's limits)."""

    url: str
    max_pages: int = Field(50, ge=1, le=1000)
    max_depth: int = Field(3, ge=0, le=10)
    same_origin: bool = True
    respect_robots: bool = True
    slow_page_ms: int = Field(3000, ge=100, le=120_000)
    """A page whose load takes longer than this is reported as slow."""
    check_links: bool = True
    """Check every internal link on each page (HEAD, GET when HEAD is refused)."""
    parallel_pages: int = Field(4, ge=1, le=16)
    """Page visits the session keeps scheduled: a backlog of two per worker slot hides the hop between pages
    (the crawl queue's worker concurrency bounds what really runs at once)."""
    pages_per_run: int = Field(200, ge=10, le=1000)
    """Pages visited before the workflow continues as new with its frontier."""
    soft_limit_s: float = Field(50 * 60, gt=0)
    """Seed soft time limit: past it no new page is scheduled and the session completes truncated."""
    hard_limit_s: float = Field(60 * 60, gt=0)
    """Seed hard time limit: Temporal's execution timeout of the whole session."""
    page_retry_initial_s: float = Field(60.0, gt=0)
    """Seed: page retries start after 60 s with exponential backoff."""


class CrawlRequest(BaseModel):
    """Start (or continue) a crawl session's workflow."""

    session_id: str
    user_id: int
    config: CrawlConfig
    state: CrawlState | None = None
    """Carried over by continue-as-new; None on the first run."""


class FrontierItem(BaseModel):
    """A URL waiting to be visited."""

    url: str
    depth: int
    referrer: str | None = None


class BugRef(BaseModel):
    """What the workflow remembers of a bug: enough to follow it up and to report."""

    fingerprint: str
    kind: BugKind
    severity: Severity
    title: str
    page_url: str
    highlight_href: str | None = None


class CrawlState(BaseModel):
    """A session's crawl state, carried across continue-as-new."""

    started_at: datetime
    origin: str
    start_url: str
    robots: RobotsRules | None = None
    frontier: list[FrontierItem] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    """Normalized keys of every URL queued or visited."""
    pages_crawled: int = 0
    pages_failed: int = 0
    bugs: list[BugRef] = Field(default_factory=list)
    tickets_filed: int = 0
    """Tickets filed by earlier runs of the chain."""
    runs: int = 1
    limits: CrawlLimits | None = None
    """The session's caps (None for sessions started before there were any)."""
    screenshots_taken: int = 0
    """Screenshots asked for by earlier runs of the chain (counted against ``limits.max_screenshots``)."""
    tickets_asked: int = 0
    """Tickets asked for by earlier runs of the chain (counted against ``limits.max_tickets``)."""
    link_checks: int = 0
    """Link checks made by every page visited so far."""
    limits_reached: list[str] = Field(default_factory=list)
    """The caps this session hit (``bugs``, ``screenshots``, ``tickets``, ``link_checks``)."""
    spill: FrontierSpill | None = None
    """Where the frontier and visited set wait between runs when they were too large to carry."""


class FrontierSpill(BaseModel):
    """A frontier and visited set stored in the blob store, in parts, between two runs of a session."""

    run: int
    """The run that stored them."""
    frontier_parts: int
    seen_parts: int


class SpillPart(BaseModel):
    """Store one part of a session's frontier or visited set (at most a batch of entries)."""

    session_id: str
    run: int
    kind: str
    """``frontier`` or ``seen``."""
    part: int
    frontier: list[FrontierItem] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)


class SpillBatch(BaseModel):
    """One stored part of a frontier or visited set."""

    frontier: list[FrontierItem] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)


class LoadPart(BaseModel):
    """Read back one stored part of a session's frontier or visited set."""

    session_id: str
    run: int
    kind: str
    part: int


class LimitNote(BaseModel):
    """Note on a session that it reached one of its caps (the work of that kind stops, the crawl goes on)."""

    session_id: str
    limit: str


class StartRequest(BaseModel):
    """Mark a session starting, check the start URL answers, and read robots.txt."""

    session_id: str
    config: CrawlConfig
    workflow_id: str


class StartInfo(BaseModel):
    """The normalized start URL, its origin and the robots rules that apply."""

    start_url: str
    origin: str
    robots: RobotsRules | None = None
    robots_status: int | None = None
    limits: CrawlLimits | None = None
    """The caps and pacing from the settings (None from a worker that had none)."""


class PageVisit(BaseModel):
    """Visit one page: navigate, collect signals, triage, extract links."""

    session_id: str
    url: str
    depth: int
    origin: str
    same_origin: bool = True
    robots: RobotsRules | None = None
    slow_page_ms: int = 3000
    check_links: bool = True
    is_start: bool = False
    referrer: str | None = None
    max_link_checks: int | None = None
    """Link checks this visit may make (its share of the session's budget); None: no cap."""
    max_bugs: int | None = None
    """The session's bug cap: new fingerprints past it are not recorded; None: no cap."""


class PageReport(BaseModel):
    """What a page visit found (small: links and bug summaries, never page content)."""

    url: str
    final_url: str
    status: int | None
    load_ms: int
    title: str = ""
    links: list[str] = Field(default_factory=list)
    """Normalized http(s) links found on the page, in page order, deduplicated."""
    bugs: list[BugRef] = Field(default_factory=list)
    error: str | None = None
    """Why the page could not be visited (after which it has no links)."""
    link_checks: int = 0
    """Link checks this visit made (answers from the worker's cache are free)."""
    link_checks_skipped: int = 0
    """Links left unchecked because the visit's share of the link-check budget ran out."""
    bugs_dropped: int = 0
    """New bugs not recorded because the session reached its bug cap."""


class ScreenshotRequest(BaseModel):
    """Capture a full-page screenshot of the page where a bug was first seen."""

    session_id: str
    fingerprint: str
    page_url: str
    highlight_href: str | None = None
    """Outline links to this URL before capturing (broken links)."""


class ScreenshotResult(BaseModel):
    """Where the screenshot went."""

    key: str | None
    size: int = 0
    width: int = 0
    height: int = 0


class TicketRequest(BaseModel):
    """File the ticket of one bug of a session (once per fingerprint, however often called)."""

    session_id: str
    fingerprint: str


class TicketResult(BaseModel):
    """The ticket that exists for the bug."""

    provider: str
    key: str
    url: str
    created: bool
    """False when the ticket already existed (a retry or a re-run)."""


class TicketFailure(BaseModel):
    """Why a bug's ticket could not be filed (kept on the bug; the session still completes)."""

    session_id: str
    fingerprint: str
    code: str
    message: str


class CrawlResult(BaseModel):
    """How a session ended."""

    session_id: str
    status: str
    pages_crawled: int
    pages_failed: int
    bugs_found: int
    tickets_filed: int
    truncated: bool
    stop_reason: str
    frontier_left: int


class CleanupRequest(BaseModel):
    """Delete sessions that finished more than ``retention_days`` ago (seed: cleanup_old_sessions)."""

    retention_days: float | None = Field(None, gt=0)
    """None: the configured ``crawl_retention_days``."""


class CleanupResult(BaseModel):
    """What the cleanup removed."""

    sessions: int = 0
    pages: int = 0
    bugs: int = 0
    tickets: int = 0
    screenshots: int = 0
    bytes_freed: int = 0


CrawlState.model_rebuild()
CrawlRequest.model_rebuild()
