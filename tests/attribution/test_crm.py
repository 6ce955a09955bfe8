"""The HubSpot CRM client against a fake of the CRM v3 deals API: request shape, parsing, error mapping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from activities.attribution.crm import (
    DEAL_PROPERTIES,
    DealProperties,
    HubSpotCrmClient,
    deal_from_event_properties,
)
from activities.attribution.deliveries import parse_delivery
from conveyor.errors import BadInput, ExternalServiceError, NotFound, RateLimited
from tests.helpers import free_port
from tests.helpers.fakes import FakeHttpServer, FakeHubSpot, json_response

WON_DEAL = {
    "amount": "1250.50",
    "dealstage": "closedwon",
    "deal_currency_code": "EUR",
    "utm_content": "ad-42",
    "utm_campaign": "spring-sale",
    "utm_source": "facebook",
    "utm_medium": "paid_social",
    "hs_analytics_source": "PAID_SOCIAL",
    "closedate": "2025-03-10T12:00:00Z",
    "dealname": "Acme renewal",
}


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    """A running fake HubSpot holding deal 9001 (won, two contacts) and deal 9002 (no amount, no contacts)."""
    with FakeHubSpot() as server:
        server.add_deal("9001", WON_DEAL, ["101", "202"])
        server.add_deal("9002", {"amount": None, "dealstage": "appointmentscheduled"})
        yield server


@pytest.fixture
async def client(fake: FakeHubSpot) -> AsyncIterator[HubSpotCrmClient]:
    """A client of the fake with the right token."""
    async with HubSpotCrmClient(fake.access_token, base_url=fake.url, timeout_s=5) as hubspot:
        yield hubspot


async def test_get_deal_sends_hubspots_request_shape_and_parses_the_deal(
    fake: FakeHubSpot, client: HubSpotCrmClient
) -> None:
    deal = await client.get_deal("9001")

    assert deal == DealProperties(
        deal_id="9001",
        amount_cents=125050,
        stage="closedwon",
        currency="EUR",
        utm_content="ad-42",
        utm_campaign="spring-sale",
        utm_source="facebook",
        utm_medium="paid_social",
        analytics_source="PAID_SOCIAL",
        close_date="2025-03-10T12:00:00Z",
        contact_ids=("101", "202"),
    )
    [request] = fake.requests
    url = urlsplit(request.path)
    assert (request.method, url.path) == ("GET", "/crm/v3/objects/deals/9001")
    query = parse_qs(url.query)
    assert query["properties"] == [",".join(DEAL_PROPERTIES)]
    assert set(DEAL_PROPERTIES) >= {"amount", "dealstage", "deal_currency_code", "utm_content", "utm_campaign"}
    assert query["associations"] == ["contacts"]
    assert request.headers["authorization"] == f"Bearer {fake.access_token}"


async def test_a_deal_without_amount_or_contacts_is_worth_zero_with_no_contacts(client: HubSpotCrmClient) -> None:
    deal = await client.get_deal(9002)

    assert (deal.deal_id, deal.amount_cents, deal.stage) == ("9002", 0, "appointmentscheduled")
    assert (deal.utm_content, deal.currency, deal.contact_ids) == (None, None, ())


async def test_a_contact_listed_under_several_association_types_counts_once() -> None:
    body = {
        "id": "7",
        "properties": {"amount": "10", "dealstage": "closedwon"},
        "associations": {
            "contacts": {
                "results": [
                    {"id": "5", "type": "deal_to_contact"},
                    {"id": "5", "type": "deal_to_contact_unlabeled"},
                    {"id": "6", "type": "deal_to_contact"},
                ]
            }
        },
    }
    with FakeHttpServer(lambda _: json_response(200, body)) as server:
        async with HubSpotCrmClient("pat-token", base_url=server.url) as hubspot:
            deal = await hubspot.get_deal("7")

    assert deal.contact_ids == ("5", "6")


async def test_an_unknown_deal_is_not_found_permanently(client: HubSpotCrmClient) -> None:
    with pytest.raises(NotFound) as missing:
        await client.get_deal("404404")

    assert missing.value.code == "DEAL_NOT_FOUND"
    assert not missing.value.retryable
    assert missing.value.details == {"deal_id": "404404"}


async def test_a_wrong_token_fails_permanently_without_echoing_it(fake: FakeHubSpot) -> None:
    token = "pat-na1-wrong-token-secret"
    async with HubSpotCrmClient(token, base_url=fake.url) as hubspot:
        with pytest.raises(BadInput) as refused:
            await hubspot.get_deal("9001")

    assert refused.value.code == "HUBSPOT_TOKEN_INVALID"
    assert not refused.value.retryable
    assert "401" in refused.value.message
    assert token not in json.dumps(refused.value.to_dict())
    assert fake.requests[0].headers["authorization"] == f"Bearer {token}"


async def test_a_token_without_the_deals_scope_fails_permanently() -> None:
    body = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes",
        "category": "MISSING_SCOPES",
    }
    with FakeHttpServer(lambda _: json_response(403, body)) as server:
        async with HubSpotCrmClient("pat-token", base_url=server.url) as hubspot:
            with pytest.raises(BadInput) as refused:
                await hubspot.get_deal("9001")

    assert refused.value.code == "HUBSPOT_TOKEN_FORBIDDEN"
    assert not refused.value.retryable
    assert "crm.objects.deals.read" in refused.value.message


async def test_a_rate_limit_waits_for_retry_after_and_the_retry_succeeds(
    fake: FakeHubSpot, client: HubSpotCrmClient
) -> None:
    fake.fail_next(429, retry_after=3)

    with pytest.raises(RateLimited) as limited:
        await client.get_deal("9001")

    assert limited.value.code == "HUBSPOT_RATE_LIMITED"
    assert limited.value.retry_after == timedelta(seconds=3)
    assert limited.value.retryable
    assert (await client.get_deal("9001")).amount_cents == 125050


async def test_a_rate_limit_without_retry_after_waits_ten_seconds(fake: FakeHubSpot, client: HubSpotCrmClient) -> None:
    fake.fail_next(429)

    with pytest.raises(RateLimited) as limited:
        await client.get_deal("9001")

    assert limited.value.retry_after == timedelta(seconds=10)


async def test_a_server_error_is_a_retryable_external_failure(fake: FakeHubSpot, client: HubSpotCrmClient) -> None:
    fake.fail_next(500)

    with pytest.raises(ExternalServiceError) as failed:
        await client.get_deal("9001")

    assert failed.value.code == "HUBSPOT_UNAVAILABLE"
    assert failed.value.retryable
    assert (await client.get_deal("9001")).stage == "closedwon"


async def test_an_unreachable_hubspot_is_a_retryable_external_failure() -> None:
    token = "pat-na1-secret-token"
    async with HubSpotCrmClient(token, base_url=f"http://127.0.0.1:{free_port()}") as hubspot:
        with pytest.raises(ExternalServiceError) as failed:
            await hubspot.get_deal("9001")

    assert failed.value.code == "HUBSPOT_UNAVAILABLE"
    assert failed.value.retryable
    assert token not in str(failed.value)


@pytest.mark.parametrize("deal_id", ["", "0", "12/../contacts", "abc", "١٢"])
async def test_a_malformed_deal_id_is_refused_before_any_request(
    fake: FakeHubSpot, client: HubSpotCrmClient, deal_id: str
) -> None:
    with pytest.raises(BadInput) as refused:
        await client.get_deal(deal_id)

    assert refused.value.code == "INVALID_DEAL_ID"
    assert fake.requests == []


def test_an_empty_token_is_refused_up_front() -> None:
    with pytest.raises(BadInput) as refused:
        HubSpotCrmClient("  ")

    assert refused.value.code == "HUBSPOT_TOKEN_INVALID"


async def test_event_properties_give_the_same_deal_as_the_crm_without_a_call(
    fake: FakeHubSpot, client: HubSpotCrmClient
) -> None:
    event = {
        "eventId": 1,
        "subscriptionId": 2,
        "portalId": 3,
        "appId": 4,
        "occurredAt": 1741600000000,
        "subscriptionType": "deal.propertyChange",
        "objectId": 9001,
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        "properties": WON_DEAL,
    }
    [parsed] = parse_delivery(json.dumps([event]).encode())
    assert parsed.properties is not None

    from_event = deal_from_event_properties(parsed.properties, deal_id=parsed.object_id)

    assert fake.requests == []
    fetched = await client.get_deal("9001")
    # An event carries no associations; everything else matches what the CRM answers.
    assert from_event == fetched.model_copy(update={"contact_ids": ()})


def test_event_properties_name_the_deal_by_hs_object_id_when_no_id_is_given() -> None:
    deal = deal_from_event_properties({"hs_object_id": "55", "amount": " 19.999 ", "dealstage": "contractsent"})

    assert (deal.deal_id, deal.amount_cents, deal.stage) == ("55", 2000, "contractsent")


def test_event_properties_that_do_not_name_the_deal_are_refused() -> None:
    with pytest.raises(BadInput) as refused:
        deal_from_event_properties({"amount": "10"})

    assert refused.value.code == "MISSING_DEAL_ID"


def test_an_amount_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(BadInput) as refused:
        deal_from_event_properties({"amount": "ten euros"}, deal_id="1")

    assert refused.value.code == "INVALID_AMOUNT"
