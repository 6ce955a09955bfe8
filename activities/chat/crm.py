"""Orders at an outside CRM (``CONVEYOR_CRM_URL``): one ``POST /orders`` per confirmed order, never two.

The seed's ``create_crm_order`` task (queue ``crm``) as a client. :class:`CrmClient` sends an :class:`OrderDraft` as
a :class:`CrmOrderRequest` with an ``Idempotency-Key`` derived from the conversation and the order's number
(:func:`~activities.chat.contract.order_idempotency_key`), so an attempt retried after a lost answer is recognised by
the CRM and makes no second order. The CRM's answers map onto the error taxonomy:

=================================  =====================================================================
answer                             result
=================================  =====================================================================
201 (or 202)                       :class:`CrmOrder` with ``created=True``
200, or 409 naming the order       the order this key already made, ``created=False`` (a replayed create)
429                                :class:`RateLimited` after ``Retry-After`` (seconds), else 60 s
other 4xx (409 without an order)   permanent :class:`BadInput` ``CRM_REJECTED`` with the CRM's message
5xx, timeout, network failure      retryable :class:`ExternalServiceError` ``CRM_UNAVAILABLE``
=================================  =====================================================================

The workflow tells the customer the order is pending while ``CRM_UNAVAILABLE`` is being retried. The API key never
appears in an error's message, details or cause.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from activities.chat.assistant import OrderDraft, OrderItem
from activities.chat.contract import RETRY_DELAY, order_idempotency_key
from conveyor.errors import BadInput, ExternalServiceError, RateLimited
from conveyor.outbound import OutboundClient, retry_after

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Used when a 429 carries no usable ``Retry-After``: the seed's default retry delay.
DEFAULT_RETRY_AFTER = RETRY_DELAY
#: Never wait longer than an hour for one order, whatever a header says.
_MAX_RETRY_AFTER = timedelta(hours=1)
#: How much of the CRM's own error message an error carries.
_MESSAGE_LIMIT = 200
_UNAVAILABLE = "CRM_UNAVAILABLE"
_REJECTED = "CRM_REJECTED"


class CrmCustomer(BaseModel):
    """Who the order is for."""

    model_config = ConfigDict(frozen=True)

    name: str
    phone: str


class CrmOrderRequest(BaseModel):
    """The JSON body of ``POST /orders``: the order's lines, customer, delivery city and total in UAH."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str = Field(min_length=1)
    order_number: int = Field(ge=1)
    items: tuple[OrderItem, ...] = Field(min_length=1)
    customer: CrmCustomer
    city: str
    total: int = Field(gt=0)
    currency: Literal["UAH"] = "UAH"

    @classmethod
    def from_draft(cls, conversation_id: str, order: OrderDraft) -> CrmOrderRequest:
        """The request for a conversation's confirmed order."""
        return cls(
            conversation_id=conversation_id,
            order_number=order.number,
            items=order.items,
            customer=CrmCustomer(name=order.customer_name, phone=order.phone),
            city=order.city,
            total=order.total,
        )


class CrmOrder(BaseModel):
    """The order as the CRM holds it; ``created`` is ``False`` when this key's order already existed."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    status: str
    created: bool


class CrmClient(OutboundClient):
    """Creates orders at an outside CRM's ``POST {base_url}/orders``, idempotently per conversation and order."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise BadInput("the CRM URL must be an http(s) URL", code="CRM_URL_INVALID")
        self._base_url = url
        # An empty setting means no key, as an unset one does.
        self._api_key = api_key.strip() if api_key and api_key.strip() else None
        super().__init__(timeout_s=timeout_s, http=http)

    async def create_order(self, conversation_id: str, order: OrderDraft) -> CrmOrder:
        """Create the conversation's order, or get the one an earlier attempt with the same key already made."""
        if not conversation_id.strip():
            raise BadInput("an order needs the conversation it comes from", code="BAD_INPUT")
        body = CrmOrderRequest.from_draft(conversation_id, order).model_dump(mode="json")
        headers = {
            IDEMPOTENCY_HEADER: order_idempotency_key(conversation_id, order.number),
            "Accept": "application/json",
        }
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange (a server dripping bytes).
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.post(
                    f"{self._base_url}/orders", json=body, headers=headers, timeout=self._timeout_s
                )
        except (TimeoutError, httpx.TimeoutException):
            raise ExternalServiceError(
                f"the CRM did not answer within {self._timeout_s:g} s", code=_UNAVAILABLE
            ) from None
        except httpx.HTTPError as exc:
            # An httpx error's text may carry the URL or request headers: only its type leaves.
            raise ExternalServiceError(f"the CRM is unreachable: {type(exc).__name__}", code=_UNAVAILABLE) from None
        return _order(response, self._api_key)


def _order(response: httpx.Response, api_key: str | None) -> CrmOrder:
    """The order a CRM answer describes, or the taxonomy's error for one that is not an order."""
    status = response.status_code
    payload = _json_object(response)
    if status in (200, 201, 202) or status == 409:
        found = _order_in(payload)
        if found is not None:
            order_id, order_status = found
            return CrmOrder(order_id=order_id, status=order_status, created=status in (201, 202))
        if status < 300:
            # The order may exist; a retry with the same key gets it back.
            raise ExternalServiceError(f"the CRM answered HTTP {status} without an order id", code=_UNAVAILABLE)
    if status == 429:
        retry_after = _retry_after(response.headers.get("retry-after"))
        raise RateLimited(
            f"the CRM rate limit was reached; retry in {retry_after.total_seconds():g} s",
            code="CRM_RATE_LIMITED",
            retry_after=retry_after,
        )
    if status >= 500 or status < 400:
        raise ExternalServiceError(f"the CRM answered HTTP {status}", code=_UNAVAILABLE)
    message = _crm_message(payload, api_key)
    refused = " (the API key was refused)" if status in (401, 403) else ""
    raise BadInput(
        f"the CRM rejected the order (HTTP {status}){refused}: {message}",
        code=_REJECTED,
        details={"status": status},
    )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body as a JSON object; empty when it is not one (an HTML error page, nothing)."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _order_in(payload: dict[str, Any]) -> tuple[str, str] | None:
    """``(order id, status)`` of the order an answer carries, at its top level or under ``order``."""
    nested = payload.get("order")
    candidate = nested if isinstance(nested, dict) else payload
    raw_id = candidate.get("id", candidate.get("order_id"))
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        return None
    raw_status = candidate.get("status")
    status = raw_status.strip() if isinstance(raw_status, str) and raw_status.strip() else "new"
    return str(raw_id).strip(), status


def _crm_message(payload: dict[str, Any], api_key: str | None) -> str:
    """The CRM's own explanation of a rejection, short and without the API key."""
    for name in ("message", "detail", "error", "description"):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            break
    else:
        text = "no reason given"
    if api_key:
        text = text.replace(api_key, "***")
    return text[:_MESSAGE_LIMIT]


def _retry_after(raw: str | None) -> timedelta:
    """How long the CRM asks us to wait: ``Retry-After`` in seconds, else :data:`DEFAULT_RETRY_AFTER`."""
    return retry_after(raw, default=DEFAULT_RETRY_AFTER, most=_MAX_RETRY_AFTER)
