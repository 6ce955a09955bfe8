"""The QA agent of one page, as a LangGraph graph: navigate → collect signals → triage → (refine) → extract links.

Each node is a step a reviewer can point at: ``navigate`` loads the page in a fresh browser context with
listeners attached, waits for the network to go quiet and measures the server's share of the load; ``collect``
reads the DOM (title, lang, images, links), checks every internal link and confirms a slow load by timing the
slow responses again; ``triage`` folds signals into fingerprinted findings by deterministic
rules; ``refine`` (only when an OpenAI-compatible endpoint is configured) rewords titles and descriptions;
``extract_links`` leaves the links the session may visit next.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from activities.crawl.browser import BrowserPool
from activities.crawl.llm import LlmConfig, refine_findings
from activities.crawl.probe import (
    DOM_SCRIPT,
    RESPONSE_TIMING_SCRIPT,
    PageProbe,
    ServerTime,
    confirmed_slow,
    dom_signals,
    server_time,
)
from activities.crawl.proxy import BlockedRequest
from activities.crawl.schemas import BugKind, Finding, PageVisit, Signal
from activities.crawl.triage import triage
from activities.crawl.urls import normalize_url, should_visit, url_key
from conveyor.errors import BadInput, Retryable
from conveyor.heartbeat import ProgressBox
from conveyor.netpolicy import UrlNotAllowed, canonical_host

NAVIGATION_TIMEOUT_MS = 30_000
LINK_CHECK_TIMEOUT_MS = 10_000
LINK_CHECK_PARALLEL = 8
MAX_LINKS = 1000
#: Navigation errors that mean the host cannot be reached at all (fatal for a start URL).
UNREACHABLE = (
    "net::ERR_CONNECTION_REFUSED",
    "net::ERR_NAME_NOT_RESOLVED",
    "net::ERR_NAME_RESOLUTION_FAILED",
    "net::ERR_ADDRESS_UNREACHABLE",
    "net::ERR_CONNECTION_TIMED_OUT",
    "net::ERR_INTERNET_DISCONNECTED",
)
#: Playwright errors that mean the browser (not the page) went away: retried on a fresh browser.
BROWSER_GONE = ("Target crashed", "has been closed", "Browser closed", "browser has disconnected", "Connection closed")


@dataclass
class LinkChecks:
    """How many links a visit checked over the network, and how many it left unchecked for want of budget."""

    made: int = 0
    skipped: int = 0


class VisitState(TypedDict, total=False):
    """The graph's state for one page visit."""

    visit: PageVisit
    context: BrowserContext
    progress: ProgressBox
    page: Page
    probe: PageProbe
    status: int | None
    final_url: str
    is_html: bool
    load_ms: int
    server: ServerTime
    title: str
    raw_links: list[str]
    link_checks: int
    link_checks_skipped: int
    signals: list[Signal]
    findings: list[Finding]
    links: list[str]
    error: str | None


def browser_gone(err: BaseException) -> bool:
    """Whether a Playwright error means the browser crashed or closed under us."""
    return isinstance(err, PlaywrightError) and any(s in str(err) for s in BROWSER_GONE)


