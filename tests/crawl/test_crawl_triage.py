"""Triage of a page's signals: folding, fingerprints across pages, severities, titles, descriptions and order."""

from __future__ import annotations

from typing import Any

import pytest

from activities.crawl.schemas import BugKind, Finding, Severity, Signal
from activities.crawl.triage import LINEAR_PRIORITY, SEVERITY_RANK, normalize_message, triage

PAGE = "https://shop.example/cart"
OTHER_PAGE = "https://shop.example/checkout"
SLOW_MS = 3000


def signal(kind: BugKind, page: str = PAGE, **fields: Any) -> Signal:
    return Signal(kind=kind, page_url=page, **fields)


def one(signals: list[Signal], page: str = PAGE, slow_page_ms: int = SLOW_MS) -> Finding:
    findings = triage(signals, page, slow_page_ms=slow_page_ms)
    assert len(findings) == 1
    return findings[0]


# ------------------------------------------------------------------------------------------- folding
def test_identical_signals_on_a_page_fold_into_one_finding_with_a_count() -> None:
    link = signal(BugKind.BROKEN_LINK, target="https://shop.example/missing.html", status=404)
    finding = one([link, link, link])
    assert finding.count == 3
    assert finding.evidence["count"] == 3
    assert "Seen 3 times on this page" in finding.description


def test_relative_and_absolute_forms_of_one_link_fold_together() -> None:
    findings = triage(
        [
            signal(BugKind.BROKEN_LINK, target="/missing.html", status=404),
            signal(BugKind.BROKEN_LINK, target="https://SHOP.example:443/missing.html#top", status=404),
            signal(BugKind.BROKEN_LINK, target="missing.html/", status=404),
        ],
        PAGE,
        slow_page_ms=SLOW_MS,
    )
    assert [f.count for f in findings] == [3]


def test_different_defects_stay_separate() -> None:
    findings = triage(
        [
            signal(BugKind.BROKEN_LINK, target="/a", status=404),
            signal(BugKind.BROKEN_LINK, target="/b", status=404),
            signal(BugKind.MISSING_RESOURCE, target="/a", status=404, resource_type="image"),
        ],
        PAGE,
        slow_page_ms=SLOW_MS,
    )
    assert len(findings) == 3
    assert len({f.fingerprint for f in findings}) == 3


def test_no_signals_no_findings() -> None:
    assert triage([], PAGE, slow_page_ms=SLOW_MS) == []


def test_folded_finding_takes_the_worst_severity() -> None:
    finding = one(
        [
            signal(BugKind.BROKEN_LINK, target="/flaky", status=404),
            signal(BugKind.BROKEN_LINK, target="/flaky", status=503),
        ]
    )
    assert finding.severity is Severity.HIGH
    assert finding.evidence["status"] == 503
    assert finding.count == 2


def test_console_errors_differing_only_in_numbers_fold() -> None:
    finding = one(
        [
            signal(BugKind.CONSOLE_ERROR, message="Request 1234 timed out after 5000 ms"),
            signal(BugKind.CONSOLE_ERROR, message="Request 98 timed out after 30000 ms"),
        ]
    )
    assert finding.count == 2


# ------------------------------------------------------------------------------------------- fingerprints across pages
def test_same_console_error_on_two_pages_has_one_fingerprint() -> None:
    message = "TypeError: cart is null\n    at https://shop.example/static/app.js?v=17:120:33"
    first = one([signal(BugKind.CONSOLE_ERROR, message=message)])
    second = one([signal(BugKind.CONSOLE_ERROR, OTHER_PAGE, message=message)], OTHER_PAGE)
    assert first.fingerprint == second.fingerprint
    assert first.page_url == PAGE
    assert second.page_url == OTHER_PAGE


def test_same_uncaught_error_from_another_build_has_one_fingerprint() -> None:
    first = one([signal(BugKind.PAGE_ERROR, message="Error at https://shop.example/app.js?v=1:10:5")])
    second = one(
        [signal(BugKind.PAGE_ERROR, OTHER_PAGE, message="Error at https://shop.example/app.js?v=2:11:9")], OTHER_PAGE
    )
    assert first.fingerprint == second.fingerprint


def test_same_broken_link_on_two_pages_has_one_fingerprint() -> None:
    first = one([signal(BugKind.BROKEN_LINK, target="/missing.html", status=404)])
    second = one([signal(BugKind.BROKEN_LINK, OTHER_PAGE, target="/missing.html", status=404)], OTHER_PAGE)
    assert first.fingerprint == second.fingerprint


