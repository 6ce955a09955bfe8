"""The chat assistant's model path against a fake OpenAI-compatible endpoint on 127.0.0.1: what is sent, what a
reply, a tool call and a fallback look like, and which endpoint failures raise."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from activities.chat.catalog import load_catalog
from activities.chat.llm import CREATE_ORDER_TOOL, catalog_hint, generate, price_order
from activities.chat.turns import (
    ChatMessage,
    CreateOrderArgs,
    LlmRequest,
    LlmTurn,
    OrderItemArg,
    ToolCall,
    tool_exchange,
)
from conveyor.errors import BadInput, RateLimited
from tests.helpers import free_port
from tests.helpers.fakes import FakeOpenAI

CATALOG = load_catalog()
HINT = catalog_hint(CATALOG)
ORDER = {
    "items": [{"sku": "HOODIE-OVS", "size": "m", "quantity": 2}],
    "customer_name": "Olena",
    "phone": "067 123 45 67",
    "city": "Lviv",
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A running fake chat completions endpoint."""
    with FakeOpenAI(content="Hello! How can I help?") as server:
        yield server


def tool_call_message(arguments: Any, *, call_id: str = "call_1", name: str = "create_order") -> dict[str, Any]:
    """An assistant message calling ``name`` with ``arguments`` (a dict is JSON-encoded, a string sent as is)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}],
    }


def ask(*texts: str, summary: str = "") -> LlmRequest:
    """A request whose conversation is the customer's ``texts``."""
    return LlmRequest(
        summary=summary, messages=tuple(ChatMessage(role="user", content=t) for t in texts), catalog_hint=HINT
    )


async def run(fake: FakeOpenAI, request: LlmRequest, **overrides: Any) -> LlmTurn:
    """:func:`generate` against ``fake``."""
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": SecretStr(fake.api_key),
        "model": "gpt-test",
        "timeout_s": 5.0,
        "catalog": CATALOG,
    }
    options.update(overrides)
    return await generate(request, **options)


async def test_the_request_carries_model_system_prompt_conversation_tool_and_bearer_key(fake: FakeOpenAI) -> None:
    await run(fake, ask("hi", summary="Customer Olena asked about hoodies."))

    (request,) = fake.requests
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    body = request.json()
    assert body["model"] == "gpt-test"
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "Customer Olena asked about hoodies." in system["content"]
    assert (
        "HOODIE-OVS: Oversized hoodie / Худі оверсайз, 1290 UAH; sizes in stock: S (3 left), M (5 left)"
        in (system["content"])
    )
    assert user == {"role": "user", "content": "hi"}
    assert body["tools"] == [CREATE_ORDER_TOOL]
    parameters = body["tools"][0]["function"]["parameters"]
    assert body["tools"][0]["function"]["name"] == "create_order"
    assert set(parameters["required"]) == {"items", "customer_name", "phone", "city"}
    assert set(parameters["properties"]["items"]["items"]["required"]) == {"sku", "size", "quantity"}


async def test_a_plain_answer_is_the_reply_text(fake: FakeOpenAI) -> None:
    assert await run(fake, ask("hi")) == LlmTurn(text="Hello! How can I help?")


