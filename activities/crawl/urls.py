"""Pure URL helpers of the crawler: normalization, page identity, origins, robots.txt rules, fingerprints."""

from __future__ import annotations

import hashlib
import ipaddress
import string
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from publicsuffixlist import PublicSuffixList

from activities.crawl.schemas import RobotsRules

# This module is imported by workflow code through a pass-through import: it must stay free of I/O,
# clocks and randomness so that replays compute exactly what the first run computed.

#: The Public Suffix List bundled with the ``publicsuffixlist`` package (read once at import, never downloaded):
#: ``same_origin: false`` roams one registrable domain, never a whole public suffix such as github.io or co.uk.
_PSL = PublicSuffixList(only_icann=False)

_SCHEMES = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_HEXDIGITS = frozenset(string.hexdigits)
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = frozenset(_UNRESERVED | set(_SUB_DELIMS + ":@/"))
_QUERY_SAFE = frozenset(_PATH_SAFE | {"?"})
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-._")


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The absolute, canonical http(s) URL to fetch for ``url`` (resolved against ``base``), or None."""
    parts = _split(url, base)
    return None if parts is None else urlunsplit(parts)


def url_key(url: str) -> str:
    """The identity of a page in the visited set: the normalized URL without a trailing slash on its path."""
    parts = _split(url)
    if parts is None:
        return url
    path = parts.path
    if path != "/" and path.endswith("/"):
        path = path[:-1]
    return urlunsplit(parts._replace(path=path))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of the normalized URL, or "" when it is not an http(s) URL."""
    parts = _split(url)
    return "" if parts is None else _origin(parts)


def same_origin(url: str, origin: str) -> bool:
    """Whether ``url`` has the same scheme, host and port as ``origin`` (itself a URL or an origin)."""
    mine = origin_of(url)
    return mine != "" and mine == origin_of(origin)


def path_and_query(url: str) -> str:
    """The normalized path plus ``?query`` when there is one: what robots.txt rules match against."""
    parts = _split(url)
    if parts is None:
        # Not an http(s) URL: still give robots matching the literal path rather than failing.
        raw = urlsplit(url)
        return (raw.path or "/") + (f"?{raw.query}" if raw.query else "")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """The rules of the robots.txt groups that apply to ``user_agent`` (RFC 9309), merged."""
    ours = _product_token(user_agent)
    groups: list[tuple[set[str], list[tuple[str, str]]]] = []
    delays: list[float | None] = []
    reading_agents = False
    for raw_line in text.lstrip("\ufeff").splitlines():
        key, sep, value = raw_line.split("#", 1)[0].partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == "user-agent":
            if not reading_agents:
                groups.append((set(), []))
                delays.append(None)
                reading_agents = True
            groups[-1][0].add(_product_token(value))
        elif key in ("allow", "disallow"):
            reading_agents = False
            # Rules before any User-agent line belong to no group; an empty value restricts nothing.
            if groups and value:
                groups[-1][1].append((key, _normalize_escapes(value, _QUERY_SAFE)))
        elif key == "crawl-delay" and groups:
            delays[-1] = _seconds(value)
        # Sitemap, Crawl-delay and unknown records neither hold rules nor end a run of User-agent lines.

    picked = [i for i, (agents, _) in enumerate(groups) if ours and ours in agents]
    if not picked:
        picked = [i for i, (agents, _) in enumerate(groups) if "*" in agents]
    chosen = [groups[i][1] for i in picked]
    given = [delay for delay in (delays[i] for i in picked) if delay is not None]
    allow: list[str] = []
    disallow: list[str] = []
    for rules in chosen:
        for kind, pattern in rules:
            bucket = allow if kind == "allow" else disallow
            if pattern not in bucket:
                bucket.append(pattern)
    return RobotsRules(allow=allow, disallow=disallow, crawl_delay=max(given) if given else None)


def robots_allows(rules: RobotsRules | None, url: str) -> bool:
    """Whether ``rules`` let the crawler fetch ``url``: the longest matching rule wins, Allow on a tie."""
    if rules is None:
        return True
    target = path_and_query(url)
    if target.split("?", 1)[0] == "/robots.txt":
        return True
    longest_disallow = _longest_match(rules.disallow, target)
    if longest_disallow < 0:
        return True
    return _longest_match(rules.allow, target) >= longest_disallow


def should_visit(url: str, origin: str, *, same_origin: bool, robots: RobotsRules | None) -> bool:
    """Whether the crawl started at ``origin`` may visit ``url`` (scheme, origin or site, robots.txt).

    With ``same_origin`` false the crawl roams the start host's registrable domain (``docs.example.com`` and
    ``www.example.com`` are one site), never its public suffix: ``a.github.io`` does not reach ``b.github.io``.
    """
    parts = _split(url)
    start = _split(origin)
    if parts is None or start is None:
        return False
    on_start_origin = _origin(parts) == _origin(start)
    if same_origin and not on_start_origin:
        return False
    if not same_site(parts.hostname or "", start.hostname or ""):
        return False
    # robots.txt only speaks for its own origin (RFC 9309 section 2.3): other hosts' rules are not known here.
    return robots_allows(robots, urlunsplit(parts)) if on_start_origin else True


