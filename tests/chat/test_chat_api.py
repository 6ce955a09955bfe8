"""The chat pipeline through its HTTP API on a real stack: the Telegram and ManyChat webhooks, the dispatcher, the
conversations and orders of each tenant, the faults of the outside services, and health.

Two stacks, each on a dev server of its own (so no other stack's chat workers take their tasks), with the chat queues'
workers and the API, every outside service a fake on 127.0.0.1:

- ``local``: the deterministic shop assistant, replies to Telegram and ManyChat, an outside CRM (``FakeCrm``);
- ``model``: an OpenAI-compatible model (``FakeOpenAI``, scripted per message), the built-in CRM (``/api/orders``) and a
  one-second synchronous ManyChat answer.

Nothing here waits a fixed time for something not to happen: "nothing more was sent" is checked after a later message
of the same chat was answered (a chat's messages are answered one at a time, in order).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import pytest
from temporalio.client import WorkflowHistory

from activities.chat import contract
from activities.chat.manychat import HOLDING_TEXT
from activities.chat.schemas import HealthReport, IncomingMessage
from api.services import chat as service
from conveyor.errors import RateLimited
from conveyor.settings import Settings
from conveyor.temporal import free_port
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.chat_stack import (
    ChatStack,
    TimedTelegram,
    chat_fakes,
    chat_settings,
    fresh_id,
    post_manychat,
    post_update,
    run_chat_stack,
    text_update,
    workflow_exists,
)
from tests.helpers.fakes import FakeOpenAI
from tests.helpers.stack import serve_api

pytestmark = pytest.mark.stack

T = TypeVar("T")

#: Generous bounds for outcomes on two busy cores (nothing asserts how fast they come).
WITHIN_S = 90.0

#: The model's scripted behaviour, by what the customer wrote: this asks it to order, this makes it slow.
ORDER_ASK = "Yes, place the order please"
SLOW_MARK = "(take your time)"
SLOW_MODEL_S = 4.0
#: The ``create_order`` call the model makes, and its final text once it has the tool's result.
MODEL_ORDER = {
    "items": [{"sku": "HOODIE-OVS", "size": "m", "quantity": 2}],
    "customer_name": "Olena Petrenko",
    "phone": "067 123 45 67",
    "city": "Kyiv",
}
MODEL_FINAL = "Thank you, Olena! Your order #1 (2 oversized hoodies, M) is placed: 2580 UAH."


def model_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The fake model: the final text once it has a tool result; ``create_order`` when asked to order; else an echo
    of the customer's message (after :data:`SLOW_MODEL_S` when it carries :data:`SLOW_MARK`)."""
    messages = body["messages"]
    if any(message["role"] == "tool" for message in messages):
        return {"role": "assistant", "content": MODEL_FINAL}
    said = next(message["content"] for message in reversed(messages) if message["role"] == "user")
    if ORDER_ASK in said:
        function = {"name": "create_order", "arguments": json.dumps(MODEL_ORDER)}
        call = {"id": "call_1", "type": "function", "function": function}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if SLOW_MARK in said:
        time.sleep(SLOW_MODEL_S)
    return {"role": "assistant", "content": f"echo: {said}"}


