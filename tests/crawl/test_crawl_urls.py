"""The crawler's pure URL helpers: normalization, page keys, origins, robots.txt rules and should_visit."""

from __future__ import annotations

import hashlib

import pytest

from activities.crawl.schemas import RobotsRules
from activities.crawl.urls import (
    fingerprint,
    normalize_url,
    origin_of,
    parse_robots,
    path_and_query,
    robots_allows,
    same_origin,
    should_visit,
    url_key,
)

AGENT = "ConveyorBot/0.1 (+https://conveyor.example/bot)"


# ------------------------------------------------------------------------------------------- normalize_url
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/page#section", "https://example.com/page"),
        ("https://example.com/search?b=2&a=1", "https://example.com/search?a=1&b=2"),
        ("https://example.com/?b=2&a=2&a=1", "https://example.com/?a=1&a=2&b=2"),
        ("https://example.com/?q=&a=1", "https://example.com/?a=1&q="),
        ("https://example.com/?a=1&&b=2&", "https://example.com/?a=1&b=2"),
        ("https://example.com/?", "https://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("HTTPS://Example.COM/Docs/Intro", "https://example.com/Docs/Intro"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/a/b/..", "https://example.com/a/"),
        ("https://example.com/../../a", "https://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com?x=1", "https://example.com/?x=1"),
        ("https://example.com/docs/", "https://example.com/docs/"),
        ("https://example.com/docs", "https://example.com/docs"),
        ("https://example.com/%7Euser/%61bc", "https://example.com/~user/abc"),
        ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
        ("https://example.com/a%2e%2e/x", "https://example.com/a../x"),
        ("https://example.com/my page", "https://example.com/my%20page"),
        ("https://example.com/100%", "https://example.com/100%25"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("  https://example.com/a  ", "https://example.com/a"),
    ],
)
def test_normalize_url_canonical_forms(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("other.html", "https://example.com/docs/other.html"),
        ("../img/logo.png", "https://example.com/img/logo.png"),
        ("/about", "https://example.com/about"),
        ("?page=2", "https://example.com/docs/intro.html?page=2"),
        ("#top", "https://example.com/docs/intro.html"),
        ("//cdn.example.net/app.js", "https://cdn.example.net/app.js"),
        ("http://other.example/x", "http://other.example/x"),
    ],
)
def test_normalize_url_resolves_relative_links_against_the_page(link: str, expected: str) -> None:
    assert normalize_url(link, "https://example.com/docs/intro.html") == expected


@pytest.mark.parametrize(
    "url",
    [
        "mailto:someone@example.com",
        "javascript:void(0)",
        "tel:+15551234",
        "data:text/html,<p>hi</p>",
        "ftp://example.com/file.txt",
        "",
        "   ",
        "http://",
        "http:///path",
        "http://[::1/",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "not a url",
    ],
)
def test_normalize_url_refuses_what_is_not_an_http_page(url: str) -> None:
    assert normalize_url(url) is None


def test_normalize_url_refuses_non_http_links_even_with_a_base() -> None:
    base = "https://example.com/"
    assert normalize_url("mailto:a@example.com", base) is None
    assert normalize_url("javascript:alert(1)", base) is None
    assert normalize_url("", base) is None


def test_normalize_url_is_idempotent() -> None:
    once = normalize_url("HTTP://Example.com:80/a/../b c/?z=1&a=%7e#f")
    assert once == "http://example.com/b%20c/?a=~&z=1"
    assert normalize_url(once) == once


# ------------------------------------------------------------------------------------------- url_key
def test_url_key_makes_a_trailing_slash_the_same_page() -> None:
    assert url_key("https://example.com/docs/") == url_key("https://example.com/docs")
    assert url_key("https://example.com/docs/") == "https://example.com/docs"
    assert url_key("https://example.com/docs/?a=1") == "https://example.com/docs?a=1"


def test_url_key_keeps_the_root_path() -> None:
    assert url_key("https://example.com") == "https://example.com/"
    assert url_key("https://example.com/") == "https://example.com/"


def test_url_key_folds_fragments_query_order_and_case() -> None:
    assert url_key("HTTPS://EXAMPLE.com:443/p?b=1&a=2#x") == url_key("https://example.com/p?a=2&b=1")


def test_url_key_returns_unnormalizable_input_unchanged() -> None:
    assert url_key("mailto:a@example.com") == "mailto:a@example.com"


# ------------------------------------------------------------------------------------------- origins and paths
def test_origin_of_is_scheme_host_and_non_default_port() -> None:
    assert origin_of("HTTPS://Example.com:443/a/b?x=1") == "https://example.com"
    assert origin_of("http://example.com:8080/") == "http://example.com:8080"
    assert origin_of("mailto:a@example.com") == ""


def test_same_origin_compares_scheme_host_and_port() -> None:
    assert same_origin("https://example.com/a", "https://example.com")
    assert same_origin("https://EXAMPLE.com:443/a", "https://example.com/")
    assert not same_origin("http://example.com/a", "https://example.com")
    assert not same_origin("https://example.com:8443/a", "https://example.com")
    assert not same_origin("https://www.example.com/a", "https://example.com")
    assert not same_origin("mailto:a@example.com", "https://example.com")


