"""What a page does while it loads: listeners that turn Playwright events into signals, and the DOM checks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import ConsoleMessage, Page, Request, Response
from playwright.async_api import Error as PlaywrightError

from activities.crawl.schemas import BugKind, Signal

#: Sub-resources whose failure is a missing resource (fetch/XHR failures are failed requests instead).
RESOURCE_TYPES = frozenset({"image", "script", "stylesheet", "font", "media"})
CALL_TYPES = frozenset({"fetch", "xhr"})
#: Chromium repeats every failed sub-request as this console error; the request signal already covers it.
_RESOURCE_CONSOLE_PREFIX = "Failed to load resource"
#: Requests cut short because the page went away are not the site's fault.
_IGNORED_FAILURES = ("net::ERR_ABORTED",)

#: The DOM facts a visit needs, read in one round trip.
DOM_SCRIPT = """() => {
  const titleEl = document.querySelector('title');
  return {
    title: document.title || '',
    has_title: !!titleEl && document.title.trim().length > 0,
    lang: document.documentElement.getAttribute('lang'),
    no_alt: Array.from(document.images)
      .filter(i => !i.hasAttribute('alt'))
      .map(i => i.currentSrc || i.src || i.outerHTML.slice(0, 120)),
    links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
  };
}"""

#: The Resource Timing entries of the load: the navigation's and each sub-resource's, on the page's timeline (ms).
#: ``requestStart`` and ``responseEnd`` are stamped by Chromium's network stack (request sent, last byte received),
#: not by the renderer, so a CPU-starved renderer does not stretch the time between them; ``startTime`` (when the
#: page asked for the resource) and ``loadEventEnd`` are the renderer's and only place an entry on the load.
RESPONSE_TIMING_SCRIPT = """() => {
  const pick = e => ({
    url: e.name, startTime: e.startTime,
    requestStart: e.requestStart, responseStart: e.responseStart, responseEnd: e.responseEnd,
  });
  const nav = performance.getEntriesByType('navigation')[0];
  return {
    loadEventEnd: nav ? nav.loadEventEnd : 0,
    navigation: nav ? pick(nav) : null,
    resources: performance.getEntriesByType('resource').map(pick),
  };
}"""


@dataclass(frozen=True)
class ServerWait:
    """One request of the page on the page's timeline: request sent (``start_ms``) to last byte (``end_ms``)."""

    url: str
    start_ms: float
    end_ms: float

    @property
    def ms(self) -> float:
        """How long the server (and the network) kept this request waiting."""
        return max(0.0, self.end_ms - self.start_ms)


@dataclass(frozen=True)
class ServerTime:
    """The server's share of a page load: the document's response time plus the slowest sub-resource's tail.

    Critical path: sub-resources are found by parsing the document, so they hang off its response; they load
    in parallel, so only the slowest of them extends the load (summing them all would count parallel waits
    several times). Each wait runs from the request being sent to the last byte of the response, both stamped
    by the network stack, so what the renderer does in between (parsing, scripts, layout: the part a busy
    machine stretches) is left out. A sub-resource counts only past the document's last byte (a resource the
    preload scanner fetched while the document still streamed does not count twice). Deeper chains (a
    stylesheet's font) count as their slowest link; that underestimates, it never invents slowness.
    """

    document: ServerWait | None
    resource: ServerWait | None
    """The sub-resource whose wait went on longest past the document's last byte (None when none did)."""
    document_ms: int
    resource_ms: int
    """The part of ``resource``'s wait that came after the document's last byte."""

    @property
    def total_ms(self) -> int:
        """Milliseconds the server kept the load waiting (``load_ms`` of the page)."""
        return self.document_ms + self.resource_ms


def server_time(timing: dict[str, Any] | None, ttfb_ms: dict[str, float] | None = None) -> ServerTime:
    """The server's share of a load from :data:`RESPONSE_TIMING_SCRIPT`'s answer (pure).

    Only sub-resources requested before the load event ended count: they are the load's (a fetch a page makes
    later, a poll, is not). An entry whose ``requestStart`` is hidden (a cross-origin resource without
    ``Timing-Allow-Origin``) falls back to its time to first byte from ``ttfb_ms`` (Playwright's request timing,
    also stamped by the network stack), ending at its ``responseEnd``; without one it is left out.
    """
    timing = timing or {}
    ttfb_ms = ttfb_ms or {}
    document = _wait(timing.get("navigation"), ttfb_ms)
    load_end = _number(timing.get("loadEventEnd"))
    doc_end = document.end_ms if document is not None else 0.0
    slowest: ServerWait | None = None
    tail = 0.0
    for entry in timing.get("resources") or []:
        if load_end > 0 and _number(entry.get("startTime")) > load_end:
            continue
        wait = _wait(entry, ttfb_ms)
        if wait is None:
            continue
        past_document = wait.end_ms - max(wait.start_ms, doc_end)
        if past_document > tail:
            slowest, tail = wait, past_document
    return ServerTime(
        document=document,
        resource=slowest,
        document_ms=round(document.ms) if document is not None else 0,
        resource_ms=round(tail),
    )


