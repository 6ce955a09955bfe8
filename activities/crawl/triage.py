"""Deterministic triage of a page's signals into findings: folding, fingerprints, severities, titles.

Severity rules:

- ``server_error``: critical.
- ``page_error``, ``failed_request``: high.
- ``broken_link``: high when the link answers >= 500 or cannot be reached (no status), else medium.
- ``missing_resource``: high for a script, medium for a stylesheet or a font, low for an image or anything else.
- ``http_error``, ``console_error``, ``blocked_request``: medium.
- ``slow_page``: low, medium when the load (``detail["load_ms"]``) took more than 3 x the slow-page threshold.
- ``missing_alt``, ``missing_lang``, ``missing_title``: low.

Identical signals of a page (same kind and fingerprint) fold into one finding; the worst of them speaks for all.
Accessibility findings are grouped by rule and page: every image without alt text on a page is one
``missing_alt`` finding that lists its elements (``evidence["elements"]``), not one bug per image.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from activities.crawl.schemas import BugKind, Finding, Severity, Signal
from activities.crawl.urls import fingerprint, normalize_url, origin_of, path_and_query, same_origin, url_key

SEVERITY_RANK: dict[Severity, int] = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}
LINEAR_PRIORITY: dict[Severity, int] = {Severity.CRITICAL: 1, Severity.HIGH: 2, Severity.MEDIUM: 3, Severity.LOW: 4}

TITLE_MAX = 120
MESSAGE_KEY_MAX = 200
_DESCRIPTION_MESSAGE_MAX = 2000
_SLOW_MEDIUM_FACTOR = 3

_PAGE_KEYED = {
    BugKind.HTTP_ERROR,
    BugKind.SERVER_ERROR,
    BugKind.SLOW_PAGE,
    BugKind.MISSING_TITLE,
    BugKind.MISSING_ALT,
}
_TARGET_KEYED = {BugKind.BROKEN_LINK, BugKind.MISSING_RESOURCE, BugKind.BLOCKED_REQUEST}
#: Accessibility rules whose findings list the page's offending elements.
_ELEMENT_RULES = {BugKind.MISSING_ALT}
#: Elements listed in one grouped finding (the count says how many there were).
ELEMENTS_MAX = 50
_MESSAGE_KEYED = {BugKind.CONSOLE_ERROR, BugKind.PAGE_ERROR}

# Any scheme, so that chrome-extension:// and webpack:// sources fold like http ones.
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>()\[\]{}]+", re.IGNORECASE)
_LINE_COL = re.compile(r"(?::\d+){1,2}$")
_DIGITS = re.compile(r"\d+")

_LABELS: dict[BugKind, str] = {
    BugKind.HTTP_ERROR: "HTTP error",
    BugKind.SERVER_ERROR: "Server error",
    BugKind.BROKEN_LINK: "Broken link",
    BugKind.MISSING_RESOURCE: "Missing resource",
    BugKind.CONSOLE_ERROR: "Console error",
    BugKind.PAGE_ERROR: "Uncaught exception",
    BugKind.FAILED_REQUEST: "Failed request",
    BugKind.SLOW_PAGE: "Slow page",
    BugKind.MISSING_ALT: "Image without alt text",
    BugKind.MISSING_LANG: "Missing lang attribute",
    BugKind.MISSING_TITLE: "Missing title",
    BugKind.BLOCKED_REQUEST: "Blocked request",
}


def triage(signals: list[Signal], page_url: str, *, slow_page_ms: int) -> list[Finding]:
    """The findings of one page: identical signals folded, fingerprinted, rated and sorted worst first."""
    folded: dict[tuple[BugKind, str], list[Signal]] = {}
    for signal in signals:
        print_id = fingerprint(signal.kind, _fingerprint_key(signal, page_url))
        folded.setdefault((signal.kind, print_id), []).append(signal)

    findings: list[Finding] = []
    for (kind, print_id), group in folded.items():
        rated = [(_severity(signal, slow_page_ms), signal) for signal in group]
        # min() keeps the first of equals, so the earliest of the worst signals speaks for the group.
        severity, worst = min(rated, key=lambda pair: SEVERITY_RANK[pair[0]])
        count = len(group)
        elements = _elements(group) if kind in _ELEMENT_RULES else []
        description = _description(worst, page_url, severity, count, slow_page_ms)
        evidence = _evidence(worst, count)
        title = _title(worst, page_url)
        if len(elements) > 1:
            title = _truncate(f"{len(elements)} images without alt text on {_display(page_url, page_url)}", TITLE_MAX)
            description = _grouped_description(page_url, severity, elements)
        if elements:
            evidence["elements"] = elements[:ELEMENTS_MAX]
            evidence["target"] = elements[0]
        findings.append(
            Finding(
                fingerprint=print_id,
                kind=kind,
                severity=severity,
                title=title,
                description=description,
                page_url=page_url,
                evidence=evidence,
                count=count,
            )
        )
    findings.sort(key=lambda finding: (SEVERITY_RANK[finding.severity], finding.kind.value, finding.fingerprint))
    return findings


def normalize_message(message: str) -> str:
    """The part of an error message that names the defect: first line, URL paths, digits as N, <= 200 chars."""
    first = next((line for line in message.splitlines() if line.strip()), "")
    reduced = _URL_IN_TEXT.sub(_url_path, first)
    collapsed = " ".join(_DIGITS.sub("N", reduced).split())
    return collapsed[:MESSAGE_KEY_MAX]


# ------------------------------------------------------------------------------------------- helpers
def _fingerprint_key(signal: Signal, page_url: str) -> str:
    """What makes two signals the same defect, wherever they were seen (the page only for page-level bugs)."""
    if signal.kind in _PAGE_KEYED:
        return url_key(page_url)
    if signal.kind in _TARGET_KEYED:
        return url_key(_resolve(signal.target, page_url))
    if signal.kind is BugKind.FAILED_REQUEST:
        return f"{_method(signal)} {_without_query(_resolve(signal.target, page_url))}"
    if signal.kind in _MESSAGE_KEYED:
        return normalize_message(signal.message)
    # missing_lang: a site template's defect, one bug for the whole origin.
    return origin_of(page_url)


def _severity(signal: Signal, slow_page_ms: int) -> Severity:
    """The severity of one signal (see the module docstring)."""
    kind = signal.kind
    if kind is BugKind.SERVER_ERROR:
        return Severity.CRITICAL
    if kind in (BugKind.PAGE_ERROR, BugKind.FAILED_REQUEST):
        return Severity.HIGH
    if kind is BugKind.BROKEN_LINK:
        return Severity.HIGH if signal.status is None or signal.status >= 500 else Severity.MEDIUM
    if kind is BugKind.MISSING_RESOURCE:
        resource_type = signal.resource_type.lower()
        if resource_type == "script":
            return Severity.HIGH
        return Severity.MEDIUM if resource_type in ("stylesheet", "font") else Severity.LOW
    if kind in (BugKind.HTTP_ERROR, BugKind.CONSOLE_ERROR, BugKind.BLOCKED_REQUEST):
        return Severity.MEDIUM
    if kind is BugKind.SLOW_PAGE:
        load_ms = _load_ms(signal)
        very_slow = load_ms is not None and load_ms > _SLOW_MEDIUM_FACTOR * slow_page_ms
        return Severity.MEDIUM if very_slow else Severity.LOW
    return Severity.LOW


def _title(signal: Signal, page_url: str) -> str:
    """A one-line summary of the defect, at most 120 characters."""
    kind = signal.kind
    page = _display(page_url, page_url)
    target = _display(signal.target, page_url) if signal.target else "(none)"
    status = str(signal.status) if signal.status is not None else None
    first_line = next((line.strip() for line in signal.message.splitlines() if line.strip()), "")
    if kind is BugKind.HTTP_ERROR:
        title = f"HTTP {status or 'error'} on {page}"
    elif kind is BugKind.SERVER_ERROR:
        title = f"Server error {status or '5xx'} on {page}"
    elif kind is BugKind.BROKEN_LINK:
        title = f"Broken link to {target} ({status or 'unreachable'})"
    elif kind is BugKind.MISSING_RESOURCE:
        title = f"Missing {signal.resource_type.lower() or 'resource'}: {target} ({status or 'failed'})"
    elif kind is BugKind.FAILED_REQUEST:
        title = f"Failed request: {_method(signal)} {target} ({status or 'network error'})"
    elif kind is BugKind.CONSOLE_ERROR:
        title = f"Console error: {first_line or '(empty message)'}"
    elif kind is BugKind.PAGE_ERROR:
        line = first_line or "exception"
        title = line if line.lower().startswith("uncaught") else f"Uncaught {line}"
    elif kind is BugKind.SLOW_PAGE:
        load_ms = _load_ms(signal)
        title = f"Slow page: {page}" + (f" ({load_ms} ms)" if load_ms is not None else "")
    elif kind is BugKind.MISSING_ALT:
        title = f"Image without alt text: {target if signal.target else '(no src)'}"
    elif kind is BugKind.MISSING_LANG:
        title = f"Missing lang attribute on <html> ({origin_of(page_url) or page_url})"
    elif kind is BugKind.BLOCKED_REQUEST:
        title = f"Blocked request to {target} ({signal.detail.get('address') or 'denied address'})"
    else:
        title = f"Page without a title: {page}"
    return _truncate(" ".join(title.split()), TITLE_MAX)


def _description(signal: Signal, page_url: str, severity: Severity, count: int, slow_page_ms: int) -> str:
    """A markdown account of the defect: what was seen, where, and the evidence."""
    # The page's URL comes from the site's own links: as code it cannot render as a link, image or HTML.
    lines = [f"**{_LABELS[signal.kind]}** on {_code(page_url)}", "", _what_happened(signal, slow_page_ms), ""]
    lines.append(f"- Severity: {severity.value}")
    lines.append(f"- Seen {count} time{'s' if count != 1 else ''} on this page")
    for label, value in (
        ("Target", signal.target),
        ("Status", "" if signal.status is None else str(signal.status)),
        ("Resource type", signal.resource_type),
        ("Method", signal.method.upper()),
    ):
        if value:
            lines.append(f"- {label}: {_code(value)}")
    for key in sorted(signal.detail):
        lines.append(f"- {key}: {_code(_truncate(str(signal.detail[key]), MESSAGE_KEY_MAX))}")
    if signal.message.strip():
        message = _truncate(signal.message.strip(), _DESCRIPTION_MESSAGE_MAX)
        fence = "`" * max(3, _longest_backtick_run(message) + 1)
        lines += ["", fence, message, fence]
    return "\n".join(lines)


def _elements(group: list[Signal]) -> list[str]:
    """The distinct elements (image sources) a grouped accessibility finding is about, sorted."""
    return sorted({signal.target or "(no src)" for signal in group})


def _grouped_description(page_url: str, severity: Severity, elements: list[str]) -> str:
    """A markdown account of one accessibility rule broken by several elements of a page."""
    lines = [
        f"**{_LABELS[BugKind.MISSING_ALT]}** on {_code(page_url)}",
        "",
        f"{len(elements)} images on the page have no alt attribute, so screen readers cannot describe them.",
        "",
        f"- Severity: {severity.value}",
        *[f"- Image: {_code(element)}" for element in elements[:ELEMENTS_MAX]],
    ]
    if len(elements) > ELEMENTS_MAX:
        lines.append(f"- … and {len(elements) - ELEMENTS_MAX} more")
    return "\n".join(lines)


def _what_happened(signal: Signal, slow_page_ms: int) -> str:
    """One sentence saying what was observed."""
    kind = signal.kind
    target = _code(signal.target) if signal.target else "an unknown URL"
    answered = f"answered HTTP {signal.status}" if signal.status is not None else "could not be reached"
    if kind is BugKind.HTTP_ERROR:
        return f"The page answered HTTP {signal.status}." if signal.status else "The page answered with an error."
    if kind is BugKind.SERVER_ERROR:
        return f"The page answered HTTP {signal.status} (server error)." if signal.status else "The server failed."
    if kind is BugKind.BROKEN_LINK:
        return f"A link on the page points to {target}, which {answered}."
    if kind is BugKind.MISSING_RESOURCE:
        failed = f"answered HTTP {signal.status}" if signal.status is not None else "failed to load"
        return f"The {signal.resource_type.lower() or 'resource'} {target} {failed}."
    if kind is BugKind.FAILED_REQUEST:
        failed = f"answered HTTP {signal.status}" if signal.status is not None else "failed at the network level"
        return f"A {_method(signal)} request to {target} {failed}."
    if kind is BugKind.CONSOLE_ERROR:
        return "The page logged an error to the console."
    if kind is BugKind.BLOCKED_REQUEST:
        return f"The page led to {target}, which the network policy refused and the crawler did not follow."
    if kind is BugKind.PAGE_ERROR:
        return "The page threw an exception that nothing caught."
    if kind is BugKind.SLOW_PAGE:
        load_ms = _load_ms(signal)
        took = f"{load_ms} ms" if load_ms is not None else "longer than the threshold"
        return f"The page took {took} to load; the threshold is {slow_page_ms} ms."
    if kind is BugKind.MISSING_ALT:
        image = target if signal.target else "an image without a src"
        return f"The image {image} has no alt attribute, so screen readers cannot describe it."
    if kind is BugKind.MISSING_LANG:
        return "The page's `<html>` element has no lang attribute, so screen readers cannot tell its language."
    return "The page has no `<title>`, or an empty one."


def _evidence(signal: Signal, count: int) -> dict[str, Any]:
    """The raw facts of the representative signal plus how many were folded."""
    return {
        "target": signal.target,
        "status": signal.status,
        "message": signal.message,
        "resource_type": signal.resource_type,
        "method": signal.method,
        "detail": dict(signal.detail),
        "count": count,
    }


def _resolve(target: str, page_url: str) -> str:
    """``target`` as an absolute normalized URL when it is an http(s) one, else as given."""
    return normalize_url(target, page_url) or target


def _without_query(url: str) -> str:
    """``url`` without its query string and fragment."""
    try:
        return urlunsplit(urlsplit(url)._replace(query="", fragment=""))
    except ValueError:
        return url.split("#", 1)[0].split("?", 1)[0]


def _method(signal: Signal) -> str:
    """The request's upper-case HTTP method, GET when unknown (what fetch() and XHR default to)."""
    return (signal.method or "GET").upper()


def _load_ms(signal: Signal) -> int | None:
    """The page's load time in milliseconds from the signal's detail, when it says."""
    value = signal.detail.get("load_ms")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _display(url: str, page_url: str) -> str:
    """A short form of ``url``: its path and query when on the page's origin, else the whole URL."""
    resolved = normalize_url(url, page_url)
    if resolved is None:
        return url
    return path_and_query(resolved) if same_origin(resolved, page_url) else resolved


def _url_path(match: re.Match[str]) -> str:
    """The path of a URL found in a message, without query or ``:line:col``."""
    url = _LINE_COL.sub("", match.group(0).rstrip(".,;!?"))
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return "/"


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _longest_backtick_run(text: str) -> int:
    """The length of the longest run of backticks in ``text``."""
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def _code(text: str) -> str:
    """``text`` as markdown inline code, whatever backticks it holds."""
    text = " ".join(text.split())
    fence = "`" * (_longest_backtick_run(text) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"