@pytest.fixture(scope="module")
async def local(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """The local assistant's stack, replies to Telegram and ManyChat, orders to an outside CRM."""
    server = await start_dev_server()
    try:
        with chat_fakes(crm=True) as fakes:
            settings = chat_settings(
                tmp_path_factory.mktemp("var"),
                server.client.service_client.config.target_host,
                fakes,
                chat_summary_every=200,  # no continue-as-new in the middle of the ordering test's history
                chat_sync_timeout_s=60,  # ManyChat's answers here are always the synchronous ones
                health_cache_ttl_s=0.0,
            )
            async with run_chat_stack(server.client, settings, fakes) as stack:
                yield stack
    finally:
        await server.shutdown()


@pytest.fixture(scope="module")
async def model(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ChatStack]:
    """The model's stack: a scripted OpenAI-compatible model, the built-in CRM, a one-second ManyChat answer."""
    server = await start_dev_server()
    try:
        with chat_fakes(model=FakeOpenAI(message=model_answer)) as fakes:
            settings = chat_settings(
                tmp_path_factory.mktemp("var"),
                server.client.service_client.config.target_host,
                fakes,
                chat_sync_timeout_s=1.0,
            )
            async with run_chat_stack(server.client, settings, fakes) as stack:
                yield stack
    finally:
        await server.shutdown()


async def eventually(check: Callable[[], Awaitable[T]]) -> T:
    """``check``'s value once it stops failing (within :data:`WITHIN_S`)."""
    return await assert_eventually(check, within_s=WITHIN_S, interval=0.1)


async def replies_to(telegram: TimedTelegram, chat_id: int, count: int) -> list[tuple[int | None, str]]:
    """The chat's messages at the fake Bot API once there are ``count`` of them (and no more so far)."""

    async def arrived() -> list[tuple[int | None, str]]:
        sent = telegram.sent_to(chat_id)
        assert len(sent) >= count, sent
        return sent

    sent = await eventually(arrived)
    assert len(sent) == count, sent
    return sent


def telegram_id(chat_id: int) -> str:
    return contract.conversation_workflow_id("telegram", chat_id)


async def signalled_messages(history: WorkflowHistory, client_converter: Any) -> list[IncomingMessage]:
    """The messages a conversation's history accepted through the ``queue_message`` signal, in acceptance order."""
    messages = []
    for event in history.events:
        if event.HasField("workflow_execution_signaled_event_attributes"):
            signalled = event.workflow_execution_signaled_event_attributes
            if signalled.signal_name == contract.MESSAGE_SIGNAL:
                [message] = await client_converter.decode(signalled.input.payloads, [IncomingMessage])
                messages.append(message)
    return messages


# --- the Telegram webhook -------------------------------------------------------------------------------------------


async def test_a_wrong_or_missing_telegram_secret_is_401_and_starts_nothing(local: ChatStack) -> None:
    chat = fresh_id()
    update = text_update(chat, 1, "Hello!")
    wrong = await post_update(local.hooks, update, secret="not-the-secret")
    missing = await post_update(local.hooks, update, secret=None)
    for answer in (wrong, missing):
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "TELEGRAM_SECRET_INVALID"
    assert not await workflow_exists(local.client, telegram_id(chat))


async def test_updates_no_telegram_client_could_send_are_400_naming_the_problem(local: ChatStack) -> None:
    chat = fresh_id()
    malformed = await post_update(local.hooks, b'{"update_id": 1, "message": {')
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "MALFORMED_JSON"
    unknown = await post_update(local.hooks, text_update(chat, 1, "Hello!", chat_type="secret"))
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "UNKNOWN_CHAT_TYPE"
    assert "'secret'" in unknown.json()["error"]["message"]
    empty = await post_update(local.hooks, text_update(chat, 2, "  \n "))
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "EMPTY_TEXT"
    assert "no text" in empty.json()["error"]["message"]
    too_long = await post_update(local.hooks, text_update(chat, 3, "a" * 4097))
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "TEXT_TOO_LONG"
    assert "4097" in too_long.json()["error"]["message"] and "4096" in too_long.json()["error"]["message"]
    assert not await workflow_exists(local.client, telegram_id(chat))
    longest = await post_update(local.hooks, text_update(chat, 4, "a" * 4096))  # Telegram's limit itself is fine
    assert longest.status_code == 200, longest.text
    [(reply_to, _)] = await replies_to(local.telegram, chat, 1)
    assert reply_to == 4


async def test_edits_joins_and_stickers_are_accepted_and_ignored(local: ChatStack) -> None:
    chat = fresh_id()
    base = text_update(chat, 1, "Hello!")["message"]
    edit = {"update_id": fresh_id(), "edited_message": {**base, "edit_date": 1_767_225_700}}
    join = {"update_id": fresh_id(), "message": {**base, "text": None, "new_chat_members": [base["from"]]}}
    sticker = {
        "update_id": fresh_id(),
        "message": {**base, "text": None, "sticker": {"file_id": "CAAC", "emoji": "👍"}},
    }
    reasons = []
    for update in (edit, join, sticker):
        answer = await post_update(local.hooks, update)
        assert answer.status_code == 200, answer.text
        assert answer.json()["workflow_id"] is None
        reasons.append(answer.json()["ignored"])
    assert reasons == ["edited message", "chat members changed", "not a text message"]
    assert not await workflow_exists(local.client, telegram_id(chat))  # nothing started, so nothing is sent


async def test_a_text_message_gets_one_reply_to_it_and_a_byte_identical_redelivery_gets_none(local: ChatStack) -> None:
    chat = fresh_id()
    delivery = json.dumps(text_update(chat, 501, "how much is the hoodie?")).encode()
    first = await post_update(local.hooks, delivery)
    assert first.status_code == 200, first.text
    assert first.json() == {"ok": True, "workflow_id": telegram_id(chat), "ignored": None}
    [(reply_to, text)] = await replies_to(local.telegram, chat, 1)
    assert reply_to == 501 and "1,290 UAH" in text
    again = await post_update(local.hooks, delivery)  # Telegram repeats an update it thinks was lost
    assert again.status_code == 200 and again.json()["workflow_id"] == telegram_id(chat)
    await post_update(local.hooks, text_update(chat, 502, "Hello!"))  # answered after the redelivery was handled
    sent = await replies_to(local.telegram, chat, 2)
    assert [reply_to for reply_to, _ in sent] == [501, 502]


async def test_twenty_concurrent_updates_to_one_chat_are_answered_one_by_one_in_acceptance_order(
    local: ChatStack,
) -> None:
    chat = fresh_id()
    ids = list(range(1, 21))
    updates = [text_update(chat, i, f"how much is the hoodie? ({i})") for i in ids]
    answers = await asyncio.gather(*(post_update(local.hooks, u) for u in updates))
    assert {a.status_code for a in answers} == {200}
    sent = await replies_to(local.telegram, chat, 20)
    history = await local.client.get_workflow_handle(telegram_id(chat)).fetch_history()
    accepted = [m.message_id or 0 for m in await signalled_messages(history, local.client.data_converter)]
    assert sorted(accepted) == ids  # each update was accepted once
    assert [reply_to for reply_to, _ in sent] == accepted  # replies went out in the order the updates were accepted


async def test_five_chats_in_parallel_are_all_answered(local: ChatStack) -> None:
    chats = [fresh_id() for _ in range(5)]
    updates = [text_update(chat, i, "how much is the hoodie?") for chat in chats for i in (1, 2, 3)]
    answers = await asyncio.gather(*(post_update(local.hooks, u) for u in updates))
    assert {a.status_code for a in answers} == {200}
    for chat in chats:
        sent = await replies_to(local.telegram, chat, 3)
        assert sorted(reply_to or 0 for reply_to, _ in sent) == [1, 2, 3]


# --- the ManyChat webhook -------------------------------------------------------------------------------------------


async def test_a_wrong_manychat_bearer_is_401_and_starts_nothing(local: ChatStack) -> None:
    subscriber = fresh_id()
    answer = await post_manychat(local.hooks, subscriber, 1, "Hello!", secret="not-the-secret")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "MANYCHAT_SECRET_INVALID"
    assert not await workflow_exists(local.client, contract.conversation_workflow_id("manychat", subscriber))


async def test_a_manychat_message_is_answered_with_a_dynamic_block_and_its_redelivery_with_the_same(
    local: ChatStack,
) -> None:
    subscriber = fresh_id()
    answer = await post_manychat(local.hooks, subscriber, 77, "how much is the hoodie?")
    assert answer.status_code == 200, answer.text
    block = answer.json()
    assert block["version"] == "v2" and block["content"]["type"] == "telegram"
    messages = block["content"]["messages"]
    assert 1 <= len(messages) <= 10 and all(m["type"] == "text" for m in messages)
    assert "1,290 UAH" in " ".join(m["text"] for m in messages)
    again = await post_manychat(local.hooks, subscriber, 77, "how much is the hoodie?")
    assert again.status_code == 200 and again.json() == block
    workflow_id = contract.conversation_workflow_id("manychat", subscriber)
    shown = (await local.owner.get(f"/api/chat/conversations/{workflow_id}")).json()
    assert shown["state"]["messages_seen"] == 1  # the redelivery was not processed again
    assert local.fakes.manychat.sent == []  # both answers were synchronous: nothing went through the sending API


# --- the dispatcher, conversations and tenants ---------------------------------------------------------------------


async def test_the_dispatcher_answers_or_queues_and_a_repeated_message_id_gets_the_first_reply(
    local: ChatStack,
) -> None:
    user_id, http = await local.tenant()
    chat = f"shop-{fresh_id()}"
    workflow_id = contract.conversation_workflow_id("api", service.api_chat_id(user_id, chat))
    order = {"chat_id": chat, "text": "I want 2 hoodies size M", "message_id": "m1"}
    answer = await http.post("/api/chat/messages", json=order)
    assert answer.status_code == 200, answer.text
    first = answer.json()
    assert (first["queued"], first["duplicate"], first["workflow_id"]) == (False, False, workflow_id)
    assert "Oversized hoodie, size M × 2" in first["reply"] and first["trace_id"]
    repeat = (await http.post("/api/chat/messages", json=order)).json()
    assert (repeat["reply"], repeat["trace_id"], repeat["duplicate"]) == (first["reply"], first["trace_id"], True)
    queued = await http.post("/api/chat/messages", json={"chat_id": chat, "text": "Olena", "wait": False})
    assert queued.status_code == 202, queued.text
    assert queued.json()["queued"] is True and queued.json()["workflow_id"] == workflow_id
    assert queued.json()["trace_id"] not in (None, first["trace_id"])

    async def both_processed() -> dict[str, Any]:
        shown: dict[str, Any] = (await http.get(f"/api/chat/conversations/{workflow_id}")).json()
        assert shown["state"]["messages_seen"] == 2, shown
        return shown

    shown = await eventually(both_processed)
    assert shown["channel"] == "api" and shown["chat_id"] == chat
    assert shown["state"]["cart"] == [{"sku": "HOODIE-OVS", "size": "M", "quantity": 2}]
    assert shown["state"]["recent"][0] == "customer: I want 2 hoodies size M"
    assert "customer: Olena" in shown["state"]["recent"]
    assert shown["orders"] == [] and shown["state"]["orders"] == []
    listed = (await http.get("/api/chat/conversations")).json()
    assert [c["workflow_id"] for c in listed["items"]] == [workflow_id]

    _, other = await local.tenant()
    hidden = await other.get(f"/api/chat/conversations/{workflow_id}")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "CONVERSATION_NOT_FOUND"
    assert (await other.get("/api/chat/conversations")).json()["items"] == []


async def test_a_user_without_credits_is_refused_402_and_nothing_starts(local: ChatStack) -> None:
    user_id, http = await local.tenant(credits=0)
    answer = await http.post("/api/chat/messages", json={"chat_id": "broke", "text": "Hello!"})
    assert answer.status_code == 402, answer.text
    assert answer.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    workflow_id = contract.conversation_workflow_id("api", service.api_chat_id(user_id, "broke"))
    assert not await workflow_exists(local.client, workflow_id)


async def test_messages_past_the_per_minute_limit_are_429_with_retry_after(local: ChatStack) -> None:
    settings = local.stack.settings.model_copy(update={"chat_messages_per_minute": 3, "api_port": free_port()})
    _, key = await local.stack.new_user()
    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}) as http:
        message = {"chat_id": "busy", "text": "Hello!", "wait": False}
        for _ in range(3):
            assert (await http.post("/api/chat/messages", json=message)).status_code == 202
        refused = await http.post("/api/chat/messages", json=message)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "CHAT_RATE_LIMITED" and "3 messages a minute" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 20  # a token comes back every 20 s


