"""Where user-supplied URLs may connect: deny loopback, private, link-local and metadata addresses by default.

The kernel owns this policy so every pipeline that fetches a URL a tenant gave (the crawler today; webhooks and
chat later) decides the same way. Decisions are made on *addresses*: a host is first normalised the way browsers
parse it (WHATWG URL host parsing: ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1`` are all 127.0.0.1),
then resolved, and *every* address it resolves to must be allowed. Callers connect to the checked address itself
(:meth:`NetPolicy.check` returns it), so a second DNS answer cannot slip another address in between the check and
the connection (DNS rebinding).

Operators opt in with ``CONVEYOR_CRAWL_ALLOW_PRIVATE_NETWORKS=true`` (allow everything) or with
``CONVEYOR_CRAWL_ALLOWED_HOSTS`` (``host`` or ``host:port`` entries, matched exactly against the URL's host).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import string
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from conveyor.errors import BadInput

if TYPE_CHECKING:
    from conveyor.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Resolves ``(host, port)`` to the addresses a connection could go to (tests pass a stub; no outside lookups).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

#: Denied IPv4 ranges, most specific first, with what each is (RFC 6890 and the IANA special-purpose registry).
DENIED_V4: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("169.254.169.254/32"), "the cloud metadata address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_V4("10.0.0.0/8"), "a private (RFC 1918) address"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT (RFC 6598) address"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("172.16.0.0/12"), "a private (RFC 1918) address"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment address"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("192.88.99.0/24"), "a 6to4 relay anycast address"),
    (_V4("192.168.0.0/16"), "a private (RFC 1918) address"),
    (_V4("198.18.0.0/15"), "a benchmarking address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)
#: Denied IPv6 ranges (checked after the IPv4-embedding forms below have been unwrapped).
DENIED_V6: tuple[tuple[IPNetwork, str], ...] = (
    (_V6("fd00:ec2::254/128"), "the cloud metadata address"),
    (_V6("::/128"), "an unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("2001::/32"), "a Teredo address (IPv4 tunnelled in IPv6)"),
    (_V6("2001::/23"), "an IETF protocol assignment address"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("fc00::/7"), "a unique-local address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("ff00::/8"), "a multicast address"),
)
#: Only global unicast IPv6 space is allowed at all (everything else is reserved or special).
GLOBAL_UNICAST_V6 = _V6("2000::/3")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_COMPAT = _V6("::/96")

_DIGITS = frozenset(string.digits)
_HEX = frozenset(string.hexdigits)


class UrlNotAllowed(BadInput):
    """A URL whose host is (or resolves to) an address the network policy denies."""

    default_code = "URL_NOT_ALLOWED"


class HostNotFound(BadInput):
    """A host name that resolves to no address (nothing to connect to, so nothing to allow or deny)."""

    default_code = "HOST_NOT_FOUND"


@dataclass(frozen=True)
class Denial:
    """Why one address is denied: the range it falls in and what that range is."""

    address: IPAddress
    network: IPNetwork
    reason: str

    def describe(self) -> str:
        """``127.0.0.1 is a loopback address`` (with the embedded IPv4 named for IPv6 forms that carry one)."""
        return f"{self.address} is {self.reason}"


def deny_reason(address: IPAddress) -> Denial | None:
    """Why ``address`` is denied, or None when it is a public address (pure)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, network, form = embedded
            found = deny_reason(inner)
            if found is not None:
                return Denial(address, network, f"{form} of {inner} ({found.reason})")
            return None
        for network, reason in DENIED_V6:
            if address in network:
                return Denial(address, network, reason)
        if address not in GLOBAL_UNICAST_V6:
            return Denial(address, ipaddress.IPv6Network(f"{address}/128"), "a reserved address")
        return None
    for network, reason in DENIED_V4:
        if address in network:
            return Denial(address, network, reason)
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, IPNetwork, str] | None:
    """The IPv4 address a mapped, compatible, 6to4 or NAT64 IPv6 address carries (and its form), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, _V6("::ffff:0:0/96"), "an IPv4-mapped form"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), _NAT64, "a NAT64 form"
    if address.sixtofour is not None:
        return address.sixtofour, _SIX_TO_FOUR, "a 6to4 form"
    if address in _COMPAT and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), _COMPAT, "an IPv4-compatible form"
    return None


# ------------------------------------------------------------------------------------- host parsing
def canonical_host(host: str) -> str:
    """The host as a browser would connect to it: an IP literal in its canonical form, or a lower-case name.

    Brackets, IPv6 zone ids and a trailing dot are dropped; IPv4 literals in any WHATWG form (decimal, octal,
    hex, fewer than four parts) become dotted quads. A host that ends in a number but is no valid IPv4 address
    (``1.2.3.999``) is refused, as browsers refuse it.
    """
    address = parse_ip(host)
    if address is not None:
        return str(address)
    return host.strip().lower().rstrip(".")


def parse_ip(host: str) -> IPAddress | None:
    """The IP address a URL host denotes (WHATWG host parsing), or None when it is a domain name.

    Raises :class:`UrlNotAllowed` for a host that ends in a number but is not a valid IPv4 address.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.split("%", 1)[0]  # a zone id names an interface, not another address
        try:
            return ipaddress.IPv6Address(text)
        except ValueError as err:
            raise _refused(host, f"{host!r} is not a valid IPv6 address") from err
    return _parse_ipv4(text.lower())


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _ends_in_number(parts[-1]):
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if len(parts) > 4 or any(n is None for n in numbers):
        raise _refused(host, f"{host!r} is not a valid IPv4 address")
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise _refused(host, f"{host!r} is not a valid IPv4 address")
    total = values[-1]
    for i, n in enumerate(values[:-1]):
        total += n * 256 ** (3 - i)
    return ipaddress.IPv4Address(total)