class PageAgent:
    """Builds the page graph once per worker and runs it for each visit."""

    def __init__(self, pool: BrowserPool, llm: LlmConfig | None = None) -> None:
        self.pool = pool
        self.llm = llm
        graph = StateGraph(VisitState)
        graph.add_node("navigate", self.navigate)
        graph.add_node("collect", self.collect)
        graph.add_node("triage", self.triage)
        graph.add_node("refine", self.refine)
        graph.add_node("extract_links", self.extract_links)
        graph.add_edge(START, "navigate")
        graph.add_edge("navigate", "collect")
        graph.add_edge("collect", "triage")
        graph.add_conditional_edges("triage", self._after_triage, ["refine", "extract_links"])
        graph.add_edge("refine", "extract_links")
        graph.add_edge("extract_links", END)
        self.graph: CompiledStateGraph[VisitState, Any, VisitState, VisitState] = graph.compile()

    async def run(self, visit: PageVisit, progress: ProgressBox) -> VisitState:
        """Visit one page in a fresh context and return the final state."""
        async with self.pool.context() as context:
            try:
                result = await self.graph.ainvoke({"visit": visit, "context": context, "progress": progress})
            except PlaywrightError as err:
                if browser_gone(err):
                    raise Retryable(
                        f"the browser went away while visiting {visit.url}", code="BROWSER_CRASHED"
                    ) from err
                raise
            return cast(VisitState, result)

    def _unreachable(self, context: BrowserContext, url: str) -> str | None:
        """Why the filtering proxy could not reach ``url``'s host and port, if it could not."""
        endpoint = _endpoint(url)
        return self.pool.unreachable(context, *endpoint) if endpoint is not None else None

    def _after_triage(self, state: VisitState) -> str:
        return "refine" if self.llm is not None and state.get("findings") else "extract_links"

    async def navigate(self, state: VisitState) -> VisitState:
        """Load the page with listeners attached, wait until its network is quiet, measure the server's share."""
        visit = state["visit"]
        state["progress"].set({"stage": "navigate", "url": visit.url})
        page = await state["context"].new_page()
        probe = PageProbe(visit.url)
        probe.attach(page)
        try:
            response = await page.goto(visit.url, wait_until="load", timeout=NAVIGATION_TIMEOUT_MS)
        except PlaywrightTimeout:
            probe.signals.append(
                Signal(
                    kind=BugKind.SLOW_PAGE,
                    page_url=visit.url,
                    detail={"load_ms": NAVIGATION_TIMEOUT_MS, "threshold_ms": visit.slow_page_ms, "timed_out": True},
                )
            )
            return {
                "page": page,
                "probe": probe,
                "status": None,
                "final_url": visit.url,
                "is_html": False,
                "load_ms": NAVIGATION_TIMEOUT_MS,
                "error": "navigation timed out",
            }
        except PlaywrightError as err:
            if browser_gone(err):
                raise
            # through the filtering proxy a closed port is a failed tunnel: the proxy knows the real reason
            reason = self._unreachable(state["context"], visit.url) or _net_error(str(err))
            return _unreachable_page(visit, page, probe, reason)
        if response is not None:
            probe.document_request = response.request
        down = self._unreachable(state["context"], page.url)
        if down is not None:  # the proxy's 502 for a host it could not reach (plain http)
            return _unreachable_page(visit, page, probe, down)
        refused = _refusal(self.pool.blocked(state["context"]), page.url)
        if refused is not None:
            # the document (or a redirect hop of it) was refused: what answered is the proxy, not the site
            return _no_document(visit, page, probe, f"blocked by the network policy: {refused.reason}")
        await probe.settle()
        # The server's share of the load, not the browser's load event or the wall clock: on a busy machine the
        # renderer's parsing, scripts and layout stretch those, and a QA crawler must not file that as the
        # site's slowness (see ServerTime for what counts).
        server = server_time(await page.evaluate(RESPONSE_TIMING_SCRIPT), probe.ttfb_ms)
        status = response.status if response is not None else None
        content_type = (await response.header_value("content-type") or "") if response is not None else ""
        return {
            "page": page,
            "probe": probe,
            "status": status,
            "final_url": page.url,
            "is_html": "html" in content_type or not content_type,
            "load_ms": server.total_ms,
            "server": server,
            "error": None,
        }

    async def collect(self, state: VisitState) -> VisitState:
        """Turn what the page did into signals: status, sub-requests, console, errors, DOM faults, links."""
        visit = state["visit"]
        state["progress"].set({"stage": "collect", "url": visit.url})
        signals = list(state["probe"].signals)
        status = state.get("status")
        if status is not None and status >= 400:
            kind = BugKind.SERVER_ERROR if status >= 500 else BugKind.HTTP_ERROR
            signals.append(Signal(kind=kind, page_url=visit.url, target=visit.url, status=status))
        server = state.get("server")
        if state.get("error") is None and server is not None and server.total_ms > visit.slow_page_ms:
            slow = await self._confirm_slow(state["context"], visit, server)
            if slow is not None:
                signals.append(slow)
        raw_links: list[str] = []
        title = ""
        checks = LinkChecks()
        if state.get("error") is None and state.get("is_html", True):
            dom: dict[str, Any] = await state["page"].evaluate(DOM_SCRIPT)
            title = str(dom.get("title") or "")
            signals += dom_signals(visit.url, dom)
            raw_links = [str(href) for href in dom.get("links", [])][: MAX_LINKS * 2]
            if visit.check_links:
                signals += await self._check_links(state["context"], visit, raw_links, checks)
        return {
            "signals": signals,
            "raw_links": raw_links,
            "title": title,
            "link_checks": checks.made,
            "link_checks_skipped": checks.skipped,
        }

    async def _confirm_slow(self, context: BrowserContext, visit: PageVisit, first: ServerTime) -> Signal | None:
        """A ``slow_page`` signal when a second measurement agrees with the first, else None.

        One slow load may be a hiccup (a busy server or worker for a moment), so the responses that made it slow
        are timed again, outside the browser: the document, then the slowest sub-resource, one after the other
        as the load chains them, through the context's API request client (its cookies, no renderer). The page
        is filed only when both measurements exceed the threshold; ``load_ms`` is the smaller of the two.
        """
        timeout_ms = min(NAVIGATION_TIMEOUT_MS, max(LINK_CHECK_TIMEOUT_MS, 2 * visit.slow_page_ms))
        second: int | None = 0
        for wait, first_ms in ((first.document, first.document_ms), (first.resource, first.resource_ms)):
            if wait is None or first_ms <= 0 or second is None:
                continue
            again = await _response_ms(context, wait.url, timeout_ms)
            second = None if again is None else second + again
        if second is None or not confirmed_slow(first.total_ms, second, visit.slow_page_ms):
            return None
        detail: dict[str, Any] = {
            "load_ms": min(first.total_ms, second),
            "threshold_ms": visit.slow_page_ms,
            "first_ms": first.total_ms,
            "second_ms": second,
            "document_ms": first.document_ms,
        }
        if first.resource is not None and first.resource_ms > 0:
            detail |= {"slowest_resource": first.resource.url, "resource_ms": first.resource_ms}
        return Signal(kind=BugKind.SLOW_PAGE, page_url=visit.url, detail=detail)

    async def _check_links(
        self, context: BrowserContext, visit: PageVisit, raw_links: list[str], checks: LinkChecks
    ) -> list[Signal]:
        """Check each distinct internal link once (HEAD, GET when HEAD is refused); broken ones become signals.

        Links the worker checked before answer from its cache; of the others, at most ``visit.max_link_checks``
        are checked (the visit's share of the session's budget), the rest are counted as skipped.
        """
        targets: dict[str, str] = {}
        for href in raw_links:
            url = normalize_url(href, visit.url)
            if url is None or not should_visit(url, visit.origin, same_origin=True, robots=visit.robots):
                continue
            targets.setdefault(url_key(url), url)
        gate = asyncio.Semaphore(LINK_CHECK_PARALLEL)
        cache = self.pool.link_cache
        if visit.max_link_checks is not None:
            allowed: dict[str, str] = {}
            for key, url in targets.items():
                fresh = cache.get(key) is None
                if fresh and checks.made >= visit.max_link_checks:
                    checks.skipped += 1
                    continue
                checks.made += 1 if fresh else 0
                allowed[key] = url
            targets = allowed
        else:
            checks.made = sum(1 for key in targets if cache.get(key) is None)

        async def check(key: str, url: str) -> Signal | None:
            cached = cache.get(key)
            if cached is None:
                async with gate:
                    cached = await _link_status(context, url)
                cache.put(key, *cached)
            status, error = cached
            if status is not None and status < 400:
                return None
            return Signal(kind=BugKind.BROKEN_LINK, page_url=visit.url, target=url, status=status, message=error or "")

        found = await asyncio.gather(*(check(k, u) for k, u in targets.items()))
        return [s for s in found if s is not None]

    async def triage(self, state: VisitState) -> VisitState:
        """Fold signals into fingerprinted findings with severities (deterministic rules)."""
        visit = state["visit"]
        state["progress"].set({"stage": "triage", "url": visit.url})
        signals = with_blocked(state.get("signals", []), self.pool.blocked(state["context"]), visit.url)
        return {"signals": signals, "findings": triage(signals, visit.url, slow_page_ms=visit.slow_page_ms)}

    async def refine(self, state: VisitState) -> VisitState:
        """Reword titles and descriptions through the configured LLM (unchanged if it fails)."""
        assert self.llm is not None
        state["progress"].set({"stage": "refine", "url": state["visit"].url})
        return {"findings": await refine_findings(state["findings"], self.llm)}

    async def extract_links(self, state: VisitState) -> VisitState:
        """The links the session may visit next: normalized, allowed, not known broken, in page order."""
        visit = state["visit"]
        broken = {url_key(s.target) for s in state.get("signals", []) if s.kind == BugKind.BROKEN_LINK}
        links: dict[str, str] = {}
        for href in state.get("raw_links", []):
            url = normalize_url(href, state.get("final_url") or visit.url)
            if url is None or not should_visit(url, visit.origin, same_origin=visit.same_origin, robots=visit.robots):
                continue
            key = url_key(url)
            if key not in broken:
                links.setdefault(key, url)
            if len(links) >= MAX_LINKS:
                break
        return {"links": list(links.values())}


