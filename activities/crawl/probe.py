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

#: Load time of the navigation (ms from navigation start to the end of the load event).
LOAD_TIME_SCRIPT = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  return nav ? Math.round(nav.loadEventEnd || nav.duration || 0) : 0;
}"""


@dataclass
class PageProbe:
    """Listens to one page and collects signals; counts requests in flight so the visit can wait for quiet."""

    page_url: str
    signals: list[Signal] = field(default_factory=list)
    inflight: int = 0
    document_request: Request | None = None

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