def _ends_in_number(last: str) -> bool:
    if last and set(last) <= _DIGITS:
        return True
    return last[:2] in ("0x", "0X") and set(last[2:]) <= _HEX


def _ipv4_number(part: str) -> int | None:
    """One part of a WHATWG IPv4 address: ``0x`` hex, leading-zero octal or decimal; None when invalid."""
    if part == "":
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits:
            return 0
        return int(digits, 16) if set(digits) <= _HEX else None
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8) if set(part[1:]) <= frozenset("01234567") else None
    return int(part) if set(part) <= _DIGITS else None


# ------------------------------------------------------------------------------------- the policy
async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (every family, TCP)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _split_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (canonical host, port or None)."""
    text = entry.strip()
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
        return canonical_host(inside), port
    if text.count(":") == 1:
        name, _, port_text = text.partition(":")
        return canonical_host(name), int(port_text)
    return canonical_host(text), None


@dataclass(frozen=True)
class NetPolicy:
    """Which hosts and addresses outbound connections made for a tenant may reach."""

    allow_private: bool = False
    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset()
    only_allowed: bool = False
    """Refuse every host that is not in ``allowed_hosts``, before looking it up."""
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def build(
        cls,
        *,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
        only_allowed: bool = False,
        resolver: Resolver | None = None,
    ) -> NetPolicy:
        """A policy from the operator's switches (``allowed_hosts`` entries are ``host`` or ``host:port``)."""
        return cls(
            allow_private=allow_private,
            allowed_hosts=frozenset(_split_entry(e) for e in allowed_hosts if e.strip()),
            only_allowed=only_allowed,
            resolver=resolver or system_resolver,
        )

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> NetPolicy:
        """The crawler's policy as the operator configured it."""
        return cls.build(
            allow_private=settings.crawl_allow_private_networks,
            allowed_hosts=settings.crawl_allowed_hosts,
            only_allowed=settings.crawl_only_allowed_hosts,
            resolver=resolver,
        )

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether the operator allowed this exact host (on any port, or on this one)."""
        name = canonical_host(host)
        return (name, None) in self.allowed_hosts or (name, port) in self.allowed_hosts

    async def check(self, host: str, port: int) -> list[IPAddress]:
        """The addresses to connect to for ``host:port``, each of them allowed; :class:`UrlNotAllowed` if not,
        :class:`HostNotFound` when the name resolves to nothing.

        Connect to what this returns, never to ``host`` again: that would resolve it a second time.
        """
        literal = parse_ip(host)
        if self.only_allowed and literal is None and not self.host_allowed(host, port):
            raise self._not_listed(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            name = canonical_host(host)
            try:
                found = await self.resolver(name, port)
            except OSError as err:
                raise HostNotFound(
                    f"cannot resolve {name}: {err.strerror or err}", details={"field": "url", "host": name}
                ) from err
            addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in found))
            if not addresses:
                raise HostNotFound(f"{name} resolves to no address", details={"field": "url", "host": name})
        if self.allow_private or self.host_allowed(host, port):
            return addresses
        for address in addresses:
            denial = deny_reason(address)
            if denial is not None:
                raise UrlNotAllowed(
                    f"{host.strip()} is not allowed: {denial.describe()} (an operator can allow it with "
                    "CONVEYOR_CRAWL_ALLOWED_HOSTS)",
                    details={
                        "field": "url",
                        "host": canonical_host(host),
                        "address": str(address),
                        "range": str(denial.network),
                    },
                )
        if self.only_allowed and not self.host_allowed(host, port):
            raise self._not_listed(host)
        return addresses

    @staticmethod
    def _not_listed(host: str) -> UrlNotAllowed:
        """The refusal of a host outside the allow-list when only allow-listed hosts may be reached."""
        return UrlNotAllowed(
            f"{host.strip()} is not allowed: only the hosts in CONVEYOR_CRAWL_ALLOWED_HOSTS may be crawled",
            details={"field": "url", "host": canonical_host(host)},
        )


# ------------------------------------------------------------------------------------- httpx
class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore backend that checks every TCP connection against a policy and connects to the checked address.

    httpx opens each redirect hop through its transport, so every hop is checked; TLS still verifies (and sends
    SNI for) the URL's host name, because httpcore takes that from the request, not from this connection.
    """

    def __init__(self, policy: NetPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve and check ``host``, then connect to the first of its allowed addresses that answers."""
        failure: Exception | None = None
        try:
            addresses = await self._policy.check(host, port)
        except HostNotFound as err:  # httpx reports it as the connect error it is
            raise httpcore.ConnectError(err.message) from err
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err
        assert failure is not None  # check() returns at least one address or raises
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: a policy-checked client never talks to local sockets."""
        raise httpcore.ConnectError(f"unix sockets are not allowed ({path})")

    async def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retry back-off)."""
        await self._inner.sleep(seconds)


def guarded_transport(policy: NetPolicy, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection (redirect hops included) is checked by ``policy``.

    Pass it as ``httpx.AsyncClient(transport=...)``: a client with an explicit transport also ignores proxy
    environment variables, so nothing is sent around the check. A refused connection raises
    :class:`UrlNotAllowed` out of the request.
    """
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    # httpx builds its pool without a backend argument: swap ours in (tests/security/test_ssrf.py proves it holds).
    assert isinstance(pool._network_backend, httpcore.AsyncNetworkBackend)
    pool._network_backend = GuardedNetworkBackend(policy)
    return transport


def _refused(host: str, message: str) -> UrlNotAllowed:
    return UrlNotAllowed(message, details={"field": "url", "host": host})
