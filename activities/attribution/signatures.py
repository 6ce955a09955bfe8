"""HubSpot webhook signatures (v3, and the legacy v1/v2): compute and verify them. Pure: no clock, no I/O.

HubSpot signs every webhook request it sends (developers.hubspot.com, "Validating requests from HubSpot"):

* **v3** (``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp``): base64 of HMAC-SHA256, keyed with the
  app's client secret, over ``method + uri + body + timestamp``, where ``uri`` is the full URL HubSpot called
  (scheme, host, path and query) with the characters of :data:`V3_DECODED_ESCAPES` URL-decoded first; the
  timestamp is in milliseconds since the epoch and a request more than five minutes old is refused.
* **v2** (``X-HubSpot-Signature`` with ``X-HubSpot-Signature-Version: v2``): hex SHA-256 of
  ``secret + method + uri + body``, the URI exactly as requested (no decoding).
* **v1** (``X-HubSpot-Signature`` with ``X-HubSpot-Signature-Version: v1``): hex SHA-256 of ``secret + body``.

v1 and v2 carry no timestamp, so a captured request can be replayed at any time; that is harmless here only
because every event is deduplicated by :func:`activities.attribution.deliveries.dedupe_key`. Pass
``accept_legacy=False`` to :func:`verify_request` to accept v3 only. A request that carries a v3 signature is
judged by it alone: a bad v3 signature is never rescued by a legacy one.

**Which URI is signed.** HubSpot signs the URL *it* called: the public one, e.g.
``https://conveyor.example.com/webhooks/hubspot?app=1``. Behind a reverse proxy or TLS terminator the API sees
``http://10.0.0.5:8000/webhooks/hubspot?app=1`` instead, so the scheme and host it would sign are wrong. Set
``CONVEYOR_PUBLIC_URL`` to the public origin (plus any path prefix the proxy strips, e.g.
``https://example.com/conveyor``) and pass it as ``public_url``: the signed URI is then that base followed by
the path and query the API received (:func:`signed_uri`). Without it the URI the API received is used as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from conveyor.errors import Unauthorized

SIGNATURE_V3_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
SIGNATURE_HEADER = "X-HubSpot-Signature"
SIGNATURE_VERSION_HEADER = "X-HubSpot-Signature-Version"

#: How far a v3 timestamp may be from our clock, either way (HubSpot: "older than 5 minutes" → reject).
MAX_TIMESTAMP_SKEW = timedelta(minutes=5)

#: The escapes HubSpot's v3 recipe decodes in the request URI, and only these (``%26``, ``%3D``, ``%2B``,
#: ``%20``, ``%23`` and ``%25`` stay encoded). Hex digits are matched in either case.
V3_DECODED_ESCAPES: Mapping[str, str] = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_ESCAPE = re.compile("|".join(re.escape(k) for k in V3_DECODED_ESCAPES), re.IGNORECASE)


class SignatureVersion(StrEnum):
    """Which HubSpot signature scheme authenticated a request."""

    V1 = "v1"
    V2 = "v2"
    V3 = "v3"


def decode_v3_uri(uri: str) -> str:
    """``uri`` with HubSpot's v3 escapes (:data:`V3_DECODED_ESCAPES`) decoded, every other escape kept."""
    return _V3_ESCAPE.sub(lambda m: V3_DECODED_ESCAPES[m.group(0).upper()], uri)


def signed_uri(received_uri: str, public_url: str | None = None) -> str:
    """The URI HubSpot signed: ``public_url`` + the received path and query, or the received URI itself.

    ``received_uri`` may be absolute (``http://internal:8000/webhooks/hubspot?x=1``) or just the path and query.
    """
    if not public_url:
        return received_uri
    parts = urlsplit(received_uri)
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return public_url.rstrip("/") + path + query


