"""Slow pages are the server's slowness, measured twice, never the crawling browser's (real Chromium).

A page is slow when the server's share of its load (request sent → last byte, of the document and of its
slowest sub-resource, as the network stack stamps them) exceeds the threshold and a second measurement outside
the browser agrees. A busy worker stretches the browser's load event, not these.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.crawl import agent as agent_module
from activities.crawl.agent import PageAgent, VisitState
from activities.crawl.browser import BrowserPool
from activities.crawl.probe import ServerWait, confirmed_slow, server_time
from activities.crawl.schemas import BugKind, Finding, PageVisit
from conveyor.heartbeat import ProgressBox
from conveyor.netpolicy import NetPolicy
from conveyor.settings import Settings
from tests.helpers import TEST_CHROMIUM_ARGS
from tests.helpers.fakes import FakeHttpServer, Recorded, Response

pytestmark = pytest.mark.needs_chromium

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "samples" / "site" / "expected.json"
THRESHOLD_MS = 400
#: The threshold while the CPU is saturated: low (a clean page's server answers in a few ms), under the 1.2 s delay.
BUSY_THRESHOLD_MS = 500
#: The server's delay in the slow cases: three times the threshold, so no rounding can hide it.
DELAY_S = 1.2
#: Busy-loop processes: more than the CPUs of a small CI runner, so the browser's renderer is starved.
BURNERS = 3

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/{css}"></head>
<body><h1>{title}</h1><p>Fresh bread daily.</p></body></html>
"""


def _site(*, slow_path: str | None = None, only_first: bool = False, css: str = "site.css") -> Callable[..., Response]:
    """A handler serving ``/`` and its stylesheet; ``slow_path`` answers after ``DELAY_S`` (the first time only
    when ``only_first``)."""
    answered: set[str] = set()

    def handle(request: Recorded) -> Response:
        path = request.path.split("?")[0]
        if path == slow_path and request.method == "GET" and not (only_first and path in answered):
            time.sleep(DELAY_S)  # the server is slow: this is what the crawler must measure
        answered.add(path)
        if path == "/":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, _PAGE.format(title="Bakery", css=css).encode()
        if path.endswith(".css"):
            return 200, {"Content-Type": "text/css"}, b"body { font-family: serif; }"
        return 404, {"Content-Type": "text/plain"}, b"not found"

    return handle


def _visit(url: str, origin: str, threshold_ms: int = THRESHOLD_MS) -> PageVisit:
    return PageVisit(session_id="s", url=url, depth=0, origin=origin, slow_page_ms=threshold_ms, check_links=False)


def _slow(state: VisitState) -> list[Finding]:
    return [f for f in state["findings"] if f.kind == BugKind.SLOW_PAGE]


def _allow(agent: PageAgent, url: str) -> None:
    """Let the agent's browser reach exactly ``url``'s loopback server (the policy denies loopback otherwise)."""
    agent.pool.policy = NetPolicy.build(allowed_hosts=[url.removeprefix("http://")])


def _gets(server: FakeHttpServer, path: str) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path == path)


@pytest.fixture(scope="module")
async def agent() -> AsyncIterator[PageAgent]:
    pool = BrowserPool(Settings().chromium_path, TEST_CHROMIUM_ARGS, "ConveyorBot/0.1")  # each test allows its site
    try:
        yield PageAgent(pool)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def site_process() -> Iterator[str]:
    """The bundled sample site served by a process of its own; its URL.

    In this process its server threads would wait for the GIL behind the Playwright client, so the test's own
    work would slow the site itself (a real server slowness, measured as it should be); a site on another
    machine, as in production, is not slowed by the crawler's load.
    """
    serve = (
        "import sys\nfrom cli.sample_site import sample_site\n"
        "with sample_site() as site:\n    print(site.url, flush=True)\n    sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", serve], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        url = child.stdout.readline().strip()  # printed once it listens
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        child.stdin.close()  # end of input: the site stops
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@pytest.fixture
def busy_cpu() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Saturate every CPU with busy-loop processes for the test's duration."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BURNERS)]
    try:
        yield burners
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait(timeout=10)


# ------------------------------------------------------------------------------------ real Chromium
async def test_a_page_whose_server_answers_slowly_is_a_slow_page(agent: PageAgent) -> None:
    with FakeHttpServer(_site(slow_path="/")) as server:
        _allow(agent, server.url)
        state = await agent.run(_visit(f"{server.url}/", server.url), ProgressBox())

    assert state.get("error") is None and state["status"] == 200
    [finding] = _slow(state)
    detail = finding.evidence["detail"]
    assert detail["threshold_ms"] == THRESHOLD_MS
    # both measurements saw the server's delay: the browser's load and the re-request outside it
    assert detail["first_ms"] >= DELAY_S * 1000 - 50 and detail["second_ms"] >= DELAY_S * 1000 - 50
    assert detail["load_ms"] == min(detail["first_ms"], detail["second_ms"])
    assert detail["document_ms"] >= DELAY_S * 1000 - 50
    assert state["load_ms"] == detail["first_ms"]  # the page record keeps the server-side time
    assert _gets(server, "/") == 2  # the visit, then the confirmation