def test_the_message_rate_is_a_bucket_a_minute_deep_per_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(service, "time", SimpleNamespace(monotonic=lambda: clock.now))
    limits = service.Limits(Settings(chat_messages_per_minute=2))
    limits.take_message(1)
    limits.take_message(1)
    with pytest.raises(RateLimited) as refused:
        limits.take_message(1)
    assert refused.value.code == "CHAT_RATE_LIMITED" and refused.value.details == {"per_minute": 2}
    assert refused.value.retry_after is not None and refused.value.retry_after.total_seconds() == 30
    limits.take_message(2)  # another owner has a bucket of its own
    clock.now += 30  # half a minute: one message's worth back
    limits.take_message(1)
    with pytest.raises(RateLimited):
        limits.take_message(1)


def test_replies_awaited_at_once_are_capped_per_owner() -> None:
    limits = service.Limits(Settings(chat_max_waiting_replies=2))
    limits.start_wait(1)
    limits.start_wait(1)
    with pytest.raises(RateLimited) as refused:
        limits.start_wait(1)
    assert refused.value.code == "TOO_MANY_WAITING_REPLIES"
    limits.start_wait(2)
    limits.end_wait(1)
    limits.start_wait(1)  # one reply came: room for another


# --- outside services failing ---------------------------------------------------------------------------------------


