"""Crawl activities with real components: SQLite, blobs, Chromium, and fakes of Linear and an OpenAI endpoint."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.crawl.activities import CrawlActivities, screenshot_key
from activities.crawl.agent import PageAgent
from activities.crawl.browser import BrowserPool
from activities.crawl.llm import LlmConfig
from activities.crawl.models import CrawlBug, CrawlBugPage, CrawlSession, Ticket
from activities.crawl.schemas import Finding, PageVisit, ScreenshotRequest, Severity, TicketRequest
from activities.crawl.triage import LINEAR_PRIORITY
from cli.sample_site import SampleSite
from conveyor.errors import BadInput, ConveyorError, ErrorKind
from conveyor.heartbeat import ProgressBox
from conveyor.settings import Settings
from tests.helpers import free_port
from tests.helpers.fakes import FakeLinear, FakeOpenAI, Recorded
from tests.helpers.stack import Stack
from workflows.crawl import TICKET_RETRY

T = TypeVar("T")

EXPECTED = Path(__file__).resolve().parents[2] / "samples" / "site" / "expected.json"
#: The outline the screenshot puts around a broken link (activities.crawl.activities.SCREENSHOT_STYLE).
HIGHLIGHT_RGB = (0xE5, 0x38, 0x3B)


def _expected() -> dict[str, Any]:
    return json.loads(EXPECTED.read_text())


def _planted(kind: str) -> dict[str, Any]:
    return next(b for b in _expected()["bugs"] if b["kind"] == kind)


def _opened(stack: Stack, key: str, kind: type[T]) -> T:
    """What the stack's crawl worker opened as ``key`` (its Chromium pool, its activities)."""

    def not_opened() -> T:
        raise AssertionError(f"the stack's crawl worker opened no {key!r}")

    found = stack.resources.shared(key, not_opened)
    assert isinstance(found, kind), found
    return found


def _browser(stack: Stack) -> BrowserPool:
    """The stack's crawl worker's Chromium pool."""
    return _opened(stack, "crawl.browser", BrowserPool)


def _crawl_activities(stack: Stack) -> CrawlActivities:
    """The stack's crawl worker's activities (sharing its Chromium pool)."""
    return _opened(stack, "crawl.activities", CrawlActivities)


async def _add_bug(
    stack: Stack,
    *,
    user_id: int,
    session_id: str | None = None,
    kind: str = "broken_link",
    severity: str = "high",
    page_url: str = "http://shop.example/checkout.html",
) -> tuple[str, CrawlBug]:
    """A bug row seen on ``page_url`` (and its crawl session, created unless given); (session id, bug)."""
    fingerprint = uuid.uuid4().hex[:16]
    async with stack.sessions.begin() as session:
        if session_id is None:
            session_id = str(uuid.uuid4())
            session.add(
                CrawlSession(id=session_id, user_id=user_id, url="http://shop.example/", config={}, status="running")
            )
            await session.flush()
        bug = CrawlBug(
            session_id=session_id,
            fingerprint=fingerprint,
            kind=kind,
            severity=severity,
            title=f"{kind.replace('_', ' ').capitalize()} on /checkout.html ({fingerprint[:6]})",
            description="A link on the page points to `/pricing`, which answered HTTP 404.",
            page_url=page_url,
            evidence={"target": "http://shop.example/pricing", "status": 404},
        )
        session.add(bug)
        await session.flush()
        session.add(CrawlBugPage(bug_id=bug.id, url=page_url, url_key=page_url))
    return session_id, bug


async def _stored_bug(stack: Stack, bug_id: int) -> CrawlBug:
    async with stack.sessions() as session:
        return await session.get_one(CrawlBug, bug_id)


async def _tickets_of(stack: Stack, session_id: str) -> list[Ticket]:
    async with stack.sessions() as session:
        return list(await session.scalars(select(Ticket).where(Ticket.session_id == session_id)))


# --------------------------------------------------------------------------------- tickets in Linear
@pytest.fixture
def linear() -> Iterator[FakeLinear]:
    """A running fake of Linear's GraphQL API."""
    with FakeLinear() as fake:
        yield fake


def _acts(stack: Stack, linear: FakeLinear, *, api_key: str | None = None) -> CrawlActivities:
    settings = Settings(
        var_dir=stack.settings.var_dir,
        linear_api_key=api_key or linear.api_key,
        linear_team_id=linear.team_id,
        linear_api_url=linear.url,
    )
    return CrawlActivities(stack.sessions, stack.blobs, settings, _browser(stack))


def _creates(linear: FakeLinear) -> list[Recorded]:
    return [r for r in linear.requests if "issueCreate" in r.json().get("query", "")]


