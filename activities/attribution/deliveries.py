"""HubSpot webhook deliveries: parse a body into events, key each event for dedupe, classify it. Pure.

A delivery is a JSON array of up to :data:`MAX_EVENTS_PER_DELIVERY` events (a single object is accepted too).
Parsing is all-or-nothing: any malformed part refuses the whole delivery with a
:class:`~conveyor.errors.BadInput` (400), so nothing of it is accepted and HubSpot's retry carries it again.
An event of a subscription type we do not process is *not* an error: it is accepted and recorded as
:attr:`EventDisposition.IGNORED`, because HubSpot retries any 4xx for a day.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from conveyor.errors import BadInput

#: HubSpot sends at most 100 events per request.
MAX_EVENTS_PER_DELIVERY = 100

#: Subscription types whose events change a deal's revenue.
PROCESSED_SUBSCRIPTION_TYPES: frozenset[str] = frozenset({"deal.propertyChange", "deal.creation"})
#: The generic (``object.*``) subscription types, processed when ``objectTypeId`` is a deal's.
GENERIC_DEAL_SUBSCRIPTION_TYPES: frozenset[str] = frozenset({"object.propertyChange", "object.creation"})
#: HubSpot's object type id of deals.
DEAL_OBJECT_TYPE_ID = "0-3"


class EventDisposition(StrEnum):
    """What the pipeline does with an accepted event."""

    PROCESSED = "processed"
    IGNORED = "ignored"


#: HubSpot's ids are non-negative 64-bit integers (what a database's BIGINT holds).
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class HubSpotEvent(BaseModel):
    """One webhook event as HubSpot sends it (camelCase on the wire, snake_case here); unknown fields are dropped."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
    )

    event_id: Id
    subscription_id: Id
    portal_id: Id
    app_id: Id
    occurred_at: int = Field(ge=0, le=MAX_ID)
    """Milliseconds since the epoch."""
    subscription_type: str = Field(min_length=1, max_length=100)
    attempt_number: int = Field(0, ge=0, le=1000)
    object_id: Id
    object_type_id: str | None = Field(None, max_length=40)
    property_name: str | None = Field(None, max_length=200)
    property_value: str | None = Field(None, max_length=10_000)
    change_source: str | None = Field(None, max_length=100)
    properties: dict[str, str | None] | None = Field(None, max_length=500)
    """The deal's properties when the event carries them (exports, replays, tests): no CRM call is needed."""

    @field_validator("*", mode="after")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        """Text must be UTF-8 (JSON's ``\\ud800`` escapes decode to lone surrogates no database can store)."""
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, dict):
            texts = [t for pair in value.items() for t in pair if isinstance(t, str)]
        for text in texts:
            text.encode("utf-8")  # UnicodeEncodeError is a ValueError: pydantic reports the field
        return value


def _reject_constant(name: str) -> Any:
    """``json.loads`` hook: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def _field_error(err: ValidationError, index: int) -> BadInput:
    """The delivery's :class:`BadInput` for the first problem of event ``index``."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(event)"
    missing = first["type"] == "missing"
    return BadInput(
        f"event {index}: {'missing field' if missing else 'invalid field'} {field!r}",
        code="MISSING_FIELD" if missing else "INVALID_FIELD",
        details={"index": index, "field": field},
    )


def parse_delivery(body: bytes) -> list[HubSpotEvent]:
    """The events of a delivery body, in order; raises :class:`BadInput` if any part of it is malformed.

    Codes: ``MALFORMED_JSON``, ``EMPTY_DELIVERY``, ``TOO_MANY_EVENTS``, ``NOT_AN_OBJECT``, ``MISSING_FIELD``,
    ``INVALID_FIELD`` (``details`` names the event's index and the field).
    """
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadInput(f"the delivery is not valid JSON: {err}", code="MALFORMED_JSON") from None
    items: list[Any] = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BadInput("the delivery holds no events", code="EMPTY_DELIVERY")
    if len(items) > MAX_EVENTS_PER_DELIVERY:
        raise BadInput(
            f"the delivery holds {len(items)} events; at most {MAX_EVENTS_PER_DELIVERY} are accepted",
            code="TOO_MANY_EVENTS",
            details={"count": len(items)},
        )
    events: list[HubSpotEvent] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInput(f"event {index} is not a JSON object", code="NOT_AN_OBJECT", details={"index": index})
        try:
            events.append(HubSpotEvent.model_validate(item))
        except ValidationError as err:
            raise _field_error(err, index) from None
    return events


def dedupe_key(event: HubSpotEvent) -> str:
    """A stable key for one distinct change: equal for every redelivery of it, whatever ``attemptNumber``.

    SHA-256 (hex) over portal, subscription type, object, property name and value, ``occurredAt`` and
    ``eventId``; HubSpot says ``eventId`` alone is not guaranteed unique.
    """
    parts = [
        event.portal_id,
        event.subscription_type,
        event.object_id,
        event.property_name,
        event.property_value,
        event.occurred_at,
        event.event_id,
    ]
    canonical = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def classify(event: HubSpotEvent) -> EventDisposition:
    """Whether the pipeline processes ``event`` (deal creation or deal property change) or only records it."""
    if event.subscription_type in PROCESSED_SUBSCRIPTION_TYPES:
        return EventDisposition.PROCESSED
    if event.subscription_type in GENERIC_DEAL_SUBSCRIPTION_TYPES and event.object_type_id == DEAL_OBJECT_TYPE_ID:
        return EventDisposition.PROCESSED
    return EventDisposition.IGNORED
