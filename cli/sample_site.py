"""A small threaded HTTP server for the bundled sample site, with the dynamic routes that plant server-side bugs."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SITE_ROOT = Path(__file__).resolve().parents[1] / "samples" / "site"
SLOW_PAGE_DELAY_S = 2.5
HTML = "text/html; charset=utf-8"
CONTENT_TYPES = {
    ".html": HTML,
    ".css": "text/css",
    ".js": "application/javascript",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} | Crumb &amp; Co.</title>
  <link rel="icon" href="/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/css/site.css">
</head>
<body>
  <main><h1>{title}</h1><p>{message}</p><p><a href="/">Back to the bakery</a></p></main>
</body>
</html>
"""


def _page(title: str, message: str) -> bytes:
    return _PAGE.format(title=title, message=message).encode()


@dataclass(frozen=True)
class _Route:
    """A dynamic route: what GET answers, and what HEAD answers (headers only)."""

    status: int
    head_status: int
    content_type: str
    body: bytes


# HEAD on the two broken pages answers 200, as app servers do that answer HEAD from the route table without running
# the view: a link checker (HEAD) finds them fine, so the crawler visits them and sees the real status on GET.
# Were HEAD to answer like GET, they would only ever be reported as broken links on the pages that link them.
ROUTES = {
    "/order.html": _Route(500, 200, HTML, _page("Server error", "The order form could not be prepared.")),
    "/wholesale.html": _Route(403, 200, HTML, _page("Forbidden", "The wholesale price list is for trade accounts.")),
    "/api/stock.json": _Route(503, 503, CONTENT_TYPES[".json"], json.dumps({"error": "inventory offline"}).encode()),
}
SLOW_PAGES = {"/bake-schedule.html": SLOW_PAGE_DELAY_S}
_NOT_FOUND = _page("Page not found", "We could not find that page.")


class _Server(ThreadingHTTPServer):
    """Serves one site root and records every request it answers."""

    daemon_threads = True
    # Browsers keep connections alive; closing the server must not wait for them to hang up.
    block_on_close = False

    def __init__(self, address: tuple[str, int], root: Path) -> None:
        super().__init__(address, _Handler)
        self.root = root.resolve()
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients hanging up mid-response (pages closed, checks cancelled); report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """GET and HEAD (same status and headers, no body) for static files and the dynamic routes."""

    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 15  # idle keep-alive connections end on their own

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests and the demo own stderr."""

    def do_GET(self) -> None:
        """Answer with a body."""
        self._serve(head=False)

    def do_HEAD(self) -> None:
        """Answer like GET, without the body."""
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
        path, _, query = self.path.partition("?")
        if not head and (delay := SLOW_PAGES.get(path)):  # the page renders slowly; HEAD answers at once
            time.sleep(delay)
        if route := ROUTES.get(path):
            self._send(route.head_status if head else route.status, route.content_type, route.body, head)
            return
        found = self._resolve(path)
        if found is not None and found.is_dir():
            if not path.endswith("/"):
                location = path + "/" + (f"?{query}" if query else "")
                self._send(301, HTML, _page("Moved", "This page moved."), head, {"Location": location})
                return
            found = found / "index.html"
        if found is None or not found.is_file():
            self._send(404, HTML, _NOT_FOUND, head)
            return
        content_type = CONTENT_TYPES.get(found.suffix, "application/octet-stream")
        self._send(200, content_type, found.read_bytes(), head)

    def _resolve(self, path: str) -> Path | None:
        """The file or folder under the root that a URL path names, or None (outside the root, or odd)."""
        # Only raw paths are accepted: an encoded path (%2e%2e, %2f) names no file of the site anyway.
        parts = path.split("/")
        if not path.startswith("/") or "%" in path or "\\" in path or "\x00" in path or ".." in parts:
            return None
        candidate = (self.server.root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.server.root) or not candidate.exists():
            return None
        return candidate

    def _send(
        self, status: int, content_type: str, body: bytes, head: bool, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


@dataclass
class SampleSite:
    """A running sample site."""

    url: str
    """``http://127.0.0.1:PORT``, without a trailing slash."""
    port: int
    requests: list[tuple[str, str]]
    """(method, path with query) of every request served, in order."""
    _server: _Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def start_sample_site(host: str = "127.0.0.1", port: int = 0, root: Path = SITE_ROOT) -> SampleSite:
    """Serve ``root`` on ``host:port`` (0 picks a free port) from a daemon thread."""
    server = _Server((host, port), root)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.name = "sample-site"
    thread.start()
    bound = int(server.socket.getsockname()[1])
    return SampleSite(
        url=f"http://{host}:{bound}", port=bound, requests=server.requests, _server=server, _thread=thread
    )


@contextmanager
def sample_site(host: str = "127.0.0.1", port: int = 0, root: Path = SITE_ROOT) -> Iterator[SampleSite]:
    """The sample site, served for the duration of the block."""
    site = start_sample_site(host, port, root)
    try:
        yield site
    finally:
        site.stop()
