"""Benchmark: pages/s of a crawl through Conveyor vs a plain Playwright loop over the same site, in one run.

1. Serves a generated site of ``--pages`` clean pages (links between them, an image and a stylesheet each)
   from this process, so neither side pays for bugs' screenshots and tickets.
2. Plain loop: one Chromium, a fresh context per page, ``--concurrency`` pages at a time, doing the work
   a page visit does (load, wait for network quiet, read the DOM, HEAD every internal link once, follow
   links breadth-first) with no orchestration.
3. Conveyor: the same crawl as a ``CrawlSessionWorkflow`` on the real dev server, with a ``conveyor worker``
   process serving the crawl queues (its concurrency: the crawl queue's 2), timed from start to result. Its
   Chromium goes through the network policy's filtering proxy; the per-host politeness delay is set to 0, as
   the plain loop has none.
   The two alternate ``--rounds`` times; the best of each is compared.
4. Peak RSS of the worker process and its Chromium during the Conveyor crawls.

Prints pages/s of both and the ratio (target ≥ 0.8 of the plain loop). Usage:
``python -m bench.crawl [--pages N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from playwright.async_api import BrowserContext, async_playwright
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.crawl.browser import CHROMIUM_ARGS
from activities.crawl.contract import PAGES_QUEUE
from activities.crawl.probe import DOM_SCRIPT, PageProbe
from activities.crawl.schemas import CrawlConfig, CrawlResult
from activities.crawl.urls import normalize_url, same_origin, url_key
from api.caller import Caller
from api.services import crawl as service
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.storage import blob_store_from_url
from conveyor.temporal import start_ephemeral_server as start_dev_server
from workers.pipelines import all_queues

console = Console()
LINKS_PER_PAGE = 8
OFFLINE_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def _page(i: int, n: int) -> bytes:
    links = "".join(
        f'<li><a href="/p/{(i * 7 + k * 13 + 1) % n}.html">page {(i * 7 + k * 13 + 1) % n}</a></li>'
        for k in range(LINKS_PER_PAGE)
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Page {i}</title>'
        f'<link rel="icon" href="/favicon.svg"><link rel="stylesheet" href="/site.css"></head>'
        f'<body><h1>Page {i}</h1><img src="/img/{i % 10}.svg" alt="figure {i % 10}">'
        f"<ul>{links}</ul><p>{'Generated text. ' * 40}</p></body></html>"
    ).encode()


class _SiteHandler(BaseHTTPRequestHandler):
    pages = 100

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            data, kind = _page(0, self.pages), "text/html; charset=utf-8"
        elif path.startswith("/p/") and path.endswith(".html") and path[3:-5].isdigit():
            data, kind = _page(int(path[3:-5]) % self.pages, self.pages), "text/html; charset=utf-8"
        elif path.startswith("/img/") or path == "/favicon.svg":
            data = (
                b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40"/></svg>'
            )
            kind = "image/svg+xml"
        elif path == "/site.css":
            data, kind = b"body{font-family:sans-serif;max-width:50em;margin:auto}", "text/css"
        elif path == "/robots.txt":
            data, kind = b"User-agent: *\nDisallow:\n", "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


def serve_site(pages: int) -> tuple[ThreadingHTTPServer, str]:
    """Serve the generated site on 127.0.0.1; returns the server and its base URL."""
    handler = type("Handler", (_SiteHandler,), {"pages": pages})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def plain_loop(start: str, max_pages: int, concurrency: int) -> tuple[int, float]:
    """Crawl with Playwright alone; returns (pages, seconds)."""
    origin = start.rstrip("/")
    started = time.perf_counter()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=[*CHROMIUM_ARGS, *OFFLINE_ARGS], headless=True
        )
        queue: asyncio.Queue[str] = asyncio.Queue()
        seen = {url_key(start)}
        checked: dict[str, int] = {}
        visited = 0
        scheduled = 1
        queue.put_nowait(start)

        async def visit(url: str) -> list[str]:
            context: BrowserContext = await browser.new_context()
            try:
                page = await context.new_page()
                probe = PageProbe(url)
                probe.attach(page)
                await page.goto(url, wait_until="load")
                await probe.settle()
                dom = await page.evaluate(DOM_SCRIPT)
                links = [u for h in dom["links"] if (u := normalize_url(h, url)) and same_origin(u, origin)]
                for link in {url_key(u): u for u in links}.values():
                    if url_key(link) not in checked:
                        response = await context.request.head(link)
                        checked[url_key(link)] = response.status
                return links
            finally:
                await context.close()

        async def crawler() -> None:
            nonlocal visited, scheduled
            while visited < max_pages:
                try:
                    url = await asyncio.wait_for(queue.get(), timeout=5)
                except TimeoutError:
                    return
                for link in await visit(url):
                    key = url_key(link)
                    if key not in seen and scheduled < max_pages:
                        seen.add(key)
                        scheduled += 1
                        queue.put_nowait(link)
                visited += 1
                queue.task_done()
                if visited >= scheduled:
                    return

        await asyncio.gather(*(crawler() for _ in range(concurrency)))
        await browser.close()
    return visited, time.perf_counter() - started


class _Sampler:
    """Peak memory of a process and its children, sampled every second: RSS summed (counts shared pages once
    per process, so it overstates) and USS summed (memory unique to each process: what stopping it frees).
    Reading USS walks every process's page map, so sampling is kept sparse to leave the CPU to the crawl."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.peak_uss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                infos = [p.memory_full_info() for p in procs if p.is_running()]
                self.peak = max(self.peak, sum(i.rss for i in infos))
                self.peak_uss = max(self.peak_uss, sum(i.uss for i in infos))
            except psutil.Error:
                continue

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        self._thread.join()
        return self.peak, self.peak_uss


