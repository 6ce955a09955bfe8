"""HubSpot deliveries: all-or-nothing parsing, dedupe keys that survive redeliveries, classification."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.attribution.deliveries import (
    MAX_EVENTS_PER_DELIVERY,
    EventDisposition,
    HubSpotEvent,
    classify,
    dedupe_key,
    parse_delivery,
)
from conveyor.errors import BadInput


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": 100,
        "subscriptionId": 12345,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1564113600000,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 987,
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        "changeSource": "CRM",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _bad(body: bytes) -> BadInput:
    with pytest.raises(BadInput) as excinfo:
        parse_delivery(body)
    assert excinfo.value.http_status == 400
    return excinfo.value


def test_batch_parses_in_order_with_hubspot_fields() -> None:
    events = parse_delivery(_body([_event(eventId=1), _event(eventId=2, subscriptionType="deal.creation")]))
    assert [e.event_id for e in events] == [1, 2]
    first = events[0]
    assert (first.portal_id, first.app_id, first.object_id) == (62515, 54321, 987)
    assert (first.property_name, first.property_value, first.change_source) == ("dealstage", "closedwon", "CRM")
    assert first.occurred_at == 1564113600000
    assert first.properties is None


def test_single_object_is_a_delivery_of_one() -> None:
    events = parse_delivery(_body(_event()))
    assert len(events) == 1
    assert events[0].subscription_type == "deal.propertyChange"


def test_properties_object_is_kept_with_numbers_as_strings() -> None:
    props = {"amount": 1500.5, "dealstage": "contractsent", "utm_content": "ad-7", "closedate": None}
    (event,) = parse_delivery(_body(_event(properties=props)))
    assert event.properties == {
        "amount": "1500.5",
        "dealstage": "contractsent",
        "utm_content": "ad-7",
        "closedate": None,
    }


def test_unknown_fields_are_dropped() -> None:
    (event,) = parse_delivery(_body(_event(changeFlag="NEW", sourceId="userId:1")))
    assert "changeFlag" not in event.model_dump(by_alias=True)


def test_exactly_one_hundred_events_are_accepted() -> None:
    events = parse_delivery(_body([_event(eventId=i) for i in range(MAX_EVENTS_PER_DELIVERY)]))
    assert len(events) == MAX_EVENTS_PER_DELIVERY


def test_over_one_hundred_events_is_refused() -> None:
    err = _bad(_body([_event(eventId=i) for i in range(MAX_EVENTS_PER_DELIVERY + 1)]))
    assert err.code == "TOO_MANY_EVENTS"
    assert err.details == {"count": 101}


@pytest.mark.parametrize(
    "body",
    [b"", b"[{", b"not json", b"\xff\xfe[]", b'[{"eventId": NaN}]', b"[1,]"],
)
def test_malformed_json_is_refused(body: bytes) -> None:
    assert _bad(body).code == "MALFORMED_JSON"


def test_empty_array_is_refused() -> None:
    assert _bad(b"[]").code == "EMPTY_DELIVERY"


@pytest.mark.parametrize("body", [b"42", b'"text"', b"null", b'[{"eventId":1}, 3]'])
def test_non_objects_are_refused(body: bytes) -> None:
    assert _bad(body).code in {"NOT_AN_OBJECT", "MISSING_FIELD"}


def test_non_object_in_batch_names_its_index() -> None:
    err = _bad(_body([_event(), [1, 2]]))
    assert (err.code, err.details) == ("NOT_AN_OBJECT", {"index": 1})


@pytest.mark.parametrize(
    "field", ["eventId", "subscriptionId", "portalId", "appId", "occurredAt", "subscriptionType", "objectId"]
)
def test_missing_required_field_refuses_the_whole_delivery(field: str) -> None:
    err = _bad(_body([_event(), _event(**{field: None})]))
    assert err.code == "MISSING_FIELD"
    assert err.details == {"index": 1, "field": field}


@pytest.mark.parametrize(
    ("field", "value"), [("portalId", "abc"), ("objectId", {"id": 1}), ("properties", {"amount": {"nested": 1}})]
)
def test_invalid_field_is_refused(field: str, value: Any) -> None:
    err = _bad(_body(_event(**{field: value})))
    assert err.code == "INVALID_FIELD"
    assert str(err.details["field"]).startswith(field)


def test_optional_fields_default() -> None:
    (event,) = parse_delivery(
        _body(
            _event(
                attemptNumber=None,
                propertyName=None,
                propertyValue=None,
                changeSource=None,
                subscriptionType="deal.creation",
            )
        )
    )
    assert event.attempt_number == 0
    assert event.property_name is None and event.property_value is None


def test_hubspot_retry_gives_the_same_keys() -> None:
    """A retry carries the same events with a higher attemptNumber (and a new timestamp header)."""
    batch = [_event(eventId=1), _event(eventId=2, propertyName="amount", propertyValue="100")]
    first = parse_delivery(_body(batch))
    retry = parse_delivery(_body([{**e, "attemptNumber": 1} for e in batch]))
    assert [dedupe_key(e) for e in first] == [dedupe_key(e) for e in retry]
    assert len({dedupe_key(e) for e in first}) == 2


def test_byte_identical_replay_gives_the_same_keys() -> None:
    body = _body([_event(eventId=i) for i in range(5)])
    assert [dedupe_key(e) for e in parse_delivery(body)] == [dedupe_key(e) for e in parse_delivery(body)]


def test_key_is_a_sha256_hex() -> None:
    key = dedupe_key(parse_delivery(_body(_event()))[0])
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"portalId": 1},
        {"subscriptionType": "deal.creation"},
        {"objectId": 988},
        {"propertyName": "amount"},
        {"propertyValue": "closedlost"},
        {"occurredAt": 1564113600001},
        {"eventId": 101},
    ],
)
def test_each_identifying_field_changes_the_key(change: dict[str, Any]) -> None:
    base = dedupe_key(HubSpotEvent.model_validate(_event()))
    assert dedupe_key(HubSpotEvent.model_validate(_event(**change))) != base


def test_same_event_id_for_different_changes_gives_different_keys() -> None:
    """HubSpot: eventId alone is not guaranteed unique."""
    a = HubSpotEvent.model_validate(_event(eventId=5, objectId=1))
    b = HubSpotEvent.model_validate(_event(eventId=5, objectId=2))
    assert dedupe_key(a) != dedupe_key(b)


def test_non_identifying_fields_do_not_change_the_key() -> None:
    base = dedupe_key(HubSpotEvent.model_validate(_event()))
    other = _event(attemptNumber=3, subscriptionId=9, appId=1, changeSource="API", properties={"amount": "1"})
    assert dedupe_key(HubSpotEvent.model_validate(other)) == base


def test_absent_and_empty_property_value_differ() -> None:
    absent = HubSpotEvent.model_validate(_event(propertyValue=None))
    empty = HubSpotEvent.model_validate(_event(propertyValue=""))
    assert dedupe_key(absent) != dedupe_key(empty)


@given(a=st.text(max_size=20), b=st.text(max_size=20))
def test_key_has_no_delimiter_collisions(a: str, b: str) -> None:
    one = HubSpotEvent.model_validate(_event(propertyName=a, propertyValue=b))
    two = HubSpotEvent.model_validate(_event(propertyName=a + b[:1], propertyValue=b[1:]))
    assert (dedupe_key(one) == dedupe_key(two)) == (b == "")


@pytest.mark.parametrize(
    ("subscription_type", "object_type_id", "disposition"),
    [
        ("deal.propertyChange", None, EventDisposition.PROCESSED),
        ("deal.creation", None, EventDisposition.PROCESSED),
        ("object.propertyChange", "0-3", EventDisposition.PROCESSED),
        ("object.creation", "0-3", EventDisposition.PROCESSED),
        ("object.propertyChange", "0-1", EventDisposition.IGNORED),
        ("deal.deletion", None, EventDisposition.IGNORED),
        ("contact.creation", None, EventDisposition.IGNORED),
        ("something.new", None, EventDisposition.IGNORED),
    ],
)
def test_classification(subscription_type: str, object_type_id: str | None, disposition: EventDisposition) -> None:
    event = HubSpotEvent.model_validate(_event(subscriptionType=subscription_type, objectTypeId=object_type_id))
    assert classify(event) is disposition


def test_unknown_subscription_type_is_accepted_not_refused() -> None:
    (event,) = parse_delivery(_body(_event(subscriptionType="conversation.newMessage")))
    assert classify(event) is EventDisposition.IGNORED


@pytest.mark.parametrize(
    ("field", "value"),
    [("portalId", -1), ("objectId", 2**63), ("occurredAt", -5), ("subscriptionType", ""), ("attemptNumber", -1)],
)
def test_ids_out_of_a_databases_range_are_refused(field: str, value: Any) -> None:
    err = _bad(_body([_event(**{field: value})]))
    assert err.code == "INVALID_FIELD" and err.details["field"] == field


def test_text_that_is_not_utf8_is_refused() -> None:
    body = b"[" + json.dumps(_event())[:-1].encode() + b', "propertyValue": "\\ud800"}]'
    err = _bad(body)
    assert err.details["field"] == "propertyValue"
