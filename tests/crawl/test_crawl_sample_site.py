"""The bundled sample site and its server: pages, planted server-side bugs, the manifest's promises."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections import deque
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from cli.sample_site import SITE_ROOT, SampleSite, sample_site, start_sample_site

EXPECTED: dict[str, Any] = json.loads((SITE_ROOT / "expected.json").read_text())
ERROR_PAGES = {
    bug["pages"][0]: bug["status"] for bug in EXPECTED["bugs"] if bug["kind"] in ("http_error", "server_error")
}
FETCH_URL = re.compile(r"""fetch\(\s*["']([^"']+)["']""")


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    with sample_site() as running:
        yield running


@pytest.fixture(scope="module")
def client(site: SampleSite) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=10) as http:
        yield http


class _Refs(HTMLParser):
    """The <a href> links of an HTML page, and the URLs it loads (src, <link href>, fetch() of inline scripts)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[str] = []
        self.loads: list[str] = []
        self._in_script = False

    @property
    def urls(self) -> list[str]:
        """Every URL the page names."""
        return self.anchors + self.loads

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if value := values.get(name):
                (self.anchors if tag == "a" else self.loads).append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.loads.extend(FETCH_URL.findall(data))


def _refs(html: str) -> _Refs:
    parser = _Refs()
    parser.feed(html)
    return parser


def _raw(site: SampleSite, request: bytes) -> bytes:
    """Send raw request bytes and read the whole answer (the request asks the server to close)."""
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_manifest_is_consistent() -> None:
    bug_pages = {page for bug in EXPECTED["bugs"] for page in bug["pages"]}
    must_visit = set(EXPECTED["must_visit"])
    assert EXPECTED["clean_pages"][0] == "/" and set(EXPECTED["clean_pages"]) <= must_visit
    assert bug_pages <= must_visit and not bug_pages & set(EXPECTED["clean_pages"])
    assert must_visit == set(EXPECTED["clean_pages"]) | bug_pages
    assert len(must_visit) <= 30
    assert {bug["kind"] for bug in EXPECTED["bugs"]} == {
        "http_error", "server_error", "broken_link", "missing_resource", "console_error", "page_error",
        "failed_request", "slow_page", "missing_alt", "missing_lang", "missing_title",
    }  # fmt: skip
    # one page per bug and one bug per page, but for the defect shared by two pages
    assert [len(bug["pages"]) for bug in EXPECTED["bugs"]].count(2) == 1
    assert sum(len(bug["pages"]) for bug in EXPECTED["bugs"]) == len(bug_pages)
    assert {page for page, depth in EXPECTED["depths"].items() if depth <= EXPECTED["max_depth"]} == must_visit
    too_deep = {page for page, depth in EXPECTED["depths"].items() if depth > EXPECTED["max_depth"]}
    private = {page for page in EXPECTED["never_visit"] if page.startswith("/private/")}
    external = {page for page in EXPECTED["never_visit"] if page.startswith("https://")}
    assert too_deep and private and external and set(EXPECTED["never_visit"]) == too_deep | private | external
    hidden = {page for bug in EXPECTED["hidden_bugs"] for page in bug["pages"]}
    assert hidden <= set(EXPECTED["never_visit"]) and not hidden & must_visit


def test_pages_answer_get_and_head(site: SampleSite, client: httpx.Client) -> None:
    for path in EXPECTED["must_visit"]:
        got = client.get(path)
        assert got.status_code == ERROR_PAGES.get(path, 200), path
        assert got.headers["content-type"] == "text/html; charset=utf-8", path
        assert int(got.headers["content-length"]) == len(got.content) > 0, path
        head = client.head(path)
        # the error pages' HEAD answers 200 so that link checks pass and the crawler visits them
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
    assert ("GET", "/menu.html") in site.requests and ("HEAD", "/menu.html") in site.requests


def test_head_sends_no_body(site: SampleSite) -> None:
    for path in ("/", "/api/stock.json", "/no-such-page.html"):
        answer = _raw(site, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        headers, _, body = answer.partition(b"\r\n\r\n")
        assert b"Content-Length: " in headers and body == b"", path


def test_planted_server_errors(client: httpx.Client) -> None:
    order = client.get("/order.html")
    assert order.status_code == 500 and "<html" in order.text
    assert client.get("/wholesale.html").status_code == 403
    stock = client.get("/api/stock.json")
    assert stock.status_code >= 500 and stock.headers["content-type"] == "application/json"
    assert client.head("/api/stock.json").status_code == stock.status_code
    assert client.get("/no-such-page.html").status_code == 404


def test_slow_page_is_slow(client: httpx.Client) -> None:
    started = time.monotonic()
    assert client.get("/bake-schedule.html").status_code == 200
    assert time.monotonic() - started >= 2.0
    assert EXPECTED["slow_page_ms"] < 2000


def test_directories_and_variants(client: httpx.Client) -> None:
    docs = client.get("/docs/")
    moved = client.get("/docs")
    assert moved.status_code == 301 and moved.headers["location"] == "/docs/"
    assert client.get("/docs", follow_redirects=True).text == docs.text
    assert client.get("/").text == (SITE_ROOT / "index.html").read_text()
    for variants in EXPECTED["same_page_variants"]:
        bodies = {client.get(url.split("#")[0], follow_redirects=True).text for url in variants}
        assert len(bodies) == 1, variants


def test_content_types(client: httpx.Client) -> None:
    for path, content_type in [
        ("/css/site.css", "text/css"),
        ("/js/site.js", "application/javascript"),
        ("/api/specials.json", "application/json"),
        ("/img/storefront.png", "image/png"),
        ("/favicon.svg", "image/svg+xml"),
    ]:
        got = client.get(path)
        assert got.status_code == 200 and got.headers["content-type"] == content_type, path
    assert client.get("/img/storefront.png").content.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "path", ["/../pyproject.toml", "/../../pyproject.toml", "/css/../../README.md", "/%2e%2e/pyproject.toml", "/..%2f"]
)
def test_traversal_is_refused(site: SampleSite, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    try:
        connection.request("GET", path)
        assert connection.getresponse().status == 404
    finally:
        connection.close()


def test_robots_txt(client: httpx.Client) -> None:
    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots.headers["content-type"].startswith("text/plain")
    groups = robots.text.split("\n\n")
    assert any("User-agent: *" in group and "Disallow: /private/" in group for group in groups)
    assert "ConveyorBot" not in robots.text  # the crawler must fall back on the * group


def test_planted_targets_fail(client: httpx.Client) -> None:
    for bug in EXPECTED["bugs"]:
        if bug["kind"] in ("broken_link", "missing_resource", "failed_request"):
            assert client.get(bug["target"]).status_code == bug["status"] >= 400, bug
            assert client.head(bug["target"]).status_code == bug["status"], bug


def test_planted_links_and_images_are_on_their_pages(client: httpx.Client) -> None:
    for bug in EXPECTED["bugs"]:
        for page in bug["pages"] if "target" in bug else []:
            assert bug["target"] in _refs(client.get(page).text).urls, (page, bug)
    assert '<html lang="en">' not in client.get("/blog/team-update.html").text
    assert "<title>" not in client.get("/faq.html").text


def test_clean_pages_reference_only_working_urls(site: SampleSite, client: httpx.Client) -> None:
    external: set[str] = set()
    for page in EXPECTED["clean_pages"]:
        html = client.get(page).text
        assert '<html lang="en">' in html and re.search(r"<title>[^<]+</title>", html), page
        refs = _refs(html)
        loads = list(refs.loads)
        for script in [url for url in refs.loads if url.endswith(".js")]:
            loads.extend(FETCH_URL.findall(client.get(script).text))
        assert "/favicon.svg" in loads, page
        for ref in refs.anchors + loads:
            absolute = urljoin(site.url + page, ref)
            parts = urlsplit(absolute)
            if parts.scheme not in ("http", "https"):
                continue  # mailto: and tel:
            if f"{parts.scheme}://{parts.netloc}" != site.url:
                external.add(absolute)
                continue
            # links are judged as the crawler checks them (HEAD): the two error pages pass, as planted
            method = "GET" if ref in loads else "HEAD"
            got = client.request(method, absolute, follow_redirects=True)
            assert got.status_code == 200, (page, method, ref)
    assert external == {url for url in EXPECTED["never_visit"] if url.startswith("https://")}


def _normalize(href: str) -> str:
    """The key a crawler merges variants under: no fragment, sorted query, folder paths ending in a slash."""
    path, _, query = href.split("#")[0].partition("?")
    if not path.endswith("/") and "." not in path.rsplit("/", 1)[-1]:
        path += "/"
    return path + ("?" + "&".join(sorted(query.split("&"))) if query else "")


def test_links_reach_every_page_at_its_depth(client: httpx.Client) -> None:
    """A breadth-first walk of the internal links, skipping broken ones and robots' /private/, finds the depths."""
    depths = {"/": 0}
    queue = deque(["/"])
    while queue:
        page = queue.popleft()
        if depths[page] > EXPECTED["max_depth"]:
            continue  # found, never visited
        for href in _refs(client.get(page).text).anchors:
            if not href.startswith("/"):
                continue  # the external link, mailto:, tel:, fragments of the page itself
            target = _normalize(href)
            if target in depths or target.startswith("/private/") or client.head(target).status_code >= 400:
                continue
            depths[target] = depths[page] + 1
            queue.append(target)
    assert depths == EXPECTED["depths"]


def test_stop_frees_the_port() -> None:
    running = start_sample_site()
    with httpx.Client() as http:
        assert http.get(running.url + "/").status_code == 200
    running.stop()
    running.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(running.url + "/", timeout=2)