async def conveyor_crawl(
    settings: Settings, client: Client, sessions: async_sessionmaker[AsyncSession], start: str, max_pages: int
) -> tuple[int, float]:
    """One crawl through Conveyor; returns (pages, seconds from start to result)."""
    started = time.perf_counter()
    async with sessions() as session:
        user, _ = await create_user(session, f"bench-{time.monotonic_ns()}", 10**9)
        await session.commit()
        blobs = blob_store_from_url(settings.blob_url_resolved)
        caller = Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)
        crawl = await service.start_session(
            caller, CrawlConfig(url=start, max_pages=max_pages, max_depth=10, slow_page_ms=60_000)
        )
    result = await client.get_workflow_handle(crawl.workflow_id or "", result_type=CrawlResult).result()
    return result.pages_crawled, time.perf_counter() - started


async def main(pages: int, rounds: int) -> None:
    """Run both sides ``rounds`` times, alternating, and print the comparison."""
    server, base = serve_site(pages)
    start = f"{base}/"
    env = await start_dev_server()
    var = Path(tempfile.mkdtemp(prefix="conveyor-bench-crawl-"))
    # the crawl may reach exactly the generated site (the network policy denies every other loopback address)
    allowed = [base.removeprefix("http://")]
    settings = Settings(
        var_dir=var, temporal_address=env.client.service_client.config.target_host, crawl_allowed_hosts=allowed
    )
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    worker_env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(var),
        "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONVEYOR_CHROMIUM_ARGS": json.dumps(OFFLINE_ARGS),
        "CONVEYOR_CRAWL_ALLOWED_HOSTS": json.dumps(allowed),
        # nothing leaves the machine, not even Chromium's own background lookups
        "CONVEYOR_CRAWL_ONLY_ALLOWED_HOSTS": "true",
        # the plain loop has no per-host politeness delay: compare the orchestration, not the policy
        "CONVEYOR_CRAWL_HOST_DELAY_S": "0",
        "CONVEYOR_LOG_LEVEL": "warning",
    }
    log = (var / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "-q", "crawl.pages", "-q", "crawl.media", "-q", "crawl.tickets"],
        env=worker_env,
        stdout=log,
        stderr=log,
    )
    concurrency = all_queues()[PAGES_QUEUE].concurrency
    plain: list[tuple[int, float]] = []
    ours: list[tuple[int, float]] = []
    peak = peak_uss = 0
    try:
        await conveyor_crawl(settings, env.client, sessions, start, 5)  # warm-up: browser launch, imports
        for _ in range(rounds):
            plain.append(await plain_loop(start, pages, concurrency))
            sampler = _Sampler(worker.pid)
            ours.append(await conveyor_crawl(settings, env.client, sessions, start, pages))
            rss, uss = sampler.stop()
            peak, peak_uss = max(peak, rss), max(peak_uss, uss)
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        await engine.dispose()
        await env.shutdown()
        server.shutdown()
    best_plain = max(p / s for p, s in plain)
    best_ours = max(p / s for p, s in ours)
    table = Table("side", "pages", "seconds per round", "best pages/s", title=f"crawl of {pages} generated pages")
    table.add_row(
        "plain Playwright loop", str(plain[0][0]), ", ".join(f"{s:.2f}" for _, s in plain), f"{best_plain:.2f}"
    )
    table.add_row("Conveyor workflow", str(ours[0][0]), ", ".join(f"{s:.2f}" for _, s in ours), f"{best_ours:.2f}")
    console.print(table)
    console.print(
        f"concurrency {concurrency} (crawl queue) · ratio Conveyor/plain = {best_ours / best_plain:.3f} (target ≥ 0.8)"
    )
    console.print(
        f"crawl worker process with its Chromium, peak: USS {peak_uss / 2**20:.0f} MiB "
        f"(RSS summed over processes {peak / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.rounds))
