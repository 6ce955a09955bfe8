"""The QA crawler end to end through the HTTP API: real dev server, workers, Chromium, SQLite and blobs."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from activities.crawl.activities import screenshot_key
from activities.crawl.browser import BrowserPool
from activities.crawl.contract import CLEANUP_WORKFLOW, DEFAULT_QUEUE, PIPELINE, START_SESSION
from activities.crawl.models import CrawlBug, CrawlBugPage, CrawlPage, CrawlSession, Ticket
from activities.crawl.schemas import CleanupRequest, CleanupResult
from activities.crawl.urls import url_key
from cli.sample_site import SampleSite
from tests.helpers import assert_eventually
from tests.helpers.stack import Stack
from workflows.crawl import CleanupCrawlSessionsWorkflow

EXPECTED = Path(__file__).resolve().parents[2] / "samples" / "site" / "expected.json"
TERMINAL = {"completed", "failed", "cancelled"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCREENSHOT_WIDTH = 1280
#: Severities that get a screenshot and a ticket under the default CONVEYOR_CRAWL_TICKET_MIN_SEVERITY (medium).
TICKETED = {"critical", "high", "medium"}


def _expected() -> dict[str, Any]:
    return json.loads(EXPECTED.read_text())


def _path(site: SampleSite, url: str) -> str:
    """The path (and query) of a URL of the sample site."""
    assert url.startswith(site.url), url
    return url[len(site.url) :]


def _key(site: SampleSite, path_or_url: str) -> str:
    """The page identity of a manifest entry (a path on the site, or an absolute URL elsewhere)."""
    return url_key(path_or_url if "://" in path_or_url else site.url + path_or_url)


def _browser(stack: Stack) -> BrowserPool:
    """The Chromium pool of the stack's crawl worker (opened when the worker was built)."""

    def not_opened() -> BrowserPool:
        raise AssertionError("the stack's crawl worker opened no browser pool")

    return stack.resources.shared("crawl.browser", not_opened)


def _png_width(data: bytes) -> int:
    assert data[:8] == PNG_SIGNATURE, data[:16]
    return int(struct.unpack(">I", data[16:20])[0])


async def _start(http: httpx.AsyncClient, url: str, **config: Any) -> dict[str, Any]:
    resp = await http.post("/api/crawls", json={"url": url, **config})
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def _why(crawl: dict[str, Any]) -> dict[str, Any]:
    """What a finished session says about how it ended (its error fields survive pytest's shortening)."""
    return {k: v for k, v in crawl.items() if k.startswith("error") or k in ("status", "stage", "stop_reason")}


async def _wait(
    http: httpx.AsyncClient,
    session_id: str,
    *,
    within_s: float = 180,
    seen: list[tuple[str, str | None]] | None = None,
) -> dict[str, Any]:
    """The session once it is finished; ``seen`` collects each (status, stage) it was read in on the way."""

    async def finished() -> dict[str, Any]:
        crawl = (await http.get(f"/api/crawls/{session_id}")).json()
        now = (crawl["status"], crawl["stage"])
        if seen is not None and (not seen or seen[-1] != now):
            seen.append(now)
        assert crawl["status"] in TERMINAL, crawl["status"]
        return dict(crawl)

    return await assert_eventually(finished, within_s=within_s, interval=0.1)