async def _response_ms(context: BrowserContext, url: str, timeout_ms: int) -> int | None:
    """How long ``url`` takes to answer a GET, request sent to last byte, timed by Playwright's HTTP client.

    A timeout counts as ``timeout_ms``; None when it could not be measured (a network error).
    """
    try:
        response = await context.request.get(url, timeout=timeout_ms, max_redirects=5)
    except PlaywrightTimeout:
        return timeout_ms
    except PlaywrightError as err:
        if browser_gone(err):
            raise
        return None
    timing = response.timing
    await response.dispose()
    # startTime → requestStart is connecting; requestStart is -1 when the client did not say when it sent
    sent, last_byte = max(timing["requestStart"], 0.0), timing["responseEnd"]
    return round(last_byte - sent) if last_byte >= sent else None


async def _link_status(context: BrowserContext, url: str) -> tuple[int | None, str]:
    """HTTP status of a link (HEAD, then GET when HEAD is not allowed), or None and the network error."""
    try:
        response = await context.request.head(url, timeout=LINK_CHECK_TIMEOUT_MS, max_redirects=5)
        status = response.status
        await response.dispose()
        if status in (405, 501):
            response = await context.request.get(url, timeout=LINK_CHECK_TIMEOUT_MS, max_redirects=5)
            status = response.status
            await response.dispose()
        return status, ""
    except PlaywrightError as err:
        if browser_gone(err):
            raise
        return None, _net_error(str(err))