def test_path_and_query_is_what_robots_rules_see() -> None:
    assert path_and_query("https://example.com/a/b?y=2&x=1#f") == "/a/b?x=1&y=2"
    assert path_and_query("https://example.com") == "/"
    assert path_and_query("https://example.com/a/") == "/a/"


# ------------------------------------------------------------------------------------------- robots.txt
def test_parse_robots_picks_the_group_of_the_product_token() -> None:
    text = "User-agent: *\nDisallow: /\n\nUser-agent: conveyorbot\nDisallow: /private\n"
    rules = parse_robots(text, AGENT)
    assert rules == RobotsRules(allow=[], disallow=["/private"])
    assert robots_allows(rules, "https://example.com/public")
    assert not robots_allows(rules, "https://example.com/private/x")


def test_parse_robots_matches_agent_lines_with_versions_case_insensitively() -> None:
    rules = parse_robots("User-agent: CONVEYORBOT/2.0\nDisallow: /x\nUser-agent: *\nDisallow: /\n", AGENT)
    assert rules.disallow == ["/x"]


def test_parse_robots_does_not_match_a_longer_token() -> None:
    rules = parse_robots("User-agent: ConveyorBot-News\nDisallow: /news\nUser-agent: *\nDisallow: /all\n", AGENT)
    assert rules.disallow == ["/all"]


def test_parse_robots_falls_back_to_the_star_group() -> None:
    text = "User-agent: googlebot\nDisallow: /g\n\nUser-agent: *\nDisallow: /tmp/\nAllow: /tmp/ok\n"
    rules = parse_robots(text, AGENT)
    assert rules == RobotsRules(allow=["/tmp/ok"], disallow=["/tmp/"])


def test_parse_robots_without_a_matching_group_allows_everything() -> None:
    rules = parse_robots("User-agent: googlebot\nDisallow: /\n", AGENT)
    assert rules == RobotsRules()
    assert robots_allows(rules, "https://example.com/anything")


def test_parse_robots_merges_groups_of_the_same_agent() -> None:
    text = (
        "User-agent: ConveyorBot\nDisallow: /a\n\n"
        "User-agent: *\nDisallow: /star\n\n"
        "User-agent: conveyorbot\nDisallow: /b\nAllow: /b/ok\n"
    )
    rules = parse_robots(text, AGENT)
    assert rules.disallow == ["/a", "/b"]
    assert rules.allow == ["/b/ok"]


def test_parse_robots_consecutive_agent_lines_share_one_group() -> None:
    text = "User-agent: otherbot\nUser-agent: ConveyorBot\nDisallow: /shared\n\nUser-agent: *\nDisallow: /\n"
    assert parse_robots(text, AGENT).disallow == ["/shared"]


def test_parse_robots_ignores_comments_unknown_lines_and_sitemap_and_records_crawl_delay() -> None:
    text = (
        "# robots for example.com\n"
        "Sitemap: https://example.com/sitemap.xml\n"
        "User-agent: * # everyone\n"
        "Crawl-delay: 10\n"
        "Noindex: /x\n"
        "Disallow: /admin # the back office\n"
        "this line is garbage\n"
    )
    assert parse_robots(text, AGENT) == RobotsRules(allow=[], disallow=["/admin"], crawl_delay=10.0)


def test_parse_robots_empty_disallow_means_everything_allowed() -> None:
    rules = parse_robots("User-agent: *\nDisallow:\n", AGENT)
    assert rules.disallow == []
    assert robots_allows(rules, "https://example.com/anything")


def test_parse_robots_handles_crlf_bom_and_key_case() -> None:
    rules = parse_robots("\ufeffUSER-AGENT: *\r\nDISALLOW: /x\r\n", AGENT)
    assert rules.disallow == ["/x"]


def test_parse_robots_ignores_rules_before_any_agent() -> None:
    assert parse_robots("Disallow: /\nUser-agent: *\nDisallow: /x\n", AGENT).disallow == ["/x"]


def test_robots_none_allows_everything() -> None:
    assert robots_allows(None, "https://example.com/admin")


def test_robots_longest_match_wins() -> None:
    rules = RobotsRules(allow=["/shop/cart/help"], disallow=["/shop/cart", "/"])
    assert not robots_allows(rules, "https://example.com/shop/cart/checkout")
    assert robots_allows(rules, "https://example.com/shop/cart/help/faq")
    assert not robots_allows(rules, "https://example.com/blog")
    rules = RobotsRules(allow=["/"], disallow=["/private"])
    assert robots_allows(rules, "https://example.com/blog")
    assert not robots_allows(rules, "https://example.com/private/x")


def test_robots_allow_wins_a_tie() -> None:
    rules = RobotsRules(allow=["/page"], disallow=["/page"])
    assert robots_allows(rules, "https://example.com/page")
    rules = RobotsRules(allow=["/a*"], disallow=["/a/"])
    assert robots_allows(rules, "https://example.com/a/x")


