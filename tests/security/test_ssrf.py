"""Issue 12 item 1 (and 14's ``user:pass@``): the crawler cannot be aimed inward.

Traffic goes to loopback only: decisions about private, link-local and metadata ranges are made on addresses a
stub resolver returns, never by connecting to them. Denied loopback servers here are real, and each test checks
that they received nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from activities.crawl.agent import PageAgent
from activities.crawl.browser import BrowserPool
from activities.crawl.models import CrawlSession
from activities.crawl.schemas import BugKind, CrawlConfig, PageVisit
from activities.crawl.urls import normalize_url
from api.caller import Caller
from api.services.crawl import start_session
from conveyor.heartbeat import ProgressBox
from conveyor.models import User
from conveyor.netpolicy import NetPolicy, UrlNotAllowed, canonical_host, deny_reason, guarded_transport, parse_ip
from conveyor.settings import Settings
from tests.helpers import TEST_CHROMIUM_ARGS
from tests.helpers.fakes import FakeHttpServer, Recorded, Response
from tests.helpers.stack import Stack

HTML = {"Content-Type": "text/html; charset=utf-8"}


def _stub(answers: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver that knows only ``answers`` (no lookup leaves the process)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"stub resolver: unknown host {host}")
        return answers[host]

    return resolve


# ------------------------------------------------------------------------------------------- the policy
@pytest.mark.parametrize(
    ("host", "address", "reason"),
    [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("2130706433", "127.0.0.1", "loopback"),
        ("0177.0.0.1", "127.0.0.1", "loopback"),
        ("0x7f.1", "127.0.0.1", "loopback"),
        ("127.1", "127.0.0.1", "loopback"),
        ("127.0.0.1.", "127.0.0.1", "loopback"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "loopback"),
        ("[::1]", "::1", "loopback"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("10.1.2.3", "10.1.2.3", "RFC 1918"),
        ("172.16.0.1", "172.16.0.1", "RFC 1918"),
        ("192.168.1.1", "192.168.1.1", "RFC 1918"),
        ("100.64.0.1", "100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "169.254.169.254", "metadata"),
        ("169.254.1.1", "169.254.1.1", "link-local"),
        ("[fd00:ec2::254]", "fd00:ec2::254", "metadata"),
        ("[fe80::1%25eth0]", "fe80::1", "link-local"),
        ("[fc00::1]", "fc00::1", "unique-local"),
        ("224.0.0.1", "224.0.0.1", "multicast"),
        ("255.255.255.255", "255.255.255.255", "broadcast"),
        ("[2002:7f00:1::]", "2002:7f00:1::", "6to4"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe", "metadata"),
        ("[::127.0.0.1]", "::7f00:1", "IPv4-compatible"),
        ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ],
)
async def test_denied_literals_name_the_address_and_its_range(host: str, address: str, reason: str) -> None:
    with pytest.raises(UrlNotAllowed) as refused:
        await NetPolicy().check(host, 80)
    assert refused.value.code == "URL_NOT_ALLOWED" and refused.value.http_status == 400
    assert refused.value.details["address"] == address
    assert f"{address} is " in refused.value.message and reason in refused.value.message
    assert host.strip() in refused.value.message


async def test_every_resolved_address_is_checked_and_the_checked_one_is_returned() -> None:
    policy = NetPolicy(resolver=_stub({"mixed.test": ["93.184.215.14", "10.0.0.7"], "ok.test": ["93.184.215.14"]}))
    with pytest.raises(UrlNotAllowed) as refused:
        await policy.check("mixed.test", 443)
    assert "10.0.0.7 is a private (RFC 1918) address" in refused.value.message
    assert await policy.check("OK.test.", 443) == [ipaddress.ip_address("93.184.215.14")]


async def test_operators_opt_in_exactly() -> None:
    stub = _stub({"intranet.test": ["10.0.0.5"], "localhost": ["127.0.0.1"]})
    listed = NetPolicy.build(allowed_hosts=["intranet.test", "127.0.0.1:8080", "[::1]:9000"], resolver=stub)
    assert await listed.check("intranet.test", 1234)
    assert await listed.check("127.0.0.1", 8080)
    assert await listed.check("2130706433", 8080)  # the same host, spelled another way
    assert await listed.check("::1", 9000)
    for host, port in (("127.0.0.1", 8081), ("127.0.0.2", 8080), ("::1", 9001), ("localhost", 8080)):
        with pytest.raises(UrlNotAllowed):
            await listed.check(host, port)
    everything = NetPolicy.build(allow_private=True, resolver=stub)
    assert await everything.check("169.254.169.254", 80)


async def test_only_listed_hosts_are_reached_and_others_are_never_looked_up() -> None:
    looked_up: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["93.184.215.14"]

    only = NetPolicy.build(allowed_hosts=["127.0.0.1:8080", "docs.example.test"], only_allowed=True, resolver=resolver)
    assert await only.check("127.0.0.1", 8080)
    assert await only.check("docs.example.test", 443)
    for host, port in (("update.example.test", 443), ("93.184.215.14", 80), ("127.0.0.1", 8081)):
        with pytest.raises(UrlNotAllowed):
            await only.check(host, port)
    assert looked_up == ["docs.example.test"]


_DENIED_V4 = st.sampled_from(["127.0.0.1", "127.255.0.9", "10.20.30.40", "172.31.255.254", "192.168.0.1",
                              "169.254.169.254", "100.100.100.100", "0.0.0.0", "224.1.2.3"])  # fmt: skip


def _encodings(address: str, data: st.DataObject) -> str:
    """One of the spellings a browser accepts for an IPv4 address."""
    value = int(ipaddress.IPv4Address(address))
    octets = [int(o) for o in address.split(".")]
    kind = data.draw(st.sampled_from(["decimal", "octal", "hex", "short", "mixed", "dot", "mapped", "nat64", "6to4"]))
    if kind == "decimal":
        return str(value)
    if kind == "octal":
        return ".".join(f"0{o:o}" for o in octets)
    if kind == "hex":
        return f"0x{value:x}"
    if kind == "short":
        return f"{octets[0]}.{value & 0xFFFFFF}"
    if kind == "mixed":
        return f"0x{octets[0]:x}.0{octets[1]:o}.{(octets[2] << 8) + octets[3]}"
    if kind == "dot":
        return address + "."
    if kind == "mapped":
        return f"[::ffff:{address}]"
    if kind == "nat64":
        return f"[64:ff9b::{address}]"
    return f"[2002:{value >> 16:x}:{value & 0xFFFF:x}::1]"


@given(st.data())
async def test_every_encoding_of_a_denied_address_is_denied(data: st.DataObject) -> None:
    address = data.draw(_DENIED_V4)
    host = _encodings(address, data)
    assert deny_reason(ipaddress.IPv4Address(address)) is not None
    with pytest.raises(UrlNotAllowed) as refused:
        await NetPolicy().check(host, 80)
    assert address in refused.value.message


@given(st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(["127.0.0.1", "localhost", "::1"]))
async def test_the_allow_list_is_exact(allowed_port: int, asked_port: int, host: str) -> None:
    stub = _stub({"localhost": ["127.0.0.1"]})
    entry = f"[{host}]:{allowed_port}" if ":" in host else f"{host}:{allowed_port}"
    policy = NetPolicy.build(allowed_hosts=[entry], resolver=stub)
    if asked_port == allowed_port:
        assert await policy.check(host, asked_port)
    else:
        with pytest.raises(UrlNotAllowed):
            await policy.check(host, asked_port)


@given(st.from_regex(r"[a-z]{1,10}\.[0-9]{1,4}", fullmatch=True))
def test_a_host_ending_in_a_bad_number_is_refused_not_looked_up(host: str) -> None:
    with pytest.raises(UrlNotAllowed):
        parse_ip(host)


def test_canonical_host_matches_the_whatwg_forms() -> None:
    assert {canonical_host(h) for h in ("2130706433", "0177.0.0.1", "0x7f.1", "127.1", "127.0.0.1.")} == {"127.0.0.1"}


# ------------------------------------------------------------------------------------------- httpx
async def test_httpx_transport_refuses_a_redirect_to_a_denied_loopback_port() -> None:
    with FakeHttpServer(lambda r: (200, HTML, b"internal secrets")) as denied:

        def redirect(request: Recorded) -> Response:
            return 302, {"Location": f"{denied.url}/admin"}, b""

        with FakeHttpServer(redirect) as allowed:
            policy = NetPolicy.build(allowed_hosts=[allowed.url.removeprefix("http://")])
            async with httpx.AsyncClient(transport=guarded_transport(policy), follow_redirects=True) as http:
                with pytest.raises(UrlNotAllowed) as refused:
                    await http.get(f"{allowed.url}/go")
            assert [r.path for r in allowed.requests] == ["/go"]
        assert denied.requests == []
    assert "127.0.0.1 is a loopback address" in refused.value.message


# ------------------------------------------------------------------------------------------- the API
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8233/namespaces/default/workflows",
        "http://10.0.0.8/",
        "http://2130706433:8233/",
        "http://0177.0.0.1:8233/",
        "http://0x7f.1:8233/",
        "http://[::ffff:127.0.0.1]:8233/",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_the_api_refuses_a_denied_start_url_and_starts_nothing(stack: Stack, url: str) -> None:
    user_id, key = await stack.new_user()
    async with stack.http(key) as http:
        answer = await http.post("/api/crawls", json={"url": url})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "URL_NOT_ALLOWED" and error["details"]["field"] == "url"
    assert error["details"]["address"] in error["message"]
    async with stack.sessions() as session:
        stored = await session.scalar(select(func.count()).where(CrawlSession.user_id == user_id))
    assert stored == 0


async def test_a_name_resolving_to_the_metadata_address_is_refused_before_anything_is_stored(stack: Stack) -> None:
    user_id, _ = await stack.new_user()
    # the test stack crawls only its own servers; this check is about a public-looking name resolving inward
    settings = stack.settings.model_copy(update={"crawl_only_allowed_hosts": False})
    policy = NetPolicy.from_settings(settings, resolver=_stub({"metadata.example.test": ["169.254.169.254"]}))
    async with stack.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        caller = Caller(user, session, stack.client, stack.blobs, stack.settings)
        with pytest.raises(UrlNotAllowed) as refused:
            await start_session(caller, CrawlConfig(url="http://metadata.example.test/"), policy=policy)
        stored = await session.scalar(select(func.count()).where(CrawlSession.user_id == user_id))
    assert stored == 0
    assert "metadata.example.test" in refused.value.message
    assert "169.254.169.254 is the cloud metadata address" in refused.value.message


async def test_credentials_in_a_start_url_are_refused_and_never_kept_from_pages(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        answer = await http.post("/api/crawls", json={"url": "http://admin:hunter2@example.com/"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BAD_URL" and answer.json()["error"]["details"] == {"field": "url"}
    assert "hunter2" not in answer.text
    # a link found on a page keeps no user info: it is neither stored, shown nor sent on
    assert normalize_url("http://user:pw@Example.com:80/a/../b", None) == "http://example.com/b"


# ------------------------------------------------------------------------------------------- Chromium
def _visit(url: str, origin: str) -> PageVisit:
    return PageVisit(session_id="s", url=url, depth=0, origin=origin, slow_page_ms=60_000)


@pytest.mark.needs_chromium
async def test_chromium_records_a_redirect_and_a_subresource_to_a_denied_port_and_never_fetches_them() -> None:
    with FakeHttpServer(lambda r: (200, {"Content-Type": "image/png"}, b"secret")) as denied:

        def site(request: Recorded) -> Response:
            if request.path == "/go":
                return 302, {"Location": f"{denied.url}/admin"}, b""
            page = f'<html lang="en"><title>t</title><img alt="x" src="{denied.url}/x.png"></html>'
            return 200, HTML, page.encode()

        with FakeHttpServer(site) as allowed:
            policy = NetPolicy.build(allowed_hosts=[allowed.url.removeprefix("http://")])
            pool = BrowserPool(Settings().chromium_path, TEST_CHROMIUM_ARGS, "ConveyorBot/0.1", policy=policy)
            agent = PageAgent(pool)
            try:
                page = await agent.run(_visit(f"{allowed.url}/", allowed.url), ProgressBox())
                hop = await agent.run(_visit(f"{allowed.url}/go", allowed.url), ProgressBox())
            finally:
                await pool.close()
    assert denied.requests == []  # neither the image nor the redirect target was ever asked for
    for state in (page, hop):
        blocked = [f for f in state["findings"] if f.kind == BugKind.BLOCKED_REQUEST]
        assert len(blocked) == 1, state["findings"]
        assert blocked[0].evidence.get("target", "").startswith(denied.url)
        assert "127.0.0.1 is a loopback address" in blocked[0].description
    assert page["status"] == 200
    assert hop["status"] is None and "network policy" in (hop["error"] or "")
