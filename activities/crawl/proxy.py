"""A filtering forward proxy for Chromium: every connection the browser makes is checked by the network policy.

Route interception does not see every redirect hop or sub-request (nor Playwright's own API request client), so
Chromium is launched with this proxy for everything (``--proxy-server`` with ``<-loopback>`` in the bypass list,
which makes Chromium proxy loopback too). The proxy resolves the host itself, checks every address with
:class:`~conveyor.netpolicy.NetPolicy` and connects to the checked address, so there is no window for DNS
rebinding. It speaks ``CONNECT`` (https, wss, and Playwright's request client for every scheme) and plain
``http://`` requests in absolute form. A refused request is answered ``403`` and recorded in :attr:`blocked`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from conveyor.logging import get_logger
from conveyor.netpolicy import HostNotFound, NetPolicy, UrlNotAllowed, canonical_host

log = get_logger(__name__)

#: Largest request line plus headers the proxy reads.
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 15.0
#: Header of the proxy's own 403 answer, naming why (the browser shows it as the response).
BLOCKED_HEADER = "X-Conveyor-Blocked"
_HOP_HEADERS = frozenset({"proxy-connection", "proxy-authorization", "connection", "keep-alive"})


@dataclass(frozen=True)
class BlockedRequest:
    """A request the policy refused: what was asked for, and why."""

    target: str
    """The URL for plain http; ``host:port`` for a tunnel (its path travels encrypted)."""
    host: str
    port: int
    address: str
    reason: str


@dataclass
class FilteringProxy:
    """One proxy listener on 127.0.0.1 (one per browser context, so refusals are told apart per visit)."""

    policy: NetPolicy
    blocked: list[BlockedRequest] = field(default_factory=list)
    unreachable: dict[tuple[str, int], str] = field(default_factory=dict)
    """Allowed hosts that could not be reached, by (host, port): Chromium's ``net::ERR_…`` name for why (the
    browser itself only sees the proxy's 502)."""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running listener."""
        assert self._server is not None, "the proxy is not started"
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> FilteringProxy:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        return self

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # the browser hung up or sent garbage: nothing to report
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        if method.upper() == "CONNECT":
            host, port = _host_port(target)
            shown = f"{canonical_host(host)}:{port}"
        else:
            parts = urlsplit(target)
            if parts.scheme.lower() != "http" or not parts.hostname:
                await _answer(writer, 400, "Bad Request", "only http:// URLs and CONNECT are proxied")
                return
            host, port = parts.hostname, parts.port or 80
            shown = target
        try:
            addresses = await self.policy.check(host, port)
        except UrlNotAllowed as err:
            self.blocked.append(
                BlockedRequest(shown, canonical_host(host), port, str(err.details.get("address", "")), err.message)
            )
            log.info("request blocked by the network policy", target=shown, reason=err.message)
            await _answer(writer, 403, "Forbidden", err.message)
            return
        except HostNotFound as err:
            self.unreachable[(canonical_host(host), port)] = "net::ERR_NAME_NOT_RESOLVED"
            await _answer(writer, 502, "Bad Gateway", err.message)
            return
        upstream = await _open(addresses, port)
        if isinstance(upstream, str):
            self.unreachable[(canonical_host(host), port)] = upstream
            await _answer(writer, 502, "Bad Gateway", f"cannot connect to {shown}: {upstream}")
            return
        up_reader, up_writer = upstream
        try:
            if method.upper() == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            else:
                path = urlsplit(target)._replace(scheme="", netloc="", fragment="").geturl() or "/"
                headers = [h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
                # one request per upstream connection: the answer ends when the server closes it
                up_writer.write(
                    "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""]).encode("latin-1")
                )
                await up_writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await up_writer.wait_closed()


def _host_port(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` of a CONNECT request."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def _open(addresses: Sequence[object], port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
    """A connection to the first checked address that answers (never to the host name: no second lookup), or
    Chromium's name for why none did."""
    reason = "net::ERR_CONNECTION_FAILED"
    for address in addresses:
        try:
            return await asyncio.wait_for(asyncio.open_connection(str(address), port), CONNECT_TIMEOUT_S)
        except ConnectionRefusedError:
            reason = "net::ERR_CONNECTION_REFUSED"
        except TimeoutError:
            reason = "net::ERR_CONNECTION_TIMED_OUT"
        except OSError:
            reason = "net::ERR_ADDRESS_UNREACHABLE"
    return reason


async def _answer(writer: asyncio.StreamWriter, status: int, phrase: str, message: str) -> None:
    """The proxy's own answer (a refusal names its reason in :data:`BLOCKED_HEADER` too)."""
    body = message.encode()
    one_line = message.replace("\r", " ").replace("\n", " ").encode("latin-1", errors="replace").decode("latin-1")
    headers = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 403:
        headers.append(f"{BLOCKED_HEADER}: {one_line}")
    writer.write("\r\n".join([*headers, "", ""]).encode("latin-1") + body)
    await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until the server side ends (then the browser's side is cut too)."""
    to_server = asyncio.create_task(_copy(reader, up_writer))
    to_browser = asyncio.create_task(_copy(up_reader, writer))
    try:
        await asyncio.wait({to_browser, to_server}, return_when=asyncio.FIRST_COMPLETED)
        if to_server.done() and not to_browser.done():
            # the browser finished sending (a half-close): let the answer come back
            await to_browser
    finally:
        for task in (to_server, to_browser):
            task.cancel()
        await asyncio.gather(to_server, to_browser, return_exceptions=True)
