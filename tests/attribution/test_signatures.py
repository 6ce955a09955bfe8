"""HubSpot webhook signatures: HubSpot's published v1/v2 vectors, the v3 recipe, timestamps, proxies."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.attribution.signatures import (
    SignatureVersion,
    decode_v3_uri,
    signature_v1,
    signature_v2,
    signature_v3,
    signed_headers,
    signed_uri,
    verify_request,
)
from conveyor.errors import Unauthorized

# HubSpot's published examples ("Validating the v1/v2 request signature", developers.hubspot.com).
HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
    b'"changeFlag":"NEW","appId":54321}]'
)
V1_HASH = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
V2_URI = "https://www.example.com/webhook_uri"
V2_GET_HASH = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
V2_POST_BODY = b'{"example_field":"example_value"}'
V2_POST_HASH = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"

SECRET = "client-secret-0f3c"
URI = "https://conveyor.example.com/webhooks/hubspot"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
BODY = b'[{"eventId":7,"portalId":62515}]'


def _code(excinfo: pytest.ExceptionInfo[Unauthorized]) -> str:
    assert excinfo.value.http_status == 401
    return excinfo.value.code


def _v3_by_hand(secret: str, source: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), source.encode(), hashlib.sha256).digest()).decode()


def test_hubspot_published_v1_vector() -> None:
    assert signature_v1(HUBSPOT_SECRET, V1_BODY) == V1_HASH
    headers = {"X-HubSpot-Signature": V1_HASH, "X-HubSpot-Signature-Version": "v1"}
    assert verify_request("POST", URI, V1_BODY, headers, HUBSPOT_SECRET, NOW) is SignatureVersion.V1


def test_hubspot_published_v2_vectors() -> None:
    assert signature_v2(HUBSPOT_SECRET, "GET", V2_URI, b"") == V2_GET_HASH
    assert signature_v2(HUBSPOT_SECRET, "POST", V2_URI, V2_POST_BODY) == V2_POST_HASH
    headers = {"x-hubspot-signature": V2_POST_HASH.upper(), "x-hubspot-signature-version": "v2"}
    assert verify_request("POST", V2_URI, V2_POST_BODY, headers, HUBSPOT_SECRET, NOW) is SignatureVersion.V2


def test_v2_signs_the_uri_so_another_uri_fails() -> None:
    headers = {"X-HubSpot-Signature": V2_POST_HASH, "X-HubSpot-Signature-Version": "v2"}
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", V2_URI + "?x=1", V2_POST_BODY, headers, HUBSPOT_SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_v3_follows_hubspots_recipe() -> None:
    timestamp = "1740830400000"
    uri = "https://conveyor.example.com/webhooks/hubspot?email=a%40b.com&tag=x%26y"
    expected = _v3_by_hand(
        SECRET,
        "POST" + "https://conveyor.example.com/webhooks/hubspot?email=a@b.com&tag=x%26y" + BODY.decode() + timestamp,
    )
    assert signature_v3(SECRET, "POST", uri, BODY, timestamp) == expected


def test_v3_decodes_exactly_hubspots_escapes() -> None:
    assert decode_v3_uri("%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B") == ":/?@!$'()*,;"
    assert decode_v3_uri("%3a%2f%2c") == ":/,"
    # Everything else stays encoded: &, =, +, space, #, % itself.
    assert decode_v3_uri("%26%3D%2B%20%23%25%C3%A9") == "%26%3D%2B%20%23%25%C3%A9"
    # A decoded % is not decoded again.
    assert decode_v3_uri("%252F") == "%252F"


def test_v3_valid_request_is_accepted() -> None:
    headers = signed_headers(SECRET, "POST", URI, BODY, NOW)
    assert verify_request("POST", URI, BODY, headers, SECRET, NOW) is SignatureVersion.V3


def test_v3_accepts_encoded_uri_hubspot_signed_decoded() -> None:
    signed_by_hubspot = signed_headers(SECRET, "POST", URI + "?portal=1&next=/a", BODY, NOW)
    assert verify_request("POST", URI + "?portal=1&next=%2Fa", BODY, signed_by_hubspot, SECRET, NOW) == "v3"


def test_v3_wrong_secret_is_refused() -> None:
    headers = signed_headers("other-secret", "POST", URI, BODY, NOW)
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_v3_method_is_signed() -> None:
    headers = signed_headers(SECRET, "PUT", URI, BODY, NOW)
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_v3_timestamp_is_signed() -> None:
    headers = signed_headers(SECRET, "POST", URI, BODY, NOW)
    headers["X-HubSpot-Request-Timestamp"] = str(int(headers["X-HubSpot-Request-Timestamp"]) + 1)
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


@pytest.mark.parametrize(
    ("age", "ok"),
    [
        (timedelta(minutes=5), True),
        (timedelta(minutes=5, milliseconds=1), False),
        (timedelta(hours=2), False),
        (timedelta(minutes=-5), True),
        (timedelta(minutes=-5, milliseconds=-1), False),
    ],
)
def test_v3_timestamp_window_is_five_minutes_either_way(age: timedelta, ok: bool) -> None:
    headers = signed_headers(SECRET, "POST", URI, BODY, NOW - age)
    if ok:
        assert verify_request("POST", URI, BODY, headers, SECRET, NOW) is SignatureVersion.V3
    else:
        with pytest.raises(Unauthorized) as excinfo:
            verify_request("POST", URI, BODY, headers, SECRET, NOW)
        assert _code(excinfo) == "STALE_TIMESTAMP"


def test_forged_stale_request_reports_bad_signature_not_staleness() -> None:
    headers = signed_headers("forger", "POST", URI, BODY, NOW - timedelta(days=1))
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_non_numeric_timestamp_is_refused() -> None:
    headers = {
        "X-HubSpot-Signature-v3": signature_v3(SECRET, "POST", URI, BODY, "soon"),
        "X-HubSpot-Request-Timestamp": "soon",
    }
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "STALE_TIMESTAMP"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-HubSpot-Signature-v3": "abc"},
        {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": "1"},
    ],
)
def test_missing_signature_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "SIGNATURE_MISSING"


def test_legacy_signatures_can_be_turned_off() -> None:
    headers = {"X-HubSpot-Signature": V1_HASH, "X-HubSpot-Signature-Version": "v1"}
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, V1_BODY, headers, HUBSPOT_SECRET, NOW, accept_legacy=False)
    assert _code(excinfo) == "SIGNATURE_MISSING"


@pytest.mark.parametrize("version", [None, "v4", ""])
def test_unknown_legacy_version_is_refused(version: str | None) -> None:
    headers = {"X-HubSpot-Signature": V1_HASH}
    if version is not None:
        headers["X-HubSpot-Signature-Version"] = version
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, V1_BODY, headers, HUBSPOT_SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_bad_v3_is_not_rescued_by_a_valid_v1() -> None:
    headers = {
        "X-HubSpot-Signature-v3": "bm90IGEgc2lnbmF0dXJl",
        "X-HubSpot-Request-Timestamp": str(int(NOW.timestamp() * 1000)),
        "X-HubSpot-Signature": V1_HASH,
        "X-HubSpot-Signature-Version": "v1",
    }
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, V1_BODY, headers, HUBSPOT_SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_non_ascii_signature_header_is_refused_not_crashing() -> None:
    headers = {"X-HubSpot-Signature-v3": "é" * 44, "X-HubSpot-Request-Timestamp": str(int(NOW.timestamp() * 1000))}
    with pytest.raises(Unauthorized) as excinfo:
        verify_request("POST", URI, BODY, headers, SECRET, NOW)
    assert _code(excinfo) == "BAD_SIGNATURE"


def test_naive_clock_is_a_programming_error() -> None:
    headers = signed_headers(SECRET, "POST", URI, BODY, NOW)
    with pytest.raises(ValueError):
        verify_request("POST", URI, BODY, headers, SECRET, NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("received", "public_url", "expected"),
    [
        (
            "http://10.0.0.5:8000/webhooks/hubspot?app=1",
            "https://conveyor.example.com",
            "https://conveyor.example.com/webhooks/hubspot?app=1",
        ),
        ("/webhooks/hubspot", "https://conveyor.example.com/", "https://conveyor.example.com/webhooks/hubspot"),
        (
            "http://api:8000/webhooks/hubspot",
            "https://example.com/conveyor",
            "https://example.com/conveyor/webhooks/hubspot",
        ),
        ("http://api:8000/webhooks/hubspot?a=1", None, "http://api:8000/webhooks/hubspot?a=1"),
    ],
)
def test_signed_uri_behind_a_proxy(received: str, public_url: str | None, expected: str) -> None:
    assert signed_uri(received, public_url) == expected


def test_proxy_request_verifies_only_with_the_public_url() -> None:
    public = "https://conveyor.example.com"
    headers = signed_headers(SECRET, "POST", public + "/webhooks/hubspot?app=1", BODY, NOW)
    internal = "http://10.0.0.5:8000/webhooks/hubspot?app=1"
    assert verify_request("POST", internal, BODY, headers, SECRET, NOW, public_url=public) is SignatureVersion.V3
    with pytest.raises(Unauthorized):
        verify_request("POST", internal, BODY, headers, SECRET, NOW)


@given(body=st.binary(max_size=512), data=st.data())
def test_any_body_verifies_and_any_single_byte_change_fails(body: bytes, data: st.DataObject) -> None:
    headers = signed_headers(SECRET, "POST", URI, body, NOW)
    assert verify_request("POST", URI, body, headers, SECRET, NOW) is SignatureVersion.V3
    if body:
        index = data.draw(st.integers(0, len(body) - 1))
        flip = data.draw(st.integers(1, 255))
        tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    else:
        tampered = b"x"
    with pytest.raises(Unauthorized):
        verify_request("POST", URI, tampered, headers, SECRET, NOW)


@given(body=st.binary(max_size=256), extra=st.binary(min_size=1, max_size=4))
def test_legacy_signatures_fail_on_appended_bytes(body: bytes, extra: bytes) -> None:
    v1 = {"X-HubSpot-Signature": signature_v1(SECRET, body), "X-HubSpot-Signature-Version": "v1"}
    v2 = {"X-HubSpot-Signature": signature_v2(SECRET, "POST", URI, body), "X-HubSpot-Signature-Version": "v2"}
    for headers in (v1, v2):
        assert verify_request("POST", URI, body, headers, SECRET, NOW) in {SignatureVersion.V1, SignatureVersion.V2}
        with pytest.raises(Unauthorized):
            verify_request("POST", URI, body + extra, headers, SECRET, NOW)