async def test_a_tool_call_becomes_a_checked_create_order_call(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message(ORDER, call_id="call_42")

    turn = await run(fake, ask("yes, place it"))

    assert turn.fallback is False and turn.text is None
    assert turn.tool_call == ToolCall(
        id="call_42",
        args=CreateOrderArgs(
            items=(OrderItemArg(sku="HOODIE-OVS", size="M", quantity=2),),
            customer_name="Olena",
            phone="+380671234567",
            city="Lviv",
        ),
    )


async def test_a_product_named_by_its_alias_is_ordered_by_its_sku(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message({**ORDER, "items": [{"sku": "худі", "size": "S", "quantity": 1}]})

    turn = await run(fake, ask("так"))

    assert turn.tool_call is not None
    assert turn.tool_call.args.items == (OrderItemArg(sku="HOODIE-OVS", size="S", quantity=1),)


async def test_arguments_sent_as_an_object_rather_than_text_are_accepted(fake: FakeOpenAI) -> None:
    message = tool_call_message(ORDER)
    message["tool_calls"][0]["function"]["arguments"] = ORDER
    fake.message = message

    turn = await run(fake, ask("yes"))

    assert turn.tool_call is not None and turn.tool_call.args.phone == "+380671234567"


async def test_the_tool_result_is_sent_back_and_the_final_text_is_the_reply(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message(ORDER, call_id="call_7")
    first = await run(fake, ask("yes"))
    assert first.tool_call is not None
    fake.message = None
    fake.content = "Thank you, Olena! Your order #1 is placed: 2580 UAH."
    request = ask("yes")

    final = await run(
        fake,
        request.model_copy(
            update={"messages": (*request.messages, *tool_exchange(first.tool_call, "order 1 created"))}
        ),
    )

    assert final == LlmTurn(text="Thank you, Olena! Your order #1 is placed: 2580 UAH.")
    messages = fake.requests[-1].json()["messages"]
    call, result = messages[-2:]
    assert call["role"] == "assistant" and call["content"] is None
    assert call["tool_calls"][0]["id"] == "call_7"
    assert call["tool_calls"][0]["function"]["name"] == "create_order"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"])["phone"] == "+380671234567"
    assert result == {"role": "tool", "tool_call_id": "call_7", "content": "order 1 created"}


async def test_invalid_tool_json_gets_a_request_to_correct_the_order(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message('{"items": [{"sku": "HOODIE-OVS", ')

    turn = await run(fake, ask("yes"))

    assert turn.fallback is True and turn.tool_call is None
    assert turn.text is not None and "couldn't put your order together" in turn.text


async def test_an_unknown_sku_is_named_in_the_customers_language(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message({**ORDER, "items": [{"sku": "SOCKS-RED", "size": "M", "quantity": 1}]})

    turn = await run(fake, ask("так, оформлюйте"))

    assert turn.fallback is True and turn.tool_call is None
    assert turn.text == (
        "Вибачте, товару «SOCKS-RED» у нас немає. Оберіть, будь ласка, з каталогу й підтвердіть замовлення ще раз."
    )


async def test_an_out_of_stock_size_names_the_sizes_in_stock(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message({**ORDER, "items": [{"sku": "HOODIE-OVS", "size": "L", "quantity": 1}]})

    turn = await run(fake, ask("yes"))

    assert turn.fallback is True and turn.tool_call is None
    assert turn.text == (
        "Sorry, the Oversized hoodie in size L is not available. In stock: S, M, XL. Which size would you like?"
    )


async def test_more_than_in_stock_says_how_many_are_left(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message({**ORDER, "items": [{"sku": "HOODIE-OVS", "size": "S", "quantity": 4}]})

    turn = await run(fake, ask("yes"))

    assert turn.fallback is True
    assert turn.text is not None and "only 3 of the Oversized hoodie in size S left, not 4" in turn.text


async def test_a_bad_phone_asks_for_a_ukrainian_number(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message({**ORDER, "phone": "12345"})

    turn = await run(fake, ask("так"))

    assert turn.fallback is True and turn.tool_call is None
    assert turn.text is not None and "+380XXXXXXXXX" in turn.text and "Номер телефону" in turn.text


async def test_a_call_of_another_tool_is_not_an_order(fake: FakeOpenAI) -> None:
    fake.message = tool_call_message(ORDER, name="delete_everything")

    turn = await run(fake, ask("yes"))

    assert turn.fallback is True and turn.tool_call is None


async def test_an_endpoint_slower_than_the_timeout_gets_an_apology_in_time(fake: FakeOpenAI) -> None:
    fake.delay_s = 1.5
    started = time.monotonic()

    turn = await run(fake, ask("привіт"), timeout_s=0.3)

    assert time.monotonic() - started < 1.0
    assert turn == LlmTurn(
        text="Вибачте, зараз не можу відповісти. Напишіть, будь ласка, ще раз за хвилину.", fallback=True
    )


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_gets_an_apology(fake: FakeOpenAI, status: int) -> None:
    fake.status = status

    turn = await run(fake, ask("hi"))

    assert turn == LlmTurn(text="Sorry, I can't answer right now. Please write to me again in a minute.", fallback=True)


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"choices": []}', b'{"choices": [{"message": {"role": "assistant", "content": ""}}]}'],
    ids=["not-json", "no-choices", "empty-message"],
)
async def test_a_malformed_answer_gets_an_apology(fake: FakeOpenAI, body: bytes) -> None:
    fake.raw_body = body

    turn = await run(fake, ask("hi"))

    assert turn.fallback is True and turn.text is not None and turn.text.startswith("Sorry")


async def test_an_unreachable_endpoint_gets_an_apology() -> None:
    turn = await generate(
        ask("hi"),
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key=SecretStr("sk-x"),
        model="gpt-test",
        timeout_s=2.0,
        catalog=CATALOG,
    )

    assert turn.fallback is True


async def test_a_refused_key_is_a_permanent_llm_key_invalid(fake: FakeOpenAI) -> None:
    with pytest.raises(BadInput) as caught:
        await run(fake, ask("hi"), api_key=SecretStr("sk-wrong"))

    assert caught.value.code == "LLM_KEY_INVALID"
    assert not caught.value.retryable
    assert "sk-wrong" not in caught.value.message


async def test_a_forbidden_key_is_llm_key_invalid(fake: FakeOpenAI) -> None:
    fake.status = 403

    with pytest.raises(BadInput) as caught:
        await run(fake, ask("hi"))

    assert caught.value.code == "LLM_KEY_INVALID"


async def test_a_rate_limit_is_retried_after_the_endpoints_retry_after(fake: FakeOpenAI) -> None:
    fake.status = 429
    fake.headers = {"Retry-After": "7"}

    with pytest.raises(RateLimited) as caught:
        await run(fake, ask("hi"))

    assert caught.value.retry_after == timedelta(seconds=7)
    assert caught.value.retryable


async def test_a_rate_limit_without_retry_after_waits_the_seeds_default_delay(fake: FakeOpenAI) -> None:
    fake.status = 429

    with pytest.raises(RateLimited) as caught:
        await run(fake, ask("hi"))

    assert caught.value.retry_after == timedelta(seconds=60)


def test_a_turn_is_either_a_text_or_a_tool_call() -> None:
    call = ToolCall(id="c", args=CreateOrderArgs.model_validate({**ORDER, "phone": "+380671234567"}))
    with pytest.raises(ValidationError):
        LlmTurn()
    with pytest.raises(ValidationError):
        LlmTurn(text="hi", tool_call=call)
    with pytest.raises(ValidationError):
        LlmTurn(tool_call=call, fallback=True)


def test_a_tool_message_must_answer_a_call() -> None:
    with pytest.raises(ValidationError):
        ChatMessage(role="tool", content="done")
    with pytest.raises(ValidationError):
        ChatMessage(role="user", content="hi", tool_call_id="c")


def test_checked_arguments_price_into_an_order_draft() -> None:
    args = CreateOrderArgs(
        items=(
            OrderItemArg(sku="HOODIE-OVS", size="M", quantity=2),
            OrderItemArg(sku="TEE-BASIC", size="S", quantity=1),
        ),
        customer_name="Olena",
        phone="+380671234567",
        city="Lviv",
    )

    draft = price_order(args, CATALOG, number=3)

    assert draft.number == 3
    assert [(item.sku, item.price) for item in draft.items] == [("HOODIE-OVS", 1290), ("TEE-BASIC", 490)]
    assert draft.total == 2 * 1290 + 490