async def test_ticket_is_filed_in_linear_once_with_the_bugs_details(stack: Stack, linear: FakeLinear) -> None:
    user_id, _ = await stack.new_user()
    session_id, bug = await _add_bug(stack, user_id=user_id, severity="high")
    acts = _acts(stack, linear)
    request = TicketRequest(session_id=session_id, fingerprint=bug.fingerprint)

    first = await ActivityEnvironment().run(acts.create_ticket, request)

    assert (first.provider, first.key, first.created) == ("linear", f"{linear.team_key}-1", True)
    issues = list(linear.issues.values())
    assert len(issues) == 1 and len(_creates(linear)) == 1
    issue = issues[0]
    assert issue["teamId"] == linear.team_id
    assert issue["title"] == bug.title
    assert issue["priority"] == LINEAR_PRIORITY[Severity.HIGH]
    assert bug.page_url in issue["description"] and bug.fingerprint in issue["description"]
    assert first.url == issue["url"]
    tickets = await _tickets_of(stack, session_id)
    assert [(t.provider, t.key, t.external_id, t.url) for t in tickets] == [
        ("linear", issue["identifier"], issue["id"], issue["url"])
    ]

    again = await ActivityEnvironment().run(acts.create_ticket, request)

    assert (again.provider, again.key, again.url, again.created) == ("linear", first.key, first.url, False)
    assert len(linear.issues) == 1 and len(_creates(linear)) == 1
    assert len(await _tickets_of(stack, session_id)) == 1


async def test_a_lost_answer_then_a_retry_files_exactly_one_issue(stack: Stack, linear: FakeLinear) -> None:
    user_id, _ = await stack.new_user()
    session_id, bug = await _add_bug(stack, user_id=user_id, severity="low")
    acts = _acts(stack, linear)
    request = TicketRequest(session_id=session_id, fingerprint=bug.fingerprint)
    linear.lose_next_answers(1)

    with pytest.raises(ConveyorError) as lost:
        await ActivityEnvironment().run(acts.create_ticket, request)

    assert lost.value.retryable, lost.value  # the retry policy tries again
    assert len(linear.issues) == 1  # Linear did create it; only its answer was lost
    assert await _tickets_of(stack, session_id) == []

    retried = await ActivityEnvironment().run(acts.create_ticket, request)

    issues = list(linear.issues.values())
    assert len(issues) == 1, issues
    assert (retried.key, retried.url, retried.created) == (issues[0]["identifier"], issues[0]["url"], True)
    assert issues[0]["priority"] == LINEAR_PRIORITY[Severity.LOW]
    assert [t.key for t in await _tickets_of(stack, session_id)] == [issues[0]["identifier"]]


async def test_a_refused_linear_key_fails_without_retries(stack: Stack, linear: FakeLinear) -> None:
    user_id, _ = await stack.new_user()
    session_id, bug = await _add_bug(stack, user_id=user_id)
    acts = _acts(stack, linear, api_key="lin_api_not_the_right_key")

    with pytest.raises(BadInput) as refused:
        await ActivityEnvironment().run(
            acts.create_ticket, TicketRequest(session_id=session_id, fingerprint=bug.fingerprint)
        )

    err = refused.value
    assert err.kind is ErrorKind.BAD_INPUT and err.code == "LINEAR_AUTH_FAILED" and not err.retryable
    assert "lin_api_not_the_right_key" not in err.message
    # what the worker's interceptor turns it into: a non-retryable ApplicationError of type BadInput
    app_error = err.to_application_error()
    assert app_error.type == "BadInput" and app_error.non_retryable and app_error.details[0] == "LINEAR_AUTH_FAILED"
    assert "BadInput" in TICKET_RETRY.non_retryable_error_types
    assert linear.issues == {} and await _tickets_of(stack, session_id) == []


# --------------------------------------------------------------------------------- LLM refinement
def _refined_title(bug: dict[str, Any]) -> str:
    return f"Refined: {bug['kind']} seen on {bug['page_url'].rsplit('/', 1)[-1]}"


def _refine(body: dict[str, Any]) -> dict[str, Any]:
    """The fake model's answer: a new title and description for every bug it was sent."""
    bugs = json.loads(body["messages"][-1]["content"])
    return {
        "bugs": [
            {"fingerprint": b["fingerprint"], "title": _refined_title(b), "description": f"Refined {b['kind']}."}
            for b in bugs
        ]
    }


async def _visit(stack: Stack, site: SampleSite, path: str, llm: LlmConfig | None) -> list[Finding]:
    agent = PageAgent(_browser(stack), llm)
    visit = PageVisit(
        session_id=str(uuid.uuid4()),
        url=site.url + path,
        depth=1,
        origin=site.url,
        slow_page_ms=_expected()["slow_page_ms"],
    )
    state = await agent.run(visit, ProgressBox())
    assert state.get("error") is None, state.get("error")
    return list(state["findings"])


@pytest.mark.needs_chromium
async def test_llm_refines_titles_but_never_the_facts(stack: Stack, sample_site: SampleSite) -> None:
    planted = _planted("console_error")
    page = planted["pages"][0]
    plain = await _visit(stack, sample_site, page, None)
    assert [f.kind.value for f in plain] == ["console_error"], plain
    with FakeOpenAI(content=_refine) as model:
        llm = LlmConfig(base_url=model.base_url, api_key=model.api_key, model="gpt-test", timeout_s=10)
        refined = await _visit(stack, sample_site, page, llm)
        asked = model.requests

    assert len(asked) == 1 and asked[0].json()["model"] == "gpt-test"
    assert [(f.fingerprint, f.kind, f.severity, f.page_url) for f in refined] == [
        (f.fingerprint, f.kind, f.severity, f.page_url) for f in plain
    ]
    assert [f.title for f in refined] == [_refined_title(f.model_dump(mode="json")) for f in plain]
    assert [f.description for f in refined] == [f"Refined {f.kind.value}." for f in plain]
    assert refined[0].evidence == plain[0].evidence
    assert planted["message"] in refined[0].evidence["message"]