def test_robots_wildcards() -> None:
    rules = RobotsRules(disallow=["/*.pdf", "/private*/secret", "/*?sessionid="])
    assert not robots_allows(rules, "https://example.com/docs/manual.pdf")
    assert not robots_allows(rules, "https://example.com/docs/manual.pdf?v=2")
    assert not robots_allows(rules, "https://example.com/private-area/secret/x")
    assert not robots_allows(rules, "https://example.com/cart?sessionid=42")
    assert robots_allows(rules, "https://example.com/docs/manual.html")
    assert robots_allows(rules, "https://example.com/private-area/public")


def test_robots_dollar_anchors_the_end() -> None:
    rules = RobotsRules(disallow=["/*.pdf$", "/exact$"])
    assert not robots_allows(rules, "https://example.com/a.pdf")
    assert robots_allows(rules, "https://example.com/a.pdf?download=1")
    assert robots_allows(rules, "https://example.com/a.pdfx")
    assert not robots_allows(rules, "https://example.com/exact")
    assert robots_allows(rules, "https://example.com/exact/more")


def test_robots_rules_match_the_query() -> None:
    rules = RobotsRules(disallow=["/search?q="])
    assert not robots_allows(rules, "https://example.com/search?q=shoes")
    assert robots_allows(rules, "https://example.com/search")


def test_robots_paths_are_case_sensitive() -> None:
    rules = RobotsRules(disallow=["/Admin"])
    assert not robots_allows(rules, "https://example.com/Admin/x")
    assert robots_allows(rules, "https://example.com/admin/x")


def test_robots_compare_after_percent_normalization() -> None:
    rules = parse_robots("User-agent: *\nDisallow: /%7Ejoe/\nDisallow: /caf%c3%a9\n", AGENT)
    assert not robots_allows(rules, "https://example.com/~joe/index.html")
    assert not robots_allows(rules, "https://example.com/café")
    assert not robots_allows(RobotsRules(disallow=["/~joe/"]), "https://example.com/%7ejoe/x")


def test_robots_txt_itself_is_always_allowed() -> None:
    rules = RobotsRules(disallow=["/"])
    assert robots_allows(rules, "https://example.com/robots.txt")
    assert not robots_allows(rules, "https://example.com/")


def test_robots_hostile_patterns_stay_fast() -> None:
    rules = RobotsRules(disallow=["/" + "*a" * 30 + "b"])
    assert robots_allows(rules, "https://example.com/" + "a" * 2000)


# ------------------------------------------------------------------------------------------- should_visit
START = "https://example.com"


def test_should_visit_same_origin_page() -> None:
    assert should_visit("https://example.com/docs", START, same_origin=True, robots=None)


def test_should_visit_refuses_external_hosts() -> None:
    for same in (True, False):
        assert not should_visit("https://other.example/", START, same_origin=same, robots=None)
        assert not should_visit("https://notexample.com/", START, same_origin=same, robots=None)
        assert not should_visit("https://example.com.evil.net/", START, same_origin=same, robots=None)


def test_should_visit_refuses_non_http_links() -> None:
    assert not should_visit("mailto:a@example.com", START, same_origin=False, robots=None)
    assert not should_visit("ftp://example.com/x", START, same_origin=False, robots=None)


def test_should_visit_subdomains_and_ports_only_when_not_same_origin() -> None:
    for url in ("https://blog.example.com/post", "https://example.com:8443/", "http://example.com/"):
        assert not should_visit(url, START, same_origin=True, robots=None)
        assert should_visit(url, START, same_origin=False, robots=None)


def test_should_visit_roams_the_registrable_domain_not_its_public_suffix() -> None:
    assert should_visit("https://example.com/", "https://www.example.com", same_origin=False, robots=None)
    assert should_visit("https://docs.example.com/", "https://www.example.com", same_origin=False, robots=None)
    assert not should_visit("https://b.github.io/", "https://a.github.io", same_origin=False, robots=None)
    assert not should_visit("https://y.co.uk/", "https://x.co.uk", same_origin=False, robots=None)


def test_should_visit_honours_robots_on_the_start_origin() -> None:
    robots = RobotsRules(disallow=["/admin"])
    assert not should_visit("https://example.com/admin/users", START, same_origin=True, robots=robots)
    assert should_visit("https://example.com/shop", START, same_origin=True, robots=robots)


def test_should_visit_applies_robots_only_to_the_origin_they_came_from() -> None:
    robots = RobotsRules(disallow=["/admin"])
    assert should_visit("https://blog.example.com/admin", START, same_origin=False, robots=robots)


# ------------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_is_stable_short_hex() -> None:
    value = fingerprint("broken_link", "https://example.com/missing")
    assert value == fingerprint("broken_link", "https://example.com/missing")
    assert len(value) == 16
    assert int(value, 16) >= 0
    assert value != fingerprint("missing_resource", "https://example.com/missing")
    assert value != fingerprint("broken_link", "https://example.com/other")


def test_fingerprint_is_sha256_of_kind_and_key() -> None:
    # Fingerprints are stored with bugs and tickets: changing the recipe would re-file every known bug.
    assert fingerprint("a", "b") == hashlib.sha256(b"a|b").hexdigest()[:16]