async def test_telegrams_429_is_waited_out_then_the_reply_is_sent_once(local: ChatStack) -> None:
    chat = fresh_id()
    local.telegram.rate_limit_next(retry_after=4)  # longer than the reply step's own first retry delay (2 s)
    await post_update(local.hooks, text_update(chat, 1, "how much is the hoodie?"))
    [(reply_to, _)] = await replies_to(local.telegram, chat, 1)
    assert reply_to == 1
    [(refused_at, _), (sent_at, _)] = local.telegram.sends_to(chat)  # one refused, then one accepted
    assert sent_at - refused_at >= 3.5  # it waited for what Telegram asked


async def test_chat_not_found_is_recorded_on_the_conversation_and_not_retried(local: ChatStack) -> None:
    chat = fresh_id()
    local.telegram.forget_chat(str(chat))
    answer = await post_update(local.hooks, text_update(chat, 1, "Hello!"))
    assert answer.status_code == 200

    async def recorded() -> dict[str, Any]:
        shown: dict[str, Any] = (await local.owner.get(f"/api/chat/conversations/{telegram_id(chat)}")).json()
        assert shown["state"]["delivery_error"], shown
        return shown

    shown = await eventually(recorded)
    assert "chat not found" in shown["state"]["delivery_error"]
    assert len(local.telegram.sends_to(chat)) == 1  # refused for good: the send step was not tried again
    assert local.telegram.sent_to(chat) == []