def _unreachable_page(visit: PageVisit, page: Page, probe: PageProbe, reason: str) -> VisitState:
    """The state of a page whose host could not be reached (fatal for a start URL: bad input, no retries)."""
    if visit.is_start and reason in UNREACHABLE:
        raise BadInput(f"cannot reach the start URL {visit.url}: {reason}", code="START_URL_UNREACHABLE")
    return _no_document(visit, page, probe, reason)


def _no_document(visit: PageVisit, page: Page, probe: PageProbe, error: str) -> VisitState:
    """The state of a visit that got no document from the site: nothing to read, ``error`` says why."""
    return {
        "page": page,
        "probe": probe,
        "status": None,
        "final_url": visit.url,
        "is_html": False,
        "load_ms": 0,
        "error": error,
    }


def with_blocked(signals: list[Signal], blocked: list[BlockedRequest], page_url: str) -> list[Signal]:
    """``signals`` with each refused request as one ``blocked_request`` signal (naming the URL and address), in
    place of what the browser made of the proxy's refusal (a 403, a failed tunnel) on the same host and port."""
    if not blocked:
        return signals
    refused = {(b.host, b.port) for b in blocked}
    kept = [s for s in signals if not s.target or _endpoint(s.target) not in refused]
    # one finding per refused host and port (its first URL names it): a redirect and the favicon fold together
    for b in {(b.host, b.port): b for b in reversed(blocked)}.values():
        kept.append(
            Signal(
                kind=BugKind.BLOCKED_REQUEST,
                page_url=page_url,
                target=b.target,
                message=b.reason,
                detail={"address": b.address},
            )
        )
    return kept


def _refusal(blocked: list[BlockedRequest], url: str) -> BlockedRequest | None:
    """The refusal of ``url``'s host and port, if the policy refused it."""
    endpoint = _endpoint(url)
    return next((b for b in blocked if (b.host, b.port) == endpoint), None)


def _endpoint(url: str) -> tuple[str, int] | None:
    """(canonical host, port) of a URL, or None when it has no host."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return (canonical_host(parts.hostname), port) if parts.hostname else None
    except (ValueError, UrlNotAllowed):
        return None


def _net_error(message: str) -> str:
    """The ``net::ERR_…`` code in a Playwright error message, or its first line."""
    for word in message.replace("\n", " ").split():
        if word.startswith("net::ERR_"):
            return word.rstrip(".,;:")
    return message.splitlines()[0][:200] if message else "error"
