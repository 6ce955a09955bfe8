"""One Chromium per worker process (Debian's, driven by Playwright), a fresh context per page visit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Playwright, ProxySettings, ViewportSize, async_playwright
from playwright.async_api import Error as PlaywrightError

from activities.crawl.proxy import BlockedRequest, FilteringProxy
from conveyor.errors import BadInput
from conveyor.logging import get_logger
from conveyor.netpolicy import NetPolicy

log = get_logger(__name__)

#: Flags that keep Chromium quiet and offline apart from the pages it is sent to. WebRTC may send UDP only
#: through the proxy (that is: not at all), so a page cannot reach around the network policy with it.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
#: Proxy nothing around: ``<-loopback>`` removes Chromium's implicit bypass of localhost and loopback.
PROXY_BYPASS = "<-loopback>"
#: Contexts a browser serves before it is replaced once idle (the seed's ``--max-tasks-per-child``: a
#: long-lived Chromium grows; a fresh one gives the memory back).
RECYCLE_AFTER = 500
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


class LinkStatusCache:
    """Recent link-check answers, shared by the page visits of one worker process (bounded, expiring)."""

    def __init__(self, max_entries: int = 20_000, ttl_s: float = 600.0) -> None:
        self._entries: OrderedDict[str, tuple[float, int | None, str]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_s

    def get(self, key: str) -> tuple[int | None, str] | None:
        """The cached (status, error) of a link, if checked recently."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self._ttl:
            return None
        return entry[1], entry[2]

    def put(self, key: str, status: int | None, error: str) -> None:
        """Remember a link's answer."""
        self._entries[key] = (time.monotonic(), status, error)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def sandbox_enabled(mode: str, euid: int | None = None) -> bool:
    """Whether Chromium runs with its sandbox: ``auto`` whenever the process is not root (Chromium refuses to
    start sandboxed as root), ``on`` always, ``off`` never."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return (os.geteuid() if euid is None else euid) != 0


class BrowserPool:
    """Launches Chromium on first use (and again if it crashed); hands out isolated contexts.

    Every connection the browser makes goes through a :class:`FilteringProxy` that applies ``policy`` (one
    listener per context, so each visit knows what was refused on its behalf; the launch-wide one catches
    anything else). ``policy`` defaults to the deny-by-default policy with no exceptions.
    """

    def __init__(
        self,
        executable_path: str,
        extra_args: list[str],
        user_agent: str,
        *,
        recycle_after: int = RECYCLE_AFTER,
        policy: NetPolicy | None = None,
        sandbox: str = "auto",
    ) -> None:
        self.executable_path = executable_path
        self.recycle_after = recycle_after
        self.served = 0
        self.args = [*CHROMIUM_ARGS, *extra_args]
        self.user_agent = user_agent
        self.policy = policy or NetPolicy()
        self.sandbox = sandbox_enabled(sandbox)
        self.link_cache = LinkStatusCache()
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._proxy: FilteringProxy | None = None
        self._context_proxies: dict[BrowserContext, FilteringProxy] = {}
        self._warned_root = False
        self.open_contexts = 0
        self.launches = 0

    async def browser(self) -> Browser:
        """The running browser, launched (or relaunched after a crash) as needed."""
        async with self._lock:
            if self._browser is not None and self.served >= self.recycle_after and self.open_contexts == 0:
                log.info("browser recycled", contexts_served=self.served)
                with contextlib.suppress(PlaywrightError):
                    await self._browser.close()
                self._browser = None
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if not await asyncio.to_thread(Path(self.executable_path).exists):
                raise BadInput(
                    f"Chromium not found at {self.executable_path}; install Debian's chromium or set "
                    "CONVEYOR_CHROMIUM_PATH",
                    code="BROWSER_MISSING",
                )
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            if self._proxy is None:
                self._proxy = await FilteringProxy(self.policy).start()
            if not self.sandbox and not self._warned_root:
                self._warned_root = True
                log.warning(
                    "Chromium runs without its sandbox (the worker is root, or CONVEYOR_CHROMIUM_SANDBOX=off): "
                    "a renderer exploit gets the worker's privileges; run the crawl worker as a non-root user"
                )
            self._browser = await self._playwright.chromium.launch(
                executable_path=self.executable_path,
                args=self.args,
                headless=True,
                chromium_sandbox=self.sandbox,
                proxy=_proxy_settings(self._proxy),
            )
            self.launches += 1
            self.served = 0
            log.info("browser launched", executable=self.executable_path, launches=self.launches, sandbox=self.sandbox)
            return self._browser

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[BrowserContext]:
        """A fresh browser context (own cookies, cache and storage), closed however the visit ends."""
        browser = await self.browser()
        try:
            ctx = await self._new_context(browser)
        except PlaywrightError:
            if browser.is_connected() and not await self._dead(browser):
                raise
            # the browser died since the last visit (crash, OOM kill): launch a fresh one and carry on
            async with self._lock:
                if self._browser is browser:
                    self._browser = None
            ctx = await self._new_context(await self.browser())
        self.open_contexts += 1
        self.served += 1
        try:
            yield ctx
        finally:
            self.open_contexts -= 1
            # shielded: a cancelled visit must still close its context, or the browser leaks them
            with contextlib.suppress(PlaywrightError, asyncio.CancelledError):
                await asyncio.shield(ctx.close())
            proxy = self._context_proxies.pop(ctx, None)
            if proxy is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(proxy.close())

    def unreachable(self, context: BrowserContext, host: str, port: int) -> str | None:
        """Why the proxy of ``context`` could not reach ``host:port`` (a ``net::ERR_…`` name), if it could not."""
        proxy = self._context_proxies.get(context)
        return proxy.unreachable.get((host, port)) if proxy is not None else None

    def blocked(self, context: BrowserContext) -> list[BlockedRequest]:
        """What the network policy refused to ``context`` so far (redirect hops and sub-requests included)."""
        proxy = self._context_proxies.get(context)
        return list(proxy.blocked) if proxy is not None else []

    async def _new_context(self, browser: Browser) -> BrowserContext:
        proxy = await FilteringProxy(self.policy).start()
        try:
            ctx = await browser.new_context(
                user_agent=self.user_agent,
                viewport=VIEWPORT,
                service_workers="block",
                java_script_enabled=True,
                proxy=_proxy_settings(proxy),
            )
        except BaseException:
            await proxy.close()
            raise
        self._context_proxies[ctx] = proxy
        return ctx

    @staticmethod
    async def _dead(browser: Browser) -> bool:
        """Whether the browser no longer answers (its process may be gone before Playwright notices)."""
        try:
            await asyncio.wait_for(browser.new_browser_cdp_session(), timeout=5)
        except (PlaywrightError, TimeoutError):
            return True
        return False

    async def close(self) -> None:
        """Close the browser and the Playwright driver."""
        async with self._lock:
            if self._browser is not None:
                with contextlib.suppress(PlaywrightError):
                    await self._browser.close()
                self._browser = None
            if self._playwright is not None:
                with contextlib.suppress(PlaywrightError):
                    await self._playwright.stop()
                self._playwright = None
            if self._proxy is not None:
                await self._proxy.close()
                self._proxy = None


def _proxy_settings(proxy: FilteringProxy) -> ProxySettings:
    """Playwright's proxy option for ``proxy``: everything through it, loopback included."""
    return {"server": proxy.url, "bypass": PROXY_BYPASS}
