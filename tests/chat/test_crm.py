"""The outside CRM client against a fake CRM that honours Idempotency-Key: one order per key, errors mapped."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from activities.chat.assistant import OrderDraft, OrderItem
from activities.chat.contract import order_idempotency_key
from activities.chat.crm import CrmClient, CrmOrder, CrmOrderRequest
from conveyor.errors import BadInput, ExternalServiceError, RateLimited
from tests.helpers import free_port
from tests.helpers.fakes import FakeCrm, FakeHttpServer, Recorded, json_response

CONVERSATION = "chat-telegram-424242"
HOODIE = OrderItem(sku="HOODIE-01", size="M", quantity=2, price=1200)
DRESS = OrderItem(sku="DRESS-07", size="110", quantity=1, price=950)


def draft(number: int = 1, *items: OrderItem) -> OrderDraft:
    """A confirmed order of the conversation (two hoodies unless other items are given)."""
    lines = items or (HOODIE,)
    return OrderDraft(
        number=number,
        items=lines,
        customer_name="Olena Kovalenko",
        phone="+380501234567",
        city="Lviv",
        total=sum(item.price * item.quantity for item in lines),
    )


@pytest.fixture
def fake() -> Iterator[FakeCrm]:
    """A running fake CRM that answers a repeated key 409 with the existing order."""
    with FakeCrm() as server:
        yield server


@pytest.fixture
async def client(fake: FakeCrm) -> AsyncIterator[CrmClient]:
    """A client of the fake with the right key."""
    async with CrmClient(fake.url, api_key=fake.api_key, timeout_s=5) as crm:
        yield crm


async def test_a_new_order_is_created_with_the_idempotency_key_and_the_order_body(
    fake: FakeCrm, client: CrmClient
) -> None:
    order = await client.create_order(CONVERSATION, draft(1, HOODIE, DRESS))

    key = order_idempotency_key(CONVERSATION, 1)
    assert order == CrmOrder(order_id=fake.orders[key]["id"], status="new", created=True)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/orders")
    assert request.headers["idempotency-key"] == key
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.json() == {
        "conversation_id": CONVERSATION,
        "order_number": 1,
        "items": [
            {"sku": "HOODIE-01", "size": "M", "quantity": 2, "price": 1200},
            {"sku": "DRESS-07", "size": "110", "quantity": 1, "price": 950},
        ],
        "customer": {"name": "Olena Kovalenko", "phone": "+380501234567"},
        "city": "Lviv",
        "total": 3350,
        "currency": "UAH",
    }


async def test_a_retry_after_a_lost_answer_makes_one_order_with_the_same_id(fake: FakeCrm, client: CrmClient) -> None:
    fake.lose_next_answers()

    with pytest.raises(ExternalServiceError) as lost:
        await client.create_order(CONVERSATION, draft())
    retried = await client.create_order(CONVERSATION, draft())

    assert lost.value.code == "CRM_UNAVAILABLE" and lost.value.retryable
    [stored] = fake.orders.values()
    assert retried == CrmOrder(order_id=stored["id"], status="new", created=False)
    first, second = fake.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_a_crm_that_replays_duplicates_with_200_gives_the_existing_order() -> None:
    with FakeCrm(duplicate_status=200) as fake:
        async with CrmClient(fake.url, api_key=fake.api_key) as crm:
            created = await crm.create_order(CONVERSATION, draft())
            replayed = await crm.create_order(CONVERSATION, draft())

    assert created.created and not replayed.created
    assert replayed.order_id == created.order_id
    assert len(fake.orders) == 1


async def test_two_orders_of_one_conversation_get_two_keys_and_two_orders(fake: FakeCrm, client: CrmClient) -> None:
    first = await client.create_order(CONVERSATION, draft(1))
    second = await client.create_order(CONVERSATION, draft(2, DRESS))

    assert first.created and second.created
    assert first.order_id != second.order_id
    assert list(fake.orders) == [order_idempotency_key(CONVERSATION, 1), order_idempotency_key(CONVERSATION, 2)]


async def test_the_same_order_number_in_another_conversation_is_another_order(fake: FakeCrm, client: CrmClient) -> None:
    await client.create_order(CONVERSATION, draft(1))
    other = await client.create_order("chat-manychat-777", draft(1))

    assert other.created
    assert len(fake.orders) == 2


async def test_a_server_error_is_retryable_and_the_retry_creates_the_order(fake: FakeCrm, client: CrmClient) -> None:
    fake.fail_next(status=503)

    with pytest.raises(ExternalServiceError) as failed:
        await client.create_order(CONVERSATION, draft())

    assert failed.value.code == "CRM_UNAVAILABLE"
    assert failed.value.retryable
    assert fake.orders == {}
    assert (await client.create_order(CONVERSATION, draft())).created


async def test_a_rejected_order_fails_permanently_naming_the_crms_message() -> None:
    def reject(_: Recorded) -> Any:
        return json_response(400, {"error": "validation_failed", "message": "city 'Lviv' is not served"})

    with FakeHttpServer(reject) as server:
        async with CrmClient(server.url) as crm:
            with pytest.raises(BadInput) as rejected:
                await crm.create_order(CONVERSATION, draft())

    assert rejected.value.code == "CRM_REJECTED"
    assert not rejected.value.retryable
    assert "city 'Lviv' is not served" in rejected.value.message
    assert "HTTP 400" in rejected.value.message


async def test_a_key_reused_with_a_different_order_is_rejected(fake: FakeCrm, client: CrmClient) -> None:
    await client.create_order(CONVERSATION, draft(1))

    with pytest.raises(BadInput) as rejected:
        await client.create_order(CONVERSATION, draft(1, DRESS))

    assert rejected.value.code == "CRM_REJECTED"
    assert "different order" in rejected.value.message
    assert len(fake.orders) == 1


async def test_a_conflict_that_names_no_order_is_rejected_permanently() -> None:
    with FakeHttpServer(lambda _: json_response(409, {"message": "customer is blacklisted"})) as server:
        async with CrmClient(server.url) as crm:
            with pytest.raises(BadInput) as rejected:
                await crm.create_order(CONVERSATION, draft())

    assert rejected.value.code == "CRM_REJECTED"
    assert "customer is blacklisted" in rejected.value.message


async def test_a_rate_limit_waits_for_retry_after(fake: FakeCrm, client: CrmClient) -> None:
    fake.fail_next(status=429, retry_after=7)

    with pytest.raises(RateLimited) as limited:
        await client.create_order(CONVERSATION, draft())

    assert limited.value.code == "CRM_RATE_LIMITED"
    assert limited.value.retry_after == timedelta(seconds=7)
    assert limited.value.retryable
    assert (await client.create_order(CONVERSATION, draft())).created


async def test_a_rate_limit_without_retry_after_waits_the_seeds_default_delay(fake: FakeCrm, client: CrmClient) -> None:
    fake.fail_next(status=429)

    with pytest.raises(RateLimited) as limited:
        await client.create_order(CONVERSATION, draft())

    assert limited.value.retry_after == timedelta(seconds=60)


async def test_a_slow_crm_times_out_as_unavailable() -> None:
    def slow(_: Recorded) -> Any:
        time.sleep(1.0)
        return json_response(201, {"id": "ord_late", "status": "new"})

    with FakeHttpServer(slow) as server:
        async with CrmClient(server.url, timeout_s=0.2) as crm:
            with pytest.raises(ExternalServiceError) as failed:
                await crm.create_order(CONVERSATION, draft())

    assert failed.value.code == "CRM_UNAVAILABLE"
    assert failed.value.retryable
    assert "within 0.2 s" in failed.value.message


async def test_an_unreachable_crm_is_unavailable_without_echoing_the_key() -> None:
    key = "crm_live_secret_key_42"
    async with CrmClient(f"http://127.0.0.1:{free_port()}", api_key=key) as crm:
        with pytest.raises(ExternalServiceError) as failed:
            await crm.create_order(CONVERSATION, draft())

    assert failed.value.code == "CRM_UNAVAILABLE"
    assert failed.value.retryable
    assert key not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


async def test_a_wrong_key_is_rejected_permanently_without_echoing_it(fake: FakeCrm) -> None:
    key = "crm_live_wrong_key_secret"
    async with CrmClient(fake.url, api_key=key) as crm:
        with pytest.raises(BadInput) as rejected:
            await crm.create_order(CONVERSATION, draft())

    assert rejected.value.code == "CRM_REJECTED"
    assert not rejected.value.retryable
    assert "401" in rejected.value.message
    assert key not in json.dumps(rejected.value.to_dict())
    assert fake.requests[0].headers["authorization"] == f"Bearer {key}"
    assert fake.orders == {}


async def test_a_crm_that_echoes_the_key_in_its_message_has_it_masked() -> None:
    key = "crm_live_echoed_key_99"

    def echo(request: Recorded) -> Any:
        return json_response(403, {"message": f"key {request.headers['authorization']} may not create orders"})

    with FakeHttpServer(echo) as server:
        async with CrmClient(server.url, api_key=key) as crm:
            with pytest.raises(BadInput) as rejected:
                await crm.create_order(CONVERSATION, draft())

    assert key not in json.dumps(rejected.value.to_dict())
    assert "***" in rejected.value.message


async def test_without_a_key_no_authorization_header_is_sent() -> None:
    with FakeCrm(api_key=None) as fake:
        async with CrmClient(fake.url, api_key="  ") as crm:
            assert (await crm.create_order(CONVERSATION, draft())).created

    assert "authorization" not in fake.requests[0].headers


async def test_the_fake_refuses_an_order_without_an_idempotency_key(fake: FakeCrm) -> None:
    body = CrmOrderRequest.from_draft(CONVERSATION, draft()).model_dump(mode="json")
    # The client always sends the key, so the fake is asked directly.
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake.url}/orders", json=body, headers={"Authorization": f"Bearer {fake.api_key}"})

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"]
    assert fake.orders == {}


async def test_a_success_without_an_order_id_is_retryable() -> None:
    with FakeHttpServer(lambda _: json_response(201, {"status": "new"})) as server:
        async with CrmClient(server.url) as crm:
            with pytest.raises(ExternalServiceError) as failed:
                await crm.create_order(CONVERSATION, draft())

    assert failed.value.code == "CRM_UNAVAILABLE"


async def test_an_html_error_page_from_a_proxy_is_retryable() -> None:
    with FakeHttpServer(lambda _: (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>")) as server:
        async with CrmClient(server.url) as crm:
            with pytest.raises(ExternalServiceError) as failed:
                await crm.create_order(CONVERSATION, draft())

    assert failed.value.retryable


async def test_an_order_nested_under_order_with_a_numeric_id_is_read() -> None:
    with FakeHttpServer(lambda _: json_response(201, {"order": {"order_id": 5150, "status": "accepted"}})) as server:
        async with CrmClient(server.url) as crm:
            order = await crm.create_order(CONVERSATION, draft())

    assert order == CrmOrder(order_id="5150", status="accepted", created=True)


@pytest.mark.parametrize("url", ["", "  ", "ftp://crm.example", "crm.example/api"])
def test_a_crm_url_that_is_not_http_is_refused_up_front(url: str) -> None:
    with pytest.raises(BadInput) as refused:
        CrmClient(url)

    assert refused.value.code == "CRM_URL_INVALID"


async def test_an_empty_conversation_id_is_refused_before_any_request(fake: FakeCrm, client: CrmClient) -> None:
    with pytest.raises(BadInput):
        await client.create_order(" ", draft())

    assert fake.requests == []