def test_relative_links_resolve_against_their_page() -> None:
    page_a, page_b = "https://shop.example/a/x", "https://shop.example/b/x"
    first = one([signal(BugKind.BROKEN_LINK, page_a, target="gone", status=404)], page_a)
    second = one([signal(BugKind.BROKEN_LINK, page_b, target="gone", status=404)], page_b)
    assert first.fingerprint != second.fingerprint


def test_images_without_alt_on_a_page_are_one_finding_listing_them() -> None:
    grouped = one([signal(BugKind.MISSING_ALT, target=f"/img/{n}.png") for n in range(33)])
    assert grouped.count == 33 and len(grouped.evidence["elements"]) == 33
    assert grouped.title == "33 images without alt text on /cart"
    assert "`/img/7.png`" in grouped.description


def test_images_without_alt_are_one_finding_per_page() -> None:
    first = one([signal(BugKind.MISSING_ALT, target="/img/logo.png")])
    second = one([signal(BugKind.MISSING_ALT, OTHER_PAGE, target="/img/logo.png")], OTHER_PAGE)
    assert first.fingerprint != second.fingerprint


def test_failed_request_ignores_the_query_but_not_the_method() -> None:
    get_a = one([signal(BugKind.FAILED_REQUEST, target="https://shop.example/api/cart?id=1", method="get", status=500)])
    get_b = one(
        [signal(BugKind.FAILED_REQUEST, OTHER_PAGE, target="/api/cart?id=2", method="GET", status=502)], OTHER_PAGE
    )
    post = one([signal(BugKind.FAILED_REQUEST, target="/api/cart?id=1", method="POST", status=500)])
    assert get_a.fingerprint == get_b.fingerprint
    assert post.fingerprint != get_a.fingerprint


def test_slow_pages_are_different_bugs_per_page() -> None:
    first = one([signal(BugKind.SLOW_PAGE, detail={"load_ms": 4000})])
    second = one([signal(BugKind.SLOW_PAGE, OTHER_PAGE, detail={"load_ms": 4000})], OTHER_PAGE)
    assert first.fingerprint != second.fingerprint


def test_slow_page_fingerprint_ignores_trailing_slash_and_fragment() -> None:
    first = one([signal(BugKind.SLOW_PAGE, "https://shop.example/docs/")], "https://shop.example/docs/")
    second = one([signal(BugKind.SLOW_PAGE, "https://shop.example/docs#a")], "https://shop.example/docs#a")
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize("kind", [BugKind.HTTP_ERROR, BugKind.SERVER_ERROR, BugKind.MISSING_TITLE])
def test_page_level_bugs_are_different_per_page(kind: BugKind) -> None:
    first = one([signal(kind, status=404)])
    second = one([signal(kind, OTHER_PAGE, status=404)], OTHER_PAGE)
    assert first.fingerprint != second.fingerprint


def test_missing_lang_is_one_bug_per_origin() -> None:
    first = one([signal(BugKind.MISSING_LANG)])
    second = one([signal(BugKind.MISSING_LANG, OTHER_PAGE)], OTHER_PAGE)
    elsewhere = one([signal(BugKind.MISSING_LANG, "https://blog.example/")], "https://blog.example/")
    assert first.fingerprint == second.fingerprint
    assert elsewhere.fingerprint != first.fingerprint


def test_fingerprints_are_stable_across_runs() -> None:
    findings = [one([signal(BugKind.BROKEN_LINK, target="/missing.html", status=404)]) for _ in range(2)]
    assert findings[0].fingerprint == findings[1].fingerprint
    assert len(findings[0].fingerprint) == 16


# ------------------------------------------------------------------------------------------- message normalization
def test_normalize_message_replaces_digits_and_reduces_urls() -> None:
    assert (
        normalize_message("Failed at https://shop.example/app.js?v=3:120:33 after 1500ms  (try  2)")
        == "Failed at /app.js after Nms (try N)"
    )


def test_normalize_message_keeps_only_the_first_line() -> None:
    assert normalize_message("\nTypeError: x is undefined\n    at foo (https://a.example/x.js:1:2)") == (
        "TypeError: x is undefined"
    )


def test_normalize_message_is_cut_to_200_characters() -> None:
    assert len(normalize_message("x" * 500)) == 200