def signature_v1(secret: str, body: bytes) -> str:
    """The v1 signature: hex SHA-256 of ``secret + body``."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def signature_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """The v2 signature: hex SHA-256 of ``secret + method + uri + body`` (URI exactly as requested)."""
    return hashlib.sha256(secret.encode() + method.upper().encode() + uri.encode() + body).hexdigest()


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int | str) -> str:
    """The v3 signature: base64 HMAC-SHA256 of ``method + decoded uri + body + timestamp``, keyed with ``secret``."""
    message = method.upper().encode() + decode_v3_uri(uri).encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode("ascii")


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures (bytes, so non-ASCII input cannot raise)."""
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "surrogateescape"))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name in ``headers`` (a plain dict or Starlette's ``Headers``)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _check_timestamp(raw: str, now: datetime) -> None:
    """Refuse a v3 timestamp that is not an integer or is more than :data:`MAX_TIMESTAMP_SKEW` from ``now``."""
    try:
        timestamp_ms = int(raw.strip())
    except ValueError:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not a millisecond timestamp", code="STALE_TIMESTAMP") from None
    skew_ms = abs(now.timestamp() * 1000 - timestamp_ms)
    if skew_ms > MAX_TIMESTAMP_SKEW.total_seconds() * 1000:
        raise Unauthorized(
            "request timestamp is more than 5 minutes from the server clock",
            code="STALE_TIMESTAMP",
            details={"skew_seconds": int(skew_ms // 1000)},
        )


def verify_request(
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    now: datetime,
    public_url: str | None = None,
    *,
    accept_legacy: bool = True,
) -> SignatureVersion:
    """Check a webhook request's HubSpot signature; return the version that verified it.

    ``uri`` is the URL the API received (absolute, or path and query); ``public_url`` is ``CONVEYOR_PUBLIC_URL``
    when the API runs behind a proxy (see the module docstring). ``now`` is the server clock, passed in; it must
    be timezone-aware. Raises :class:`~conveyor.errors.Unauthorized` (401) with code ``SIGNATURE_MISSING`` (no
    usable signature headers), ``BAD_SIGNATURE`` (wrong signature or unknown version) or ``STALE_TIMESTAMP``
    (a genuine v3 signature whose timestamp is more than five minutes from ``now``, or no usable timestamp).
    The signature is checked before the timestamp, so only the secret's holder learns that a request was stale.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    target = signed_uri(uri, public_url)

    v3 = _header(headers, SIGNATURE_V3_HEADER)
    if v3 is not None:
        timestamp = _header(headers, TIMESTAMP_HEADER)
        if timestamp is None:
            raise Unauthorized(f"{SIGNATURE_V3_HEADER} comes without {TIMESTAMP_HEADER}", code="SIGNATURE_MISSING")
        if not _same(signature_v3(secret, method, target, body, timestamp.strip()), v3):
            raise Unauthorized("the HubSpot v3 signature does not match", code="BAD_SIGNATURE")
        _check_timestamp(timestamp, now)
        return SignatureVersion.V3

    legacy = _header(headers, SIGNATURE_HEADER)
    if legacy is None or not accept_legacy:
        raise Unauthorized("the request carries no HubSpot signature", code="SIGNATURE_MISSING")
    version = (_header(headers, SIGNATURE_VERSION_HEADER) or "").strip().lower()
    if version == SignatureVersion.V1:
        expected = signature_v1(secret, body)
    elif version == SignatureVersion.V2:
        expected = signature_v2(secret, method, target, body)
    else:
        raise Unauthorized(
            f"unsupported {SIGNATURE_VERSION_HEADER}: {version or '(absent)'!r}",
            code="BAD_SIGNATURE",
        )
    if not _same(expected, legacy.lower()):
        raise Unauthorized(f"the HubSpot {version} signature does not match", code="BAD_SIGNATURE")
    return SignatureVersion(version)


def signed_headers(secret: str, method: str, uri: str, body: bytes, now: datetime) -> dict[str, str]:
    """The v3 headers HubSpot would send for this request at ``now`` (for tests, replays and the bench)."""
    timestamp = str(int(now.timestamp() * 1000))
    return {
        SIGNATURE_V3_HEADER: signature_v3(secret, method, uri, body, timestamp),
        TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }
