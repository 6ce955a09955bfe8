"""A deal's attribution properties from HubSpot's CRM v3 API, or from an event that already carries them.

:class:`HubSpotCrmClient` reads one deal (``GET /crm/v3/objects/deals/{id}``) with a private app's access token
and maps HubSpot's answers onto the error taxonomy: 404 → :class:`NotFound` ``DEAL_NOT_FOUND``; 401/403 →
permanent :class:`BadInput` ``HUBSPOT_TOKEN_INVALID``/``HUBSPOT_TOKEN_FORBIDDEN``; 429 → :class:`RateLimited`
after ``Retry-After``; 5xx, timeouts and network failures → retryable :class:`ExternalServiceError`.
:func:`deal_from_event_properties` builds the same :class:`DealProperties` from an event's ``properties``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from activities.attribution.revenue import parse_amount, to_cents
from conveyor.errors import BadInput, ExternalServiceError, NotFound, RateLimited
from conveyor.outbound import OutboundClient, retry_after

HUBSPOT_API_URL = "https://api.hubapi.com"

#: The deal properties attribution reads, in the order they are asked for.
DEAL_PROPERTIES: tuple[str, ...] = (
    "amount",
    "dealstage",
    "deal_currency_code",
    "utm_content",
    "utm_campaign",
    "utm_source",
    "utm_medium",
    "hs_analytics_source",
    "closedate",
)
#: Used when HubSpot rate-limits without ``Retry-After``: its burst windows are ten seconds long.
DEFAULT_RETRY_AFTER = timedelta(seconds=10)
#: Never wait longer than a day (HubSpot's longest window), whatever a header says.
_MAX_RETRY_AFTER = timedelta(days=1)


class DealProperties(BaseModel):
    """What attribution needs to know of one deal: its amount in cents, stage, currency, UTMs and contacts."""

    model_config = ConfigDict(frozen=True)

    deal_id: str
    amount_cents: int
    stage: str | None = None
    currency: str | None = None
    utm_content: str | None = None
    utm_campaign: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    analytics_source: str | None = None
    close_date: str | None = None
    """As HubSpot sends it (ISO 8601, or epoch milliseconds in webhook payloads)."""
    contact_ids: tuple[str, ...] = ()


def _text(properties: Mapping[str, Any], name: str) -> str | None:
    """A property's value as stripped text, ``None`` when absent or blank."""
    value = properties.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _deal(deal_id: str, properties: Mapping[str, Any], contact_ids: tuple[str, ...]) -> DealProperties:
    """A :class:`DealProperties` from HubSpot's property names; raises :class:`BadInput` ``INVALID_AMOUNT``."""
    return DealProperties(
        deal_id=deal_id,
        amount_cents=to_cents(parse_amount(_text(properties, "amount"))),
        stage=_text(properties, "dealstage"),
        currency=_text(properties, "deal_currency_code"),
        utm_content=_text(properties, "utm_content"),
        utm_campaign=_text(properties, "utm_campaign"),
        utm_source=_text(properties, "utm_source"),
        utm_medium=_text(properties, "utm_medium"),
        analytics_source=_text(properties, "hs_analytics_source"),
        close_date=_text(properties, "closedate"),
        contact_ids=contact_ids,
    )


def _check_deal_id(deal_id: str | int) -> str:
    """The deal id as text; HubSpot's record ids are positive integers, so anything else is refused unsent."""
    text = str(deal_id).strip()
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise BadInput(f"deal id {str(deal_id)[:40]!r} is not a HubSpot record id", code="INVALID_DEAL_ID")
    return text


def deal_from_event_properties(properties: Mapping[str, Any], *, deal_id: str | int | None = None) -> DealProperties:
    """The deal an event's ``properties`` describe (exports, replays): no CRM call is made.

    ``deal_id`` is the event's ``objectId``; without it the ``hs_object_id`` property names the deal.
    Such events carry no associations, so ``contact_ids`` is empty.
    """
    raw_id = deal_id if deal_id is not None else _text(properties, "hs_object_id")
    if raw_id is None:
        raise BadInput("the event's properties do not name the deal", code="MISSING_DEAL_ID")
    return _deal(_check_deal_id(raw_id), properties, ())


class HubSpotCrmClient(OutboundClient):
    """Reads deals from HubSpot's CRM v3 API with a private app's access token."""

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = HUBSPOT_API_URL,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not access_token.strip():
            raise BadInput("the HubSpot access token is empty", code="HUBSPOT_TOKEN_INVALID")
        self._token = access_token
        self._base_url = base_url.rstrip("/")
        super().__init__(timeout_s=timeout_s, http=http)

    async def get_deal(self, deal_id: str | int) -> DealProperties:
        """The deal's attribution properties and associated contact ids."""
        deal = _check_deal_id(deal_id)
        url = f"{self._base_url}/crm/v3/objects/deals/{deal}"
        params = {"properties": ",".join(DEAL_PROPERTIES), "associations": "contacts"}
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange (a server dripping bytes).
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.get(url, params=params, headers=headers, timeout=self._timeout_s)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ExternalServiceError(
                f"HubSpot did not answer within {self._timeout_s:g} s", code="HUBSPOT_UNAVAILABLE"
            ) from exc
        except httpx.HTTPError as exc:
            message = f"HubSpot unreachable: {type(exc).__name__}: {exc}".replace(self._token, "***")
            raise ExternalServiceError(message, code="HUBSPOT_UNAVAILABLE") from exc
        _raise_for_status(response, deal)
        return _parse_deal(response, deal)


def _raise_for_status(response: httpx.Response, deal_id: str) -> None:
    """Raise the taxonomy's error for a HubSpot answer that is not a success."""
    status = response.status_code
    if status < 300:
        return
    if status == 404:
        raise NotFound(f"HubSpot has no deal {deal_id}", code="DEAL_NOT_FOUND", details={"deal_id": deal_id})
    if status == 401:
        raise BadInput(
            "HubSpot refused the access token (HTTP 401): it is invalid or expired", code="HUBSPOT_TOKEN_INVALID"
        )
    if status == 403:
        raise BadInput(
            "HubSpot refused the access token (HTTP 403): it lacks the crm.objects.deals.read scope",
            code="HUBSPOT_TOKEN_FORBIDDEN",
        )
    if status == 429:
        retry_after = _retry_after(response.headers)
        raise RateLimited(
            f"HubSpot rate limit reached; retry in {retry_after.total_seconds():g} s",
            code="HUBSPOT_RATE_LIMITED",
            retry_after=retry_after,
        )
    if status >= 500:
        raise ExternalServiceError(f"HubSpot answered HTTP {status}", code="HUBSPOT_UNAVAILABLE")
    raise BadInput(f"HubSpot rejected the deal request (HTTP {status})", code="HUBSPOT_REJECTED")


def _parse_deal(response: httpx.Response, deal_id: str) -> DealProperties:
    """A :class:`DealProperties` from a CRM v3 object answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(properties, dict):
        raise ExternalServiceError("HubSpot answered a deal of an unexpected shape", code="HUBSPOT_UNAVAILABLE")
    associations = body.get("associations")
    contacts = associations.get("contacts") if isinstance(associations, dict) else None
    results = contacts.get("results") if isinstance(contacts, dict) else None
    # HubSpot lists a contact once per association type (labelled and unlabelled): keep each id once, in order.
    ids = [str(item["id"]) for item in results or [] if isinstance(item, dict) and item.get("id") is not None]
    return _deal(str(body.get("id") or deal_id), properties, tuple(dict.fromkeys(ids)))


def _retry_after(headers: httpx.Headers) -> timedelta:
    """How long HubSpot asks us to wait: ``Retry-After`` in seconds, else :data:`DEFAULT_RETRY_AFTER`."""
    return retry_after(headers.get("retry-after"), default=DEFAULT_RETRY_AFTER, most=_MAX_RETRY_AFTER)