def confirmed_slow(first_ms: int, second_ms: int | None, threshold_ms: int) -> bool:
    """Whether a page is slow: the load's server time and a second, independent measurement both exceed the
    threshold (no second measurement, e.g. the re-request failed, confirms nothing)."""
    return first_ms > threshold_ms and second_ms is not None and second_ms > threshold_ms


def _wait(entry: dict[str, Any] | None, ttfb_ms: dict[str, float]) -> ServerWait | None:
    """The request→last-byte wait of one Resource Timing entry, or None when it cannot be told."""
    if not entry:
        return None
    url = str(entry.get("url") or "")
    start, end = _number(entry.get("requestStart")), _number(entry.get("responseEnd"))
    if end <= 0:
        return None
    if start > 0:
        return ServerWait(url, start, max(start, end))
    ttfb = ttfb_ms.get(url)
    return ServerWait(url, max(0.0, end - ttfb), end) if ttfb is not None else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@dataclass
class PageProbe:
    """Listens to one page and collects signals; counts requests in flight so the visit can wait for quiet."""

    page_url: str
    signals: list[Signal] = field(default_factory=list)
    inflight: int = 0
    document_request: Request | None = None
    ttfb_ms: dict[str, float] = field(default_factory=dict)
    """Time to first byte of each finished request by URL (request sent → headers received), from Playwright's
    request timing: both ends are stamped by the network stack (a fallback where Resource Timing hides them)."""

    def attach(self, page: Page) -> None:
        """Start listening to ``page``."""
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_request_done)
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error" or msg.text.startswith(_RESOURCE_CONSOLE_PREFIX):
            return
        location = msg.location or {}
        self.signals.append(
            Signal(
                kind=BugKind.CONSOLE_ERROR,
                page_url=self.page_url,
                message=msg.text,
                target=str(location.get("url") or ""),
                detail={"line": location.get("lineNumber"), "column": location.get("columnNumber")},
            )
        )

    def _on_page_error(self, err: PlaywrightError) -> None:
        name = getattr(err, "name", "") or "Error"
        message = err.message or str(err)
        text = message if message.startswith(name) else f"{name}: {message}"
        stack = (getattr(err, "stack", "") or "").splitlines()[:6]
        self.signals.append(
            Signal(kind=BugKind.PAGE_ERROR, page_url=self.page_url, message=text, detail={"stack": stack})
        )

    def _on_request(self, request: Request) -> None:
        self.inflight += 1

    def _on_request_done(self, request: Request) -> None:
        self.inflight = max(0, self.inflight - 1)
        timing = request.timing
        sent, first_byte = timing["requestStart"], timing["responseStart"]
        if sent >= 0 and first_byte >= sent:
            self.ttfb_ms[request.url] = max(first_byte - sent, self.ttfb_ms.get(request.url, 0.0))

    def _on_request_failed(self, request: Request) -> None:
        self.inflight = max(0, self.inflight - 1)
        failure = request.failure or "network error"
        if request is self.document_request or any(failure.startswith(f) for f in _IGNORED_FAILURES):
            return
        kind = _kind_of(request.resource_type)
        if kind is None:
            return
        self.signals.append(
            Signal(
                kind=kind,
                page_url=self.page_url,
                target=request.url,
                message=failure,
                resource_type=request.resource_type,
                method=request.method,
            )
        )

    def _on_response(self, response: Response) -> None:
        request = response.request
        if request is self.document_request or response.status < 400:
            return
        kind = _kind_of(request.resource_type)
        if kind is None or (kind == BugKind.FAILED_REQUEST and response.status < 500):
            return
        self.signals.append(
            Signal(
                kind=kind,
                page_url=self.page_url,
                target=request.url,
                status=response.status,
                message=response.status_text,
                resource_type=request.resource_type,
                method=request.method,
            )
        )

    async def settle(self, *, quiet_ms: int = 150, cap_ms: int = 2500) -> None:
        """Wait until no request has been in flight for ``quiet_ms`` (at most ``cap_ms``): late fetches count."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cap_ms / 1000
        quiet_since: float | None = None
        while loop.time() < deadline:
            if self.inflight == 0:
                now = loop.time()
                quiet_since = quiet_since if quiet_since is not None else now
                if now - quiet_since >= quiet_ms / 1000:
                    return
            else:
                quiet_since = None
            await asyncio.sleep(0.025)


def _kind_of(resource_type: str) -> BugKind | None:
    if resource_type in RESOURCE_TYPES:
        return BugKind.MISSING_RESOURCE
    if resource_type in CALL_TYPES:
        return BugKind.FAILED_REQUEST
    return None


def dom_signals(page_url: str, dom: dict[str, Any]) -> list[Signal]:
    """Accessibility faults from the DOM facts: images without alt, no ``lang``, no title."""
    signals = [Signal(kind=BugKind.MISSING_ALT, page_url=page_url, target=str(src)) for src in dom.get("no_alt", [])]
    if not (dom.get("lang") or "").strip():
        signals.append(Signal(kind=BugKind.MISSING_LANG, page_url=page_url))
    if not dom.get("has_title"):
        signals.append(Signal(kind=BugKind.MISSING_TITLE, page_url=page_url))
    return signals