def registrable_domain(host: str) -> str | None:
    """The registrable domain of a host name (Public Suffix List), or None for an IP, a suffix or no name."""
    host = host.strip("[]").rstrip(".").lower()
    if not host or _is_ip(host):
        return None
    domain: str | None = _PSL.privatesuffix(host)
    return domain


def same_site(host: str, start_host: str) -> bool:
    """Whether ``host`` belongs to the site of ``start_host``: the same host, or the same registrable domain."""
    if host == start_host:
        return True
    site = registrable_domain(start_host)
    return site is not None and registrable_domain(host) == site


def fingerprint(kind: str, key: str) -> str:
    """The stable id of a defect: the first 16 hex digits of sha256 of ``kind|key``."""
    return hashlib.sha256(f"{kind}|{key}".encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- helpers
def _is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _seconds(value: str) -> float | None:
    """A ``Crawl-delay`` value in seconds (a non-negative finite number), or None when it is not one."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _split(url: str, base: str | None = None) -> SplitResult | None:
    """The normalized parts of an http(s) URL, or None when it is not one."""
    url = url.strip()
    if not url:
        return None
    try:
        parts = urlsplit(urljoin(base, url) if base else url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            return None
        host = _normalize_host(parts.hostname or "")
        port = parts.port
    except ValueError:
        return None
    if host is None:
        return None
    # User info (``user:pass@``) is dropped: credentials found in a page are never stored, shown or sent on.
    netloc = host if port is None or port == _SCHEMES[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_normalize_escapes(parts.path or "/", _PATH_SAFE))
    return SplitResult(scheme, netloc, path, _normalize_query(parts.query), "")


def _normalize_host(host: str) -> str | None:
    """The lower-case ASCII form of a host name or IP address, or None when it is not a valid one."""
    if not host:
        return None
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    return host if set(host) <= _HOST_CHARS and not host.startswith(".") else None


def _normalize_escapes(text: str, safe: frozenset[str]) -> str:
    """``text`` with unreserved characters decoded, other escapes upper-cased and unsafe characters encoded."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        hex_pair = text[i + 1 : i + 3]
        if char == "%" and len(hex_pair) == 2 and set(hex_pair) <= _HEXDIGITS:
            decoded = chr(int(hex_pair, 16))
            out.append(decoded if decoded in _UNRESERVED else f"%{hex_pair.upper()}")
            i += 3
            continue
        if char in safe:
            out.append(char)
        else:
            # A lone "%" lands here too and becomes "%25", as browsers send it.
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", errors="replace")))
        i += 1
    return "".join(out)


def _normalize_query(query: str) -> str:
    """The query's parameters with normalized escapes, empty ones dropped, sorted by key then value."""
    params = [_normalize_escapes(param, _QUERY_SAFE) for param in query.split("&") if param]
    # sorted() is stable, so "a" and "a=" (same key, same value) keep their order.
    params.sort(key=lambda param: tuple(param.partition("=")[::2]))
    return "&".join(params)


def _remove_dot_segments(path: str) -> str:
    """An absolute path without "." and ".." segments (RFC 3986 section 5.2.4)."""
    segments = path.split("/")[1:]
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if segments and segments[-1] in (".", "..") and out:
        # "/a/b/.." names the directory "/a/", not the file "/a".
        out.append("")
    return "/" + "/".join(out)


def _origin(parts: SplitResult) -> str:
    """``scheme://host[:port]`` of normalized parts, without user info."""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _product_token(agent: str) -> str:
    """The lower-case product token of a user agent ("conveyorbot" of "ConveyorBot/0.1 (+...)"), or "*"."""
    agent = agent.strip()
    if agent.startswith("*"):
        return "*"
    end = 0
    while end < len(agent) and (agent[end].isascii() and (agent[end].isalpha() or agent[end] in "_-")):
        end += 1
    return agent[:end].lower()


def _longest_match(patterns: list[str], target: str) -> int:
    """The length of the longest pattern that matches ``target``, or -1 when none does."""
    best = -1
    for pattern in patterns:
        normalized = _normalize_escapes(pattern, _QUERY_SAFE)
        if len(normalized) > best and _wildcard_match(normalized, target):
            best = len(normalized)
    return best


def _wildcard_match(pattern: str, target: str) -> bool:
    """Whether a robots pattern ("*" any run, a final "$" the end) matches the start of ``target``."""
    if pattern.endswith("$"):
        pattern = pattern[:-1]
    else:
        pattern += "*"
    # Greedy matching that backtracks only to the last "*": O(len(pattern) * len(target)) at worst, so a
    # hostile robots.txt cannot stall the workflow the way a backtracking regex could.
    p = t = 0
    star = -1
    mark = 0
    while t < len(target):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif p < len(pattern) and pattern[p] == target[t]:
            p += 1
            t += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)