async def test_an_order_made_while_the_crm_is_down_is_pending_then_placed_once(local: ChatStack) -> None:
    assert local.fakes.crm is not None
    chat = fresh_id()
    local.fakes.crm.fail_next(2)  # the order's first try and its retry: the customer is told it is pending
    script = ["Hello!", "I want 2 hoodies size M", "Olena Petrenko", "+380671234567", "Kyiv", "yes"]
    for message_id, text in enumerate(script, start=1):
        assert (await post_update(local.hooks, text_update(chat, message_id, text))).status_code == 200
    sent = await replies_to(local.telegram, chat, len(script) + 1)  # each message's reply, then "placed"
    assert [reply_to for reply_to, _ in sent] == [*range(1, len(script) + 1), None]
    assert contract.pending_order_text("en") in sent[-2][1]
    assert sent[-1][1] == contract.order_placed_text("en", 1)
    key = contract.order_idempotency_key(telegram_id(chat), 1)
    orders = [o for o in local.fakes.crm.orders.values() if o["conversation_id"] == telegram_id(chat)]
    assert [o["idempotency_key"] for o in orders] == [key]
    tries = [r for r in local.fakes.crm.requests if r.headers.get("idempotency-key") == key]
    assert len(tries) == 3  # two refused, one placed: all under the one key

    shown = (await local.owner.get(f"/api/chat/conversations/{telegram_id(chat)}")).json()
    assert shown["state"]["orders"] == [orders[0]["id"]] and shown["state"]["stage"] == "ordered"


# --- health ---------------------------------------------------------------------------------------------------------


async def test_health_shows_the_chat_workers_checks_after_a_health_run(local: ChatStack) -> None:
    reports = await local.client.execute_workflow(
        contract.HEALTH_WORKFLOW,
        contract.HealthRun(source="test"),
        id=f"chat-health-test-{fresh_id()}",
        task_queue=contract.DEFAULT_QUEUE,
        result_type=list[HealthReport],
    )
    assert {r.name: r.ok for r in reports} == {
        "chat.temporal": True,
        "chat.database": True,
        "chat.telegram": True,
        "chat.manychat": True,
    }
    _, key = await local.stack.new_user(admin=True)
    async with local.stack.http(key) as admin:
        health = (await admin.get("/api/health")).json()
    assert {name: check["ok"] for name, check in health["workers"].items() if name.startswith("chat.")} == {
        "chat.temporal": True,
        "chat.database": True,
        "chat.telegram": True,
        "chat.manychat": True,
    }
    assert all(health["queues"][queue]["ok"] for queue in contract.QUEUES)  # this stack serves only chat's queues


# --- the model path -------------------------------------------------------------------------------------------------