# ------------------------------------------------------------------------------------------- severities
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"kind": BugKind.SERVER_ERROR, "status": 500}, Severity.CRITICAL),
        ({"kind": BugKind.PAGE_ERROR, "message": "TypeError: boom"}, Severity.HIGH),
        ({"kind": BugKind.FAILED_REQUEST, "target": "/api", "status": 503}, Severity.HIGH),
        ({"kind": BugKind.FAILED_REQUEST, "target": "/api", "message": "net::ERR_FAILED"}, Severity.HIGH),
        ({"kind": BugKind.BROKEN_LINK, "target": "/x", "status": 500}, Severity.HIGH),
        ({"kind": BugKind.BROKEN_LINK, "target": "/x"}, Severity.HIGH),
        ({"kind": BugKind.BROKEN_LINK, "target": "/x", "status": 404}, Severity.MEDIUM),
        ({"kind": BugKind.BROKEN_LINK, "target": "/x", "status": 410}, Severity.MEDIUM),
        ({"kind": BugKind.MISSING_RESOURCE, "target": "/a.js", "resource_type": "script"}, Severity.HIGH),
        ({"kind": BugKind.MISSING_RESOURCE, "target": "/a.css", "resource_type": "stylesheet"}, Severity.MEDIUM),
        ({"kind": BugKind.MISSING_RESOURCE, "target": "/a.woff", "resource_type": "font"}, Severity.MEDIUM),
        ({"kind": BugKind.MISSING_RESOURCE, "target": "/a.png", "resource_type": "image"}, Severity.LOW),
        ({"kind": BugKind.MISSING_RESOURCE, "target": "/a.mp4", "resource_type": "media"}, Severity.LOW),
        ({"kind": BugKind.HTTP_ERROR, "status": 404}, Severity.MEDIUM),
        ({"kind": BugKind.CONSOLE_ERROR, "message": "oops"}, Severity.MEDIUM),
        ({"kind": BugKind.SLOW_PAGE, "detail": {"load_ms": 4000}}, Severity.LOW),
        ({"kind": BugKind.SLOW_PAGE, "detail": {"load_ms": 9000}}, Severity.LOW),
        ({"kind": BugKind.SLOW_PAGE, "detail": {"load_ms": 9001}}, Severity.MEDIUM),
        ({"kind": BugKind.SLOW_PAGE}, Severity.LOW),
        ({"kind": BugKind.MISSING_ALT, "target": "/a.png"}, Severity.LOW),
        ({"kind": BugKind.MISSING_LANG}, Severity.LOW),
        ({"kind": BugKind.MISSING_TITLE}, Severity.LOW),
    ],
)
def test_severity_table(fields: dict[str, Any], expected: Severity) -> None:
    assert one([Signal(page_url=PAGE, **fields)]).severity is expected


def test_severity_rank_and_linear_priority() -> None:
    assert sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__) == [
        Severity.CRITICAL,
        Severity.HIGH,
        Severity.MEDIUM,
        Severity.LOW,
    ]
    assert LINEAR_PRIORITY == {Severity.CRITICAL: 1, Severity.HIGH: 2, Severity.MEDIUM: 3, Severity.LOW: 4}


# ------------------------------------------------------------------------------------------- titles and descriptions
@pytest.mark.parametrize(
    ("fields", "title"),
    [
        ({"kind": BugKind.BROKEN_LINK, "target": "/missing.html", "status": 404}, "Broken link to /missing.html (404)"),
        (
            {"kind": BugKind.BROKEN_LINK, "target": "https://gone.example/x"},
            "Broken link to https://gone.example/x (unreachable)",
        ),
        (
            {"kind": BugKind.PAGE_ERROR, "message": "TypeError: x is undefined\n  at a.js:1"},
            "Uncaught TypeError: x is undefined",
        ),
        ({"kind": BugKind.PAGE_ERROR, "message": "Uncaught Error: boom"}, "Uncaught Error: boom"),
        (
            {"kind": BugKind.MISSING_ALT, "target": "https://shop.example/img/logo.png"},
            "Image without alt text: /img/logo.png",
        ),
        (
            {"kind": BugKind.MISSING_RESOURCE, "target": "/app.js", "status": 404, "resource_type": "script"},
            "Missing script: /app.js (404)",
        ),
        (
            {"kind": BugKind.FAILED_REQUEST, "target": "/api/cart", "method": "post", "status": 502},
            "Failed request: POST /api/cart (502)",
        ),
        ({"kind": BugKind.CONSOLE_ERROR, "message": "Failed to parse JSON"}, "Console error: Failed to parse JSON"),
        ({"kind": BugKind.HTTP_ERROR, "status": 404}, "HTTP 404 on /cart"),
        ({"kind": BugKind.SERVER_ERROR, "status": 503}, "Server error 503 on /cart"),
        ({"kind": BugKind.SLOW_PAGE, "detail": {"load_ms": 4200}}, "Slow page: /cart (4200 ms)"),
        ({"kind": BugKind.MISSING_TITLE}, "Page without a title: /cart"),
        ({"kind": BugKind.MISSING_LANG}, "Missing lang attribute on <html> (https://shop.example)"),
    ],
)
def test_titles_say_what_is_wrong(fields: dict[str, Any], title: str) -> None:
    assert one([Signal(page_url=PAGE, **fields)]).title == title