@pytest.mark.needs_chromium
async def test_llm_endpoint_down_keeps_the_deterministic_titles(stack: Stack, sample_site: SampleSite) -> None:
    page = _planted("console_error")["pages"][0]
    plain = await _visit(stack, sample_site, page, None)
    down = LlmConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="sk-x", model="gpt-test", timeout_s=5)

    kept = await _visit(stack, sample_site, page, down)

    assert [(f.fingerprint, f.kind, f.severity, f.title, f.description) for f in kept] == [
        (f.fingerprint, f.kind, f.severity, f.title, f.description) for f in plain
    ]
    assert kept and kept[0].title.startswith("Console error")


# --------------------------------------------------------------------------------- screenshots
def _pixels(png: bytes) -> np.ndarray:
    """The RGB(A) pixels of a non-interlaced 8-bit truecolour PNG, as an array of rows x columns x channels."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8).reshape(height, width * bpp + 1)
    out = np.zeros((height, width * bpp), dtype=np.uint8)
    prev = np.zeros(width * bpp, dtype=np.int64)
    for y in range(height):
        kind, line = int(raw[y, 0]), raw[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = line.reshape(width, bpp).cumsum(axis=0).reshape(-1) % 256
        elif kind == 2:
            cur = (line + prev) % 256
        else:
            values, above, row = line.tolist(), prev.tolist(), [0] * (width * bpp)
            for i, value in enumerate(values):
                left = row[i - bpp] if i >= bpp else 0
                up = above[i]
                if kind == 3:
                    row[i] = (value + (left + up) // 2) & 0xFF
                    continue
                corner = above[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[i] = (value + guess) & 0xFF
            cur = np.array(row, dtype=np.int64)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)


def _highlighted(png: bytes) -> int:
    """How many pixels have the highlight's exact colour."""
    rgb = _pixels(png)[:, :, :3]
    return int(np.all(rgb == np.array(HIGHLIGHT_RGB, dtype=np.uint8), axis=2).sum())


@pytest.mark.needs_chromium
async def test_broken_link_screenshot_outlines_the_link_and_is_taken_once(
    stack: Stack, sample_site: SampleSite
) -> None:
    planted = _planted("broken_link")
    page_path = planted["pages"][0]
    page_url = sample_site.url + page_path
    user_id, _ = await stack.new_user()
    session_id, broken = await _add_bug(stack, user_id=user_id, page_url=page_url)
    _, plain = await _add_bug(
        stack, user_id=user_id, session_id=session_id, kind="missing_lang", severity="low", page_url=page_url
    )
    acts = _crawl_activities(stack)
    env = ActivityEnvironment()

    shot = await env.run(
        acts.upload_screenshot,
        ScreenshotRequest(
            session_id=session_id,
            fingerprint=broken.fingerprint,
            page_url=page_url,
            highlight_href=sample_site.url + planted["target"],
        ),
    )

    key = screenshot_key(session_id, broken.fingerprint)
    assert shot.key == key == f"crawl/{session_id}/screenshots/{broken.fingerprint}.png"
    data = await asyncio.to_thread(stack.blobs.get_bytes, key)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) == shot.size
    assert struct.unpack(">I", data[16:20])[0] == shot.width == 1280
    assert (await _stored_bug(stack, broken.id)).screenshot_key == key
    unhighlighted = await env.run(
        acts.upload_screenshot,
        ScreenshotRequest(session_id=session_id, fingerprint=plain.fingerprint, page_url=page_url),
    )
    other = await asyncio.to_thread(stack.blobs.get_bytes, unhighlighted.key or "")
    outlined, not_outlined = await asyncio.gather(
        asyncio.to_thread(_highlighted, data), asyncio.to_thread(_highlighted, other)
    )
    assert not_outlined == 0 and outlined >= 50, (outlined, not_outlined)

    loads = [r for r in list(sample_site.requests) if r == ("GET", page_path)]
    before = await asyncio.to_thread(stack.blobs.stat, key)
    again = await env.run(
        acts.upload_screenshot,
        ScreenshotRequest(
            session_id=session_id,
            fingerprint=broken.fingerprint,
            page_url=page_url,
            highlight_href=sample_site.url + planted["target"],
        ),
    )

    assert (again.key, again.size) == (key, shot.size)
    assert [r for r in list(sample_site.requests) if r == ("GET", page_path)] == loads  # the page was not loaded again
    assert (await asyncio.to_thread(stack.blobs.stat, key)).modified == before.modified
    async with stack.sessions() as session:
        shots = await session.scalar(
            select(func.count())
            .select_from(CrawlBug)
            .where(CrawlBug.session_id == session_id, CrawlBug.screenshot_key == key)
        )
    assert shots == 1