async def test_a_slow_stylesheet_makes_the_page_slow_and_is_named(agent: PageAgent) -> None:
    with FakeHttpServer(_site(slow_path="/slow.css", css="slow.css")) as server:
        _allow(agent, server.url)
        state = await agent.run(_visit(f"{server.url}/", server.url), ProgressBox())

    [finding] = _slow(state)
    detail = finding.evidence["detail"]
    assert detail["slowest_resource"] == f"{server.url}/slow.css"
    assert detail["resource_ms"] >= DELAY_S * 1000 - 50 and detail["second_ms"] >= DELAY_S * 1000 - 50
    assert _gets(server, "/slow.css") == 2


async def test_one_slow_answer_that_a_second_measurement_contradicts_is_not_filed(agent: PageAgent) -> None:
    with FakeHttpServer(_site(slow_path="/", only_first=True)) as server:
        _allow(agent, server.url)
        state = await agent.run(_visit(f"{server.url}/", server.url), ProgressBox())

    assert state.get("error") is None and state["status"] == 200
    assert _slow(state) == []
    assert state["load_ms"] >= DELAY_S * 1000 - 50  # the load itself was slow, and is recorded as such
    assert _gets(server, "/") == 2  # it was measured again, and the second time was fast


async def test_a_navigation_that_times_out_is_still_a_slow_page(
    agent: PageAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "NAVIGATION_TIMEOUT_MS", 300)
    with FakeHttpServer(_site(slow_path="/")) as server:
        _allow(agent, server.url)
        state = await agent.run(_visit(f"{server.url}/", server.url, threshold_ms=200), ProgressBox())

    assert state["error"] == "navigation timed out"
    [finding] = _slow(state)
    assert finding.evidence["detail"] == {"load_ms": 300, "threshold_ms": 200, "timed_out": True}


async def test_fast_pages_are_not_slow_while_the_cpu_is_saturated(
    agent: PageAgent, site_process: str, busy_cpu: list[subprocess.Popen[bytes]]
) -> None:
    _allow(agent, site_process)
    urls = [f"{site_process}{path}" for path in json.loads(EXPECTED.read_text())["clean_pages"]]

    states = [await agent.run(_visit(url, site_process, BUSY_THRESHOLD_MS), ProgressBox()) for url in urls]

    assert all(burner.poll() is None for burner in busy_cpu), "the CPU stayed busy throughout"
    for url, state in zip(urls, states, strict=True):
        assert state.get("error") is None and state["status"] == 200, (url, state.get("error"))
        assert _slow(state) == [], (url, [f.evidence for f in _slow(state)])


# ------------------------------------------------------------------------------------ pure rules
def _entry(url: str, request_start: float, response_end: float, start_time: float = 0.0) -> dict[str, Any]:
    return {"url": url, "startTime": start_time, "requestStart": request_start, "responseEnd": response_end}


def test_server_time_is_the_document_plus_the_slowest_sub_resource_past_it() -> None:
    timing = {
        "loadEventEnd": 2400.0,
        "navigation": _entry("http://s/", 5.0, 25.0),
        "resources": [
            # requested 1.5 s later (a starved renderer parsed slowly) but answered in 20 ms: 20 ms counts
            _entry("http://s/a.css", 1500.0, 1520.0, start_time=1490.0),
            _entry("http://s/b.js", 1500.0, 1560.0, start_time=1490.0),
            # fetched by the preload scanner while the document streamed: only its part past the document counts
            _entry("http://s/c.png", 10.0, 40.0, start_time=8.0),
        ],
    }

    measured = server_time(timing)

    assert measured.document == ServerWait("http://s/", 5.0, 25.0)
    assert measured.resource is not None and measured.resource.url == "http://s/b.js"
    assert (measured.document_ms, measured.resource_ms, measured.total_ms) == (20, 60, 80)


def test_server_time_leaves_out_requests_made_after_the_load() -> None:
    timing = {
        "loadEventEnd": 100.0,
        "navigation": _entry("http://s/", 1.0, 11.0),
        "resources": [_entry("http://s/poll", 200.0, 5200.0, start_time=150.0)],
    }

    assert server_time(timing).total_ms == 10


def test_hidden_request_times_fall_back_to_the_time_to_first_byte() -> None:
    timing = {
        "loadEventEnd": 900.0,
        "navigation": _entry("http://s/", 1.0, 11.0),
        # cross-origin without Timing-Allow-Origin: requestStart hidden (0)
        "resources": [_entry("http://cdn/x.js", 0.0, 800.0, start_time=20.0), _entry("http://cdn/y.js", 0.0, 700.0)],
    }

    measured = server_time(timing, {"http://cdn/x.js": 500.0})

    assert measured.resource == ServerWait("http://cdn/x.js", 300.0, 800.0)  # y.js cannot be told: left out
    assert measured.total_ms == 10 + 500


def test_no_timing_is_no_server_time() -> None:
    assert server_time(None).total_ms == 0
    assert server_time({"navigation": None, "resources": []}).total_ms == 0


@pytest.mark.parametrize(
    ("first_ms", "second_ms", "slow"),
    [
        (1200, 1250, True),
        (1200, 300, False),  # a one-off: the second measurement was fast
        (1200, None, False),  # no second measurement: nothing confirmed
        (300, 1200, False),  # the load itself was fast
        (400, 900, False),  # at the threshold is not over it
        (401, 401, True),
    ],
)
def test_a_slow_page_needs_both_measurements_over_the_threshold(
    first_ms: int, second_ms: int | None, slow: bool
) -> None:
    assert confirmed_slow(first_ms, second_ms, THRESHOLD_MS) is slow