async def test_the_models_order_through_the_webhook_is_one_order_and_one_message_with_its_final_text(
    model: ChatStack,
) -> None:
    chat = fresh_id()
    assert (await post_update(model.hooks, text_update(chat, 9, ORDER_ASK))).status_code == 200
    [(reply_to, text)] = await replies_to(model.telegram, chat, 1)
    assert (reply_to, text) == (9, MODEL_FINAL)
    orders = (await model.owner.get("/api/orders", params={"conversation_id": telegram_id(chat)})).json()
    assert orders["total"] == 1
    [order] = orders["items"]
    assert (order["number"], order["total"], order["phone"], order["city"]) == (1, 2580, "+380671234567", "Kyiv")
    assert order["items"] == [{"sku": "HOODIE-OVS", "size": "M", "quantity": 2, "price": 1290}]
    await post_update(model.hooks, text_update(chat, 10, "thanks"))  # answered after everything of the order
    sent = await replies_to(model.telegram, chat, 2)
    assert sent[1] == (10, "echo: thanks")
    again = (await model.owner.get("/api/orders", params={"conversation_id": telegram_id(chat)})).json()
    assert again["total"] == 1


async def test_a_scripted_order_conversation_shows_one_order_to_its_owner_only(model: ChatStack) -> None:
    user_id, http = await model.tenant()
    chat = f"order-{fresh_id()}"
    workflow_id = contract.conversation_workflow_id("api", service.api_chat_id(user_id, chat))
    hello = (await http.post("/api/chat/messages", json={"chat_id": chat, "text": "Hello!"})).json()
    assert hello["reply"] == "echo: Hello!" and hello["order_number"] is None
    ordered = (await http.post("/api/chat/messages", json={"chat_id": chat, "text": ORDER_ASK})).json()
    assert (ordered["reply"], ordered["order_number"]) == (MODEL_FINAL, 1)

    orders = (await http.get("/api/orders")).json()
    assert orders["total"] == 1
    [order] = orders["items"]
    assert (order["conversation_id"], order["number"], order["customer_name"]) == (workflow_id, 1, "Olena Petrenko")
    shown = (await http.get(f"/api/chat/conversations/{workflow_id}")).json()
    assert [o["id"] for o in shown["orders"]] == [order["id"]]
    assert shown["state"]["orders"] == [str(order["id"])] and shown["state"]["stage"] == "ordered"

    _, other = await model.tenant()
    assert (await other.get("/api/orders")).json()["total"] == 0
    assert (await other.get("/api/orders", params={"conversation_id": workflow_id})).json()["items"] == []
    assert (await other.get(f"/api/chat/conversations/{workflow_id}")).status_code == 404


async def test_a_slow_reply_gets_manychats_holding_block_then_goes_out_once_through_the_sending_api(
    model: ChatStack,
) -> None:
    manychat = model.fakes.manychat
    subscriber = fresh_id()
    text = f"Do you have the hoodie in M? {SLOW_MARK}"
    answer = await post_manychat(model.hooks, subscriber, 5, text)
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"]["messages"] == [{"type": "text", "text": HOLDING_TEXT}]

    async def sent_late() -> list[list[str]]:
        texts = [c.texts for c in manychat.sent if str(c.subscriber_id) == str(subscriber)]
        assert texts, texts
        return texts

    assert await eventually(sent_late) == [[f"echo: {text}"]]
    again = await post_manychat(model.hooks, subscriber, 5, text)  # ManyChat repeats the request
    assert again.status_code == 200
    assert again.json()["content"]["messages"][0]["text"] in (f"echo: {text}", HOLDING_TEXT)
    # a later message of the subscriber is answered after the repeat was handled (its own answer may come either way)
    later = await post_manychat(model.hooks, subscriber, 6, "thanks")
    if later.json()["content"]["messages"][0]["text"] == HOLDING_TEXT:
        await eventually(lambda: _has_sent(model, subscriber, "echo: thanks"))
    texts = [c.texts for c in manychat.sent if str(c.subscriber_id) == str(subscriber)]
    assert texts.count([f"echo: {text}"]) == 1  # the slow reply went out once


async def _has_sent(stack: ChatStack, subscriber: int, text: str) -> None:
    assert [text] in [c.texts for c in stack.fakes.manychat.sent if str(c.subscriber_id) == str(subscriber)]