async def _bugs(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    resp = await http.get(f"/api/crawls/{session_id}/bugs", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["items"])
    return list(body["items"])


async def _pages(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    resp = await http.get(f"/api/crawls/{session_id}/pages", params={"limit": 1000})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["items"])
    return list(body["items"])


async def _tickets(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    resp = await http.get("/api/tickets", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["items"])
    return list(body["items"])


# --------------------------------------------------------------------------------- the full crawl
@dataclass
class FullCrawl:
    """One finished crawl of the sample site, shared by the tests that read it."""

    key: str
    started: dict[str, Any]
    statuses: list[tuple[str, str | None]]
    """Each (status, stage) the session was read in while it ran."""
    session: dict[str, Any]
    bugs: list[dict[str, Any]]
    pages: list[dict[str, Any]]
    elapsed_s: float
    manifest: dict[str, Any] = field(default_factory=_expected)


@pytest.fixture(scope="module")
async def full_crawl(stack: Stack, sample_site: SampleSite) -> FullCrawl:
    """A crawl of the whole sample site with the manifest's threshold and depth, run to completion."""
    manifest = _expected()
    _, key = await stack.new_user()
    began = time.monotonic()
    async with stack.http(key) as http:
        started = await _start(
            http,
            sample_site.url + "/",
            max_pages=50,
            max_depth=manifest["max_depth"],
            slow_page_ms=manifest["slow_page_ms"],
        )
        statuses: list[tuple[str, str | None]] = []
        session = await _wait(http, started["session_id"], seen=statuses)
        bugs = await _bugs(http, started["session_id"])
        pages = await _pages(http, started["session_id"])
    return FullCrawl(key, started, statuses, session, bugs, pages, time.monotonic() - began, manifest)


@pytest.mark.needs_chromium
async def test_crawl_is_queued_at_once_and_runs_to_completion(full_crawl: FullCrawl) -> None:
    started, session = full_crawl.started, full_crawl.session
    assert started["status"] == "queued"
    assert started["workflow_id"] == f"crawl-{started['session_id']}"
    assert started["workflow_url"].endswith(started["workflow_id"])
    assert session["status"] == "completed", session
    assert session["stop_reason"] == "exhausted" and session["truncated"] is False
    assert session["stage"] == "exhausted"
    assert session["error_code"] is None and session["error_kind"] is None and session["progress"] == 100
    # the lifecycle: queued, then running (stage starting, then crawling), then completed
    assert {status for status, _ in full_crawl.statuses} <= {"queued", "running", "completed"}, full_crawl.statuses
    assert all(status == "running" for status, stage in full_crawl.statuses if stage in ("starting", "crawling"))
    # the session was seen in flight (or at least recorded when it started) before it completed
    assert any(status == "running" for status, _ in full_crawl.statuses) or session["started_at"] is not None
    assert session["started_at"] is not None and session["completed_at"] is not None
    assert session["workflow_url"] and session["workflow_url"].endswith(started["workflow_id"])


@pytest.mark.needs_chromium
async def test_every_planted_bug_is_found_once_and_nothing_else(full_crawl: FullCrawl, sample_site: SampleSite) -> None:
    manifest, bugs = full_crawl.manifest, full_crawl.bugs
    summary = [(b["kind"], sorted(_path(sample_site, p) for p in b["pages"]), b["title"]) for b in bugs]
    unmatched = list(bugs)
    for planted in manifest["bugs"]:
        wanted = {_key(sample_site, p) for p in planted["pages"]}

        def matches(bug: dict[str, Any], planted: dict[str, Any] = planted, wanted: set[str] = wanted) -> bool:
            evidence = bug["evidence"]
            if bug["kind"] != planted["kind"] or not wanted <= {url_key(p) for p in bug["pages"]}:
                return False
            if "target" in planted and not (
                planted["target"] in str(evidence.get("target") or "") or planted["target"] in bug["title"]
            ):
                return False
            if "status" in planted and evidence.get("status") != planted["status"]:
                return False
            return "message" not in planted or planted["message"] in str(evidence.get("message") or bug["title"])

        found = [b for b in unmatched if matches(b)]
        assert len(found) == 1, (planted, summary)
        unmatched.remove(found[0])
    assert unmatched == [], f"bugs that were not planted: {[(b['kind'], b['pages'], b['title']) for b in unmatched]}"
    assert len(bugs) == len(manifest["bugs"]), summary


@pytest.mark.needs_chromium
async def test_no_bug_is_reported_on_a_clean_page(full_crawl: FullCrawl, sample_site: SampleSite) -> None:
    clean = {_key(sample_site, p) for p in full_crawl.manifest["clean_pages"]}
    for bug in full_crawl.bugs:
        assert not clean & {url_key(p) for p in bug["pages"]}, bug


@pytest.mark.needs_chromium
async def test_a_bug_seen_on_two_pages_is_one_bug_with_both_pages(
    full_crawl: FullCrawl, sample_site: SampleSite
) -> None:
    shared = [b for b in full_crawl.manifest["bugs"] if len(b["pages"]) > 1]
    assert shared, "the manifest plants a bug on several pages"
    for planted in shared:
        same = [
            b
            for b in full_crawl.bugs
            if b["kind"] == planted["kind"] and planted.get("target", "") in str(b["evidence"].get("target") or "")
        ]
        assert len(same) == 1, same
        assert {_path(sample_site, p) for p in same[0]["pages"]} >= set(planted["pages"])
        assert same[0]["occurrences"] == len(same[0]["pages"]) >= len(planted["pages"])


@pytest.mark.needs_chromium
async def test_pages_are_visited_once_within_depth_and_robots(full_crawl: FullCrawl, sample_site: SampleSite) -> None:
    manifest, pages = full_crawl.manifest, full_crawl.pages
    visits = Counter(url_key(p["url"]) for p in pages)
    for path in manifest["must_visit"]:
        assert visits[_key(sample_site, path)] == 1, (path, sorted(visits))
    for path in manifest["never_visit"]:
        assert visits[_key(sample_site, path)] == 0, path
    for variants in manifest["same_page_variants"]:
        keys = {_key(sample_site, v) for v in variants}
        assert sum(visits[k] for k in keys) == 1, variants
    assert max(p["depth"] for p in pages) <= manifest["max_depth"]
    depths = {_key(sample_site, path): depth for path, depth in manifest["depths"].items()}
    for page in pages:
        if url_key(page["url"]) in depths:
            assert page["depth"] == depths[url_key(page["url"])], page
    # the site never served a page it must not be crawled for: nothing under /private/ (robots.txt), and no
    # browser visit (GET) of a page beyond the depth limit
    local_never = [p for p in manifest["never_visit"] if "://" not in p]
    for method, path in list(sample_site.requests):
        assert not path.startswith("/private/"), (method, path)
        if method == "GET":
            assert path.split("#")[0] not in local_never, (method, path)


@pytest.mark.needs_chromium
async def test_every_bug_from_medium_up_has_a_screenshot_and_a_builtin_ticket(
    full_crawl: FullCrawl, stack: Stack, sample_site: SampleSite
) -> None:
    """Bugs below CONVEYOR_CRAWL_TICKET_MIN_SEVERITY (medium) stay listed, with neither screenshot nor ticket."""
    ticketed = [bug for bug in full_crawl.bugs if bug["severity"] in TICKETED]
    for bug in full_crawl.bugs:
        if bug["severity"] not in TICKETED:
            assert bug["ticket"] is None and bug["screenshot_url"] is None, bug
    async with stack.http(full_crawl.key) as http:
        for bug in ticketed:
            assert bug["screenshot_url"], bug
            shot = await http.get(bug["screenshot_url"])
            assert shot.status_code == 200, (bug["title"], shot.text[:200])
            assert shot.headers["content-type"] == "image/png"
            assert _png_width(shot.content) == SCREENSHOT_WIDTH
            ticket = bug["ticket"]
            assert ticket is not None and bug["ticket_error"] is None, bug
            assert ticket["provider"] == "builtin" and re.fullmatch(r"BUG-\d+", ticket["key"]), ticket
            full = await http.get(f"/api/tickets/{ticket['key']}")
            assert full.status_code == 200, full.text
            assert full.json()["fingerprint"] == bug["fingerprint"]
            assert full.json()["session_id"] == full_crawl.started["session_id"]
            assert bug["page"] in full.json()["description"], full.json()["description"]
            assert full.json()["url"].endswith(f"/api/tickets/{ticket['key']}")
        tickets = await _tickets(http)
    assert sorted(t["key"] for t in tickets) == sorted(b["ticket"]["key"] for b in ticketed)
    assert len(tickets) == len(ticketed) < len(full_crawl.bugs)


@pytest.mark.needs_chromium
async def test_session_counters_match_what_is_listed(full_crawl: FullCrawl, stack: Stack) -> None:
    assert full_crawl.session["pages_crawled"] == len(full_crawl.pages)
    assert full_crawl.session["bugs_found"] == len(full_crawl.bugs)
    async with stack.http(full_crawl.key) as http:
        listed = (await http.get("/api/crawls")).json()
    assert listed["total"] == 1
    assert listed["items"][0]["session_id"] == full_crawl.started["session_id"]
    assert listed["items"][0]["bugs_found"] == len(full_crawl.bugs)


@pytest.mark.needs_chromium
async def test_rerun_merges_bugs_and_files_no_ticket_twice(full_crawl: FullCrawl, stack: Stack) -> None:
    """Runs last in this module: it crawls the shared session again."""
    session_id = full_crawl.started["session_id"]
    async with stack.http(full_crawl.key) as http:
        tickets_before = await _tickets(http)
        resp = await http.post(f"/api/crawls/{session_id}/rerun")
        assert resp.status_code == 202, resp.text
        assert resp.json()["session_id"] == session_id and resp.json()["status"] == "queued"
        again = await _wait(http, session_id)
        bugs = await _bugs(http, session_id)
        tickets_after = await _tickets(http)
        pages = await _pages(http, session_id)
    assert again["status"] == "completed", again
    assert len(bugs) == len(full_crawl.bugs) == again["bugs_found"]
    assert {b["fingerprint"]: b["ticket"] and b["ticket"]["key"] for b in bugs} == {
        b["fingerprint"]: b["ticket"] and b["ticket"]["key"] for b in full_crawl.bugs
    }
    assert len(tickets_after) == len(tickets_before) == sum(1 for b in bugs if b["severity"] in TICKETED)
    assert {url_key(p["url"]) for p in pages} == {url_key(p["url"]) for p in full_crawl.pages}


# --------------------------------------------------------------------------------- budgets and failures
@pytest.mark.needs_chromium
async def test_page_budget_stops_the_crawl(stack: Stack, sample_site: SampleSite) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        started = await _start(http, sample_site.url + "/", max_pages=3)
        crawl = await _wait(http, started["session_id"])
        pages = await _pages(http, started["session_id"])
    assert crawl["status"] == "completed", _why(crawl)
    assert crawl["pages_crawled"] == 3 == len(pages)
    assert crawl["stop_reason"] == "page_budget"


@pytest.mark.needs_chromium
async def test_depth_zero_visits_only_the_start_page(stack: Stack, sample_site: SampleSite) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        started = await _start(http, sample_site.url + "/", max_depth=0)
        crawl = await _wait(http, started["session_id"])
        pages = await _pages(http, started["session_id"])
    assert crawl["status"] == "completed", _why(crawl)
    assert [(url_key(p["url"]), p["depth"]) for p in pages] == [(url_key(sample_site.url + "/"), 0)]
    assert crawl["pages_crawled"] == 1 and crawl["stop_reason"] == "exhausted"


async def test_unreachable_start_url_fails_fast_without_retries(stack: Stack) -> None:
    url = stack.closed_url  # allowed by the stack's network policy, nothing listens
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        started = await _start(http, url)
        crawl = await _wait(http, started["session_id"], within_s=20)  # fast: no retry delays
    assert crawl["status"] == "failed", crawl
    assert crawl["error_kind"] == "BadInput" and crawl["error_code"] == "START_URL_UNREACHABLE"
    assert url.rstrip("/") in crawl["error_message"], crawl["error_message"]
    history = await stack.client.get_workflow_handle(started["workflow_id"]).fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    runs = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    start_runs = [r for r in runs if scheduled[r.scheduled_event_id] == START_SESSION]
    assert len(start_runs) == 1 and start_runs[0].attempt == 1, runs


@pytest.mark.needs_chromium
async def test_start_page_answering_5xx_is_a_bug_not_a_crash(stack: Stack, sample_site: SampleSite) -> None:
    page = next(b for b in _expected()["bugs"] if b["kind"] == "server_error")["pages"][0]
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        started = await _start(http, sample_site.url + page, max_depth=0)
        crawl = await _wait(http, started["session_id"])
        bugs = await _bugs(http, started["session_id"])
    assert crawl["status"] == "completed", _why(crawl)
    assert [(b["kind"], [_path(sample_site, p) for p in b["pages"]]) for b in bugs] == [("server_error", [page])]
    assert bugs[0]["severity"] == "critical"


@pytest.mark.needs_chromium
async def test_cancel_mid_crawl_keeps_found_bugs_and_frees_the_browser(stack: Stack, sample_site: SampleSite) -> None:
    manifest = _expected()
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        started = await _start(
            http, sample_site.url + "/", max_depth=manifest["max_depth"], slow_page_ms=manifest["slow_page_ms"]
        )
        session_id = started["session_id"]

        async def some_bugs_found() -> dict[str, Any]:
            crawl = (await http.get(f"/api/crawls/{session_id}")).json()
            if crawl["status"] in TERMINAL:
                pytest.fail(f"the crawl ended before it could be cancelled: {crawl}")
            assert crawl["bugs_found"] >= 1 and crawl["pages_crawled"] >= 2, crawl
            return dict(crawl)

        before = await assert_eventually(some_bugs_found, within_s=120, interval=0.05)
        resp = await http.post(f"/api/crawls/{session_id}/cancel")
        assert resp.status_code == 202, resp.text

        async def cancelled() -> dict[str, Any]:
            crawl = (await http.get(f"/api/crawls/{session_id}")).json()
            assert crawl["status"] == "cancelled", crawl["status"]
            return dict(crawl)

        crawl = await assert_eventually(cancelled, within_s=10, interval=0.1)  # promptly, not after the crawl
        bugs = await _bugs(http, session_id)
        second = await http.post(f"/api/crawls/{session_id}/cancel")

    async def browser_idle() -> None:
        assert _browser(stack).open_contexts == 0

    await assert_eventually(browser_idle, within_s=10)
    assert crawl["stop_reason"] == "cancelled" and crawl["completed_at"] is not None
    assert crawl["error_code"] is None
    assert len(bugs) >= before["bugs_found"] and crawl["bugs_found"] == len(bugs)
    assert crawl["pages_crawled"] < len(manifest["must_visit"])
    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "SESSION_FINISHED"


# --------------------------------------------------------------------------------- validation and ownership
@pytest.mark.parametrize("url", ["ftp://x", "not a url", ""])
async def test_bad_start_urls_are_refused(stack: Stack, url: str) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        resp = await http.post("/api/crawls", json={"url": url})
        listed = (await http.get("/api/crawls")).json()
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "BAD_URL"
    assert listed["total"] == 0


async def test_page_budget_over_the_limit_is_refused(stack: Stack, sample_site: SampleSite) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        resp = await http.post("/api/crawls", json={"url": sample_site.url + "/", "max_pages": 1001})
        listed = (await http.get("/api/crawls")).json()
    assert resp.status_code == 422, resp.text
    assert listed["total"] == 0


@pytest.mark.needs_chromium
async def test_another_users_session_is_not_found_and_keys_are_required(stack: Stack, sample_site: SampleSite) -> None:
    _, owner_key = await stack.new_user()
    _, other_key = await stack.new_user()
    async with stack.http(owner_key) as owner, stack.http(other_key) as other, stack.http(None) as anonymous:
        started = await _start(owner, sample_site.url + "/", max_depth=0)
        sid = started["session_id"]
        for method, url in [
            ("GET", f"/api/crawls/{sid}"),
            ("GET", f"/api/crawls/{sid}/bugs"),
            ("GET", f"/api/crawls/{sid}/pages"),
            ("POST", f"/api/crawls/{sid}/cancel"),
            ("POST", f"/api/crawls/{sid}/rerun"),
        ]:
            resp = await other.request(method, url)
            assert resp.status_code == 404, (method, url, resp.text)
            assert (await anonymous.request(method, url)).status_code == 401, (method, url)
        assert (await anonymous.get("/api/crawls")).status_code == 401
        assert (await anonymous.post("/api/crawls", json={"url": sample_site.url + "/"})).status_code == 401
        assert (await anonymous.get("/api/tickets")).status_code == 401
        assert (await other.get("/api/crawls")).json()["total"] == 0
        crawl = await _wait(owner, sid)
    assert crawl["status"] == "completed"  # the other user's cancel did not touch it


# --------------------------------------------------------------------------------- retention
async def _add_session(stack: Stack, user_id: int, created: datetime) -> tuple[str, str]:
    """A finished session with a page, a bug seen on it, its ticket and its screenshot; (session id, blob key)."""
    session_id = str(uuid.uuid4())
    fingerprint = uuid.uuid4().hex[:16]
    page_url = "http://shop.example/checkout.html"
    key = screenshot_key(session_id, fingerprint)
    async with stack.sessions.begin() as session:
        session.add(
            CrawlSession(
                id=session_id,
                user_id=user_id,
                url="http://shop.example/",
                config={},
                status="completed",
                created_at=created,
                updated_at=created,
            )
        )
        await session.flush()
        bug = CrawlBug(
            session_id=session_id,
            fingerprint=fingerprint,
            kind="missing_title",
            severity="low",
            title="Page without a title: /checkout.html",
            page_url=page_url,
            evidence={},
            screenshot_key=key,
        )
        session.add_all([bug, CrawlPage(session_id=session_id, url=page_url, url_key=page_url, depth=0)])
        await session.flush()
        session.add(CrawlBugPage(bug_id=bug.id, url=page_url, url_key=page_url))
        session.add(
            Ticket(
                user_id=user_id,
                session_id=session_id,
                bug_id=bug.id,
                fingerprint=fingerprint,
                provider="builtin",
                key=f"BUG-{uuid.uuid4().hex[:8]}",
                title=bug.title,
                severity="low",
            )
        )
    await asyncio.to_thread(stack.blobs.put_bytes, key, PNG_SIGNATURE + b"\x00" * 2048, "image/png")
    return session_id, key


async def _rows(stack: Stack, session_id: str) -> dict[str, int]:
    async with stack.sessions() as session:
        bug_ids = select(CrawlBug.id).where(CrawlBug.session_id == session_id)
        counts = {}
        for name, model, where in [
            ("sessions", CrawlSession, CrawlSession.id == session_id),
            ("pages", CrawlPage, CrawlPage.session_id == session_id),
            ("bugs", CrawlBug, CrawlBug.session_id == session_id),
            ("bug_pages", CrawlBugPage, CrawlBugPage.bug_id.in_(bug_ids)),
            ("tickets", Ticket, Ticket.session_id == session_id),
        ]:
            counts[name] = int(await session.scalar(select(func.count()).select_from(model).where(where)) or 0)
        return counts


async def test_cleanup_deletes_old_sessions_with_their_files_and_keeps_recent_ones(stack: Stack) -> None:
    user_id, key = await stack.new_user()
    old_id, old_blob = await _add_session(stack, user_id, datetime.now(UTC) - timedelta(days=40))
    recent_id, recent_blob = await _add_session(stack, user_id, datetime.now(UTC) - timedelta(days=1))
    result = await stack.client.execute_workflow(
        CleanupCrawlSessionsWorkflow.run,
        CleanupRequest(retention_days=30),
        id=f"crawl-cleanup-test-{uuid.uuid4()}",
        task_queue=DEFAULT_QUEUE,
        execution_timeout=timedelta(minutes=2),
    )
    assert isinstance(result, CleanupResult)
    assert (result.sessions, result.pages, result.bugs, result.tickets, result.screenshots) == (1, 1, 1, 1, 1)
    assert result.bytes_freed > 0
    assert await _rows(stack, old_id) == {"sessions": 0, "pages": 0, "bugs": 0, "bug_pages": 0, "tickets": 0}
    assert await _rows(stack, recent_id) == {"sessions": 1, "pages": 1, "bugs": 1, "bug_pages": 1, "tickets": 1}
    assert not await asyncio.to_thread(stack.blobs.exists, old_blob)
    assert await asyncio.to_thread(stack.blobs.exists, recent_blob)
    async with stack.http(key) as http:
        assert (await http.get(f"/api/crawls/{old_id}")).status_code == 404
        assert (await http.get(f"/api/crawls/{recent_id}")).status_code == 200
        assert [t["session_id"] for t in await _tickets(http)] == [recent_id]


def test_cleanup_is_scheduled_daily_at_three() -> None:
    schedule = next(s for s in PIPELINE.schedules if s.id == "crawl-cleanup")
    assert schedule.cron == "0 3 * * *"
    assert schedule.workflow == CLEANUP_WORKFLOW == CleanupCrawlSessionsWorkflow.__name__
    assert schedule.queue == DEFAULT_QUEUE == "crawl.default"
    assert isinstance(schedule.arg, CleanupRequest)