def test_titles_are_at_most_120_characters_on_one_line() -> None:
    signals = [
        signal(BugKind.CONSOLE_ERROR, message="Error: " + "very long words " * 40),
        signal(BugKind.BROKEN_LINK, target="/" + "a" * 300, status=404),
        signal(BugKind.PAGE_ERROR, message="x\ty\u00a0z " * 100),
    ]
    for finding in triage(signals, PAGE, slow_page_ms=SLOW_MS):
        assert len(finding.title) <= 120
        assert "\n" not in finding.title
    long_title = triage(signals[:1], PAGE, slow_page_ms=SLOW_MS)[0].title
    assert long_title.endswith("…")


def test_description_says_what_where_and_shows_evidence() -> None:
    finding = one(
        [
            signal(
                BugKind.MISSING_RESOURCE,
                target="https://shop.example/static/app.js",
                status=404,
                resource_type="script",
                detail={"initiator": "parser"},
            )
        ]
    )
    assert PAGE in finding.description
    assert "https://shop.example/static/app.js" in finding.description
    assert "404" in finding.description
    assert "initiator" in finding.description
    assert "Severity: high" in finding.description


def test_description_shows_the_full_message_in_a_code_block() -> None:
    message = "TypeError: x is undefined\n    at render (https://shop.example/app.js:10:5)"
    finding = one([signal(BugKind.PAGE_ERROR, message=message)])
    assert f"```\n{message}\n```" in finding.description


def test_description_code_block_survives_backticks_in_the_message() -> None:
    finding = one([signal(BugKind.CONSOLE_ERROR, message="bad ```markdown``` here")])
    assert "````\nbad ```markdown``` here\n````" in finding.description


def test_slow_page_description_states_load_time_and_threshold() -> None:
    finding = one([signal(BugKind.SLOW_PAGE, detail={"load_ms": 7300})])
    assert "7300 ms" in finding.description
    assert "3000 ms" in finding.description


def test_evidence_carries_the_signal_facts() -> None:
    finding = one(
        [
            signal(
                BugKind.FAILED_REQUEST,
                target="/api/x?id=1",
                status=None,
                message="net::ERR_CONNECTION_RESET",
                resource_type="fetch",
                method="POST",
                detail={"timing_ms": 12},
            )
        ]
    )
    assert finding.evidence == {
        "target": "/api/x?id=1",
        "status": None,
        "message": "net::ERR_CONNECTION_RESET",
        "resource_type": "fetch",
        "method": "POST",
        "detail": {"timing_ms": 12},
        "count": 1,
    }


# ------------------------------------------------------------------------------------------- order
def test_findings_come_worst_first_then_by_kind_and_fingerprint() -> None:
    signals = [
        signal(BugKind.MISSING_ALT, target="/b.png"),
        signal(BugKind.MISSING_ALT, target="/a.png"),
        signal(BugKind.CONSOLE_ERROR, message="oops"),
        signal(BugKind.SERVER_ERROR, status=500),
        signal(BugKind.BROKEN_LINK, target="/x", status=404),
        signal(BugKind.PAGE_ERROR, message="boom"),
        signal(BugKind.MISSING_LANG),
    ]
    findings = triage(signals, PAGE, slow_page_ms=SLOW_MS)
    keys = [(SEVERITY_RANK[f.severity], f.kind.value, f.fingerprint) for f in findings]
    assert keys == sorted(keys)
    assert findings[0].kind is BugKind.SERVER_ERROR
    assert [f.kind for f in findings[-2:]] == [BugKind.MISSING_ALT, BugKind.MISSING_LANG]


def test_output_does_not_depend_on_signal_order() -> None:
    signals = [
        signal(BugKind.MISSING_ALT, target="/b.png"),
        signal(BugKind.CONSOLE_ERROR, message="oops"),
        signal(BugKind.BROKEN_LINK, target="/x", status=404),
        signal(BugKind.MISSING_ALT, target="/a.png"),
    ]
    forward = triage(signals, PAGE, slow_page_ms=SLOW_MS)
    backward = triage(list(reversed(signals)), PAGE, slow_page_ms=SLOW_MS)
    assert forward == backward
