"""ConversationWorkflow on the time-skipping server with the real activities against the local fakes (Telegram,
ManyChat, an OpenAI-compatible model and an outside CRM on 127.0.0.1): order of processing, dedupe across
continue-as-new, follow-ups, summaries, the model's order tool loop, fallbacks, delivery faults and retries, late
ManyChat replies, and an order that waits out a CRM outage without being duplicated.

The activity workers carry the deployed workers' :class:`~workers.interceptors.ConveyorInterceptor`, so Conveyor's
errors reach Temporal as they do in production (permanent ones non-retryable, rate limits with their delay).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.chat import contract
from activities.chat.activities import ChatActivities, ModelEndpoint, chat_activities
from activities.chat.catalog import load_catalog
from activities.chat.crm import CrmClient
from activities.chat.manychat import ManyChatClient
from activities.chat.models import ChatOrder
from activities.chat.schemas import ConversationInput, ConversationView, IncomingMessage, Reply
from activities.chat.telegram import TelegramClient
from conveyor.auth import create_user
from conveyor.models import CreditLedgerEntry
from conveyor.outbound import OutboundClient
from tests.helpers import DATA_CONVERTER, assert_eventually, make_worker, register_search_attributes, test_server_path
from tests.helpers.fakes import FakeCrm, FakeManyChat, FakeOpenAI, FakeTelegram
from workers.interceptors import ConveyorInterceptor
from workflows.chat import ConversationWorkflow

ORDER_SCRIPT = ["Hello!", "I want 2 hoodies size M", "Olena Petrenko", "+380671234567", "Kyiv", "yes"]
#: What the model orders through its ``create_order`` tool (as a model writes it: a lower-case size, a local phone).
MODEL_ORDER = {
    "items": [{"sku": "HOODIE-OVS", "size": "m", "quantity": 2}],
    "customer_name": "Olena Petrenko",
    "phone": "067 123 45 67",
    "city": "Kyiv",
}
#: The order as the tool's checked arguments: the catalog's spelling, the +380 phone.
CHECKED_ORDER = {
    "items": [{"sku": "HOODIE-OVS", "size": "M", "quantity": 2}],
    "customer_name": "Olena Petrenko",
    "phone": "+380671234567",
    "city": "Kyiv",
}
C = TypeVar("C", bound=OutboundClient)

MODEL_FINAL = "Thank you, Olena! Your order #1 (2 oversized hoodies, M) is placed: 2580 UAH."


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this file's own: its follow-up and summary timers skip hours."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=DATA_CONVERTER
    )
    await register_search_attributes(environment.client)
    yield environment
    await environment.shutdown()


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    with FakeCrm() as fake:
        yield fake


@pytest.fixture
def manychat() -> Iterator[FakeManyChat]:
    with FakeManyChat() as fake:
        yield fake


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(content="Hello! What would you like to order?") as fake:
        yield fake


def endpoint(fake: FakeOpenAI, timeout_s: float = 10.0) -> ModelEndpoint:
    """The model path's endpoint: ``fake``, answering within ``timeout_s``."""
    return ModelEndpoint(fake.base_url, SecretStr(fake.api_key), "gpt-test", timeout_s)


def tool_call_message(arguments: Any, *, call_id: str = "call_1") -> dict[str, Any]:
    """An assistant message calling ``create_order`` with ``arguments`` (a dict JSON-encoded, a string as is)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "create_order", "arguments": text}}],
    }


def ordering_model(final: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A model that calls ``create_order`` with :data:`MODEL_ORDER`, then answers ``final`` once it has the tool's
    result (``None``: it calls the tool again instead)."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        if final is not None and any(message["role"] == "tool" for message in body["messages"]):
            return {"role": "assistant", "content": final}
        return tool_call_message(MODEL_ORDER)

    return answer


async def start(
    client: Client, queue: str, *, channel: str = "telegram", owner: int = 1, **options: Any
) -> WorkflowHandle[Any, Any]:
    chat_id = str(uuid.uuid4().int % 10**9)
    return await client.start_workflow(
        ConversationWorkflow.run,
        ConversationInput(channel=channel, chat_id=chat_id, owner=owner, **options),
        id=contract.conversation_workflow_id(channel, chat_id),
        task_queue=queue,
    )


async def say(handle: WorkflowHandle[Any, Any], key: str, text: str, message_id: int | None = None) -> Reply:
    reply: Reply = await handle.execute_update(
        contract.MESSAGE_UPDATE, IncomingMessage(key=key, text=text, message_id=message_id), result_type=Reply
    )
    return reply


async def view(handle: WorkflowHandle[Any, Any]) -> ConversationView:
    found: ConversationView = await handle.query(contract.CONVERSATION_QUERY, result_type=ConversationView)
    return found


class ChatWorkers:
    """The conversation's worker on a queue of its own, and the real activities on every chat queue (as deployed),
    their outside services being the fakes given (one client each, closed with the workers)."""

    def __init__(
        self,
        client: Client,
        *,
        telegram: FakeTelegram | None = None,
        manychat: FakeManyChat | None = None,
        crm: FakeCrm | None = None,
        model: ModelEndpoint | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._clients: list[OutboundClient] = []
        acts = ChatActivities(
            load_catalog(),
            sessions=sessions,
            model=model,
            telegram=self._shared(TelegramClient(telegram.token, api_url=telegram.url) if telegram else None),
            manychat=self._shared(ManyChatClient(manychat.api_token, api_url=manychat.url) if manychat else None),
            crm=self._shared(CrmClient(crm.url, api_key=crm.api_key) if crm else None),
        )
        self.task_queue = f"chat-{uuid.uuid4().hex[:8]}"
        self._workers = [make_worker(client, [ConversationWorkflow], task_queue=self.task_queue)]
        self._workers += [
            make_worker(
                client, [], chat_activities(acts, queue), task_queue=queue, interceptors=[ConveyorInterceptor()]
            )
            for queue in contract.QUEUES
        ]
        self._stack = AsyncExitStack()

    def _shared(self, made: C | None) -> Callable[[], C | None]:
        """The activities' factory of one client (``None``: the service is not configured)."""
        if made is not None:
            self._clients.append(made)
        return lambda: made

    async def __aenter__(self) -> ChatWorkers:
        for made in self._clients:
            self._stack.push_async_callback(made.aclose)
        for worker in self._workers:
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


@pytest.fixture
async def chat_worker(client: Client, telegram: FakeTelegram, crm: FakeCrm) -> ChatWorkers:
    """Workers for the conversation and all its activities (the local assistant), Telegram and the CRM being fakes."""
    return ChatWorkers(client, telegram=telegram, crm=crm)


def sends(telegram: FakeTelegram) -> int:
    """How many ``sendMessage`` calls reached the fake Bot API (refused ones included)."""
    return sum(request.path.endswith("/sendMessage") for request in telegram.requests)


def activity_starts(history: WorkflowHistory, activity_type: str) -> list[HistoryEvent]:
    """The ``ActivityTaskStarted`` events of ``activity_type``'s calls (each carries its last attempt's number)."""
    scheduled = {
        event.event_id
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return [
        event
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def test_a_conversation_takes_an_order_replying_to_each_message_once(
    client: Client, chat_worker: Any, telegram: FakeTelegram, crm: FakeCrm
) -> None:
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue)
        replies = [await say(handle, f"m{i}", text, message_id=i) for i, text in enumerate(ORDER_SCRIPT)]
        again = await say(handle, "m5", "yes", message_id=5)  # Telegram redelivers the confirmation
        seen = await view(handle)
        await handle.terminate("test over")

    assert replies[-1].order_number == 1 and "#1" in replies[-1].text or "1" in replies[-1].text
    assert again.duplicate and again.text == replies[-1].text
    assert [m.text for m in telegram.sent] == [r.text for r in replies]  # one send per message, none for the repeat
    assert [m.reply_to for m in telegram.sent] == list(range(len(ORDER_SCRIPT)))
    [order] = crm.orders.values()
    assert order["items"][0]["sku"] and order["customer"]["phone"] == "+380671234567"
    assert (seen.stage, seen.orders_placed, seen.messages_seen) == ("ordered", 1, len(ORDER_SCRIPT))


async def test_concurrent_messages_to_one_chat_are_processed_one_at_a_time_in_arrival_order(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    async with chat_worker:
        # no summary in this test: the twentieth message would otherwise continue the conversation as new while the
        # query below runs, and the time-skipping server answers a query that lands between two runs with a deadline
        handle = await start(client, chat_worker.task_queue, summary_every=100)
        texts = [f"how much is the hoodie? ({i})" for i in range(20)]
        await asyncio.gather(*(say(handle, f"c{i}", t) for i, t in enumerate(texts)))
        seen = await view(handle)
        history = await handle.fetch_history()
        await handle.terminate("test over")

    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(accepted) == 20
    customer_lines = [line.removeprefix("customer: ") for line in seen.recent if line.startswith("customer: ")]
    assert sorted(customer_lines) == sorted(texts) and len(telegram.sent) == 20
    # processed strictly one after another: each reply was sent before the next message was read, in the order the
    # server accepted the updates (the history's order), which the conversation's transcript follows
    decoded = [await DATA_CONVERTER.decode(p, [IncomingMessage]) for p in accepted]
    assert customer_lines == [d[0].text for d in decoded]


async def test_dedupe_and_the_cart_survive_a_summary_and_continue_as_new(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue, summary_every=3)
        first = await say(handle, "s0", "I want 2 hoodies size M")
        await say(handle, "s1", "how much is the jacket?")
        await say(handle, "s2", "what sizes does the t-shirt have?")  # the third message: summary, continue as new

        async def continued() -> bool:
            return (await handle.describe()).run_id != handle.first_execution_run_id

        for _ in range(100):
            if await continued():
                break
            await asyncio.sleep(0.05)
        repeat = await say(handle, "s0", "I want 2 hoodies size M")
        seen = await view(handle)
        await handle.terminate("test over")

    assert await _first_run_status(client, handle) == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert repeat.duplicate and repeat.text == first.text  # the key and its reply travelled with the conversation
    assert seen.cart and seen.cart[0]["quantity"] == 2 and "hoodie" in seen.summary.lower()
    assert len(telegram.sent) == 3


async def _first_run_status(client: Client, handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    return (await first.describe()).status


async def test_an_unfinished_cart_gets_one_follow_up_after_the_idle_time(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    async with chat_worker:  # a one-second follow-up timer, in real time (durable like any Temporal timer)
        handle = await start(client, chat_worker.task_queue, followup_after_s=1.0, followup_max=1)
        await say(handle, "f0", "I want 2 hoodies size M")
        for _ in range(300):
            if len(telegram.sent) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.5)  # two more idle periods' worth: still only one follow-up
        seen = await view(handle)
        await handle.terminate("test over")

    assert seen.followups_sent == 1
    assert [m.text for m in telegram.sent] == [telegram.sent[0].text, contract.followup_text("en")]


async def test_an_order_waits_out_a_crm_outage_and_is_placed_once(
    client: Client, chat_worker: Any, telegram: FakeTelegram, crm: FakeCrm
) -> None:
    crm.fail_next(3)  # the first try and its retry fail (the customer is told it is pending), then one retry more
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue)
        replies = [await say(handle, f"o{i}", text) for i, text in enumerate(ORDER_SCRIPT)]

        async def placed() -> ConversationView:
            assert telegram.sent[-1].text == contract.order_placed_text("en", 1)
            return await view(handle)

        seen = await assert_eventually(placed, within_s=60)
        await handle.terminate("test over")

    assert contract.pending_order_text("en") in replies[-1].text
    [(key, order)] = crm.orders.items()  # retried under one idempotency key: one order
    assert key == contract.order_idempotency_key(handle.id, 1)
    assert len(crm.requests) == 4 and {r.headers["idempotency-key"] for r in crm.requests} == {key}
    assert seen.orders == [order["id"]]  # the conversation lists the order once it is placed
    placed_text = contract.order_placed_text("en", 1)
    assert [m.text for m in telegram.sent].count(placed_text) == 1  # the customer is told once


async def test_an_order_the_crm_refuses_after_an_outage_is_reported_to_the_customer(
    client: Client, chat_worker: Any, telegram: FakeTelegram, crm: FakeCrm
) -> None:
    crm.fail_next(2)  # down while the reply waits: the customer is told the order is pending
    crm.fail_next(status=422)  # then refused for good in the background: never retried, never placed
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue)
        replies = [await say(handle, f"r{i}", text) for i, text in enumerate(ORDER_SCRIPT)]

        async def told() -> None:
            assert telegram.sent[-1].text == contract.order_refused_text("en")

        await assert_eventually(told, within_s=60)
        seen = await view(handle)
        await handle.terminate("test over")

    assert contract.pending_order_text("en") in replies[-1].text
    assert crm.orders == {} and len(crm.requests) == 3 and seen.orders == []


# --- the model path: the create_order tool loop ----------------------------------------------------------------------


async def test_the_models_order_goes_to_the_built_in_crm_once_and_its_final_text_is_the_one_reply(
    client: Client, telegram: FakeTelegram, model: FakeOpenAI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        user, _ = await create_user(session, "shop-owner", 10)
        await session.commit()
    model.message = ordering_model(MODEL_FINAL)
    async with ChatWorkers(client, telegram=telegram, model=endpoint(model), sessions=sessions) as workers:
        handle = await start(client, workers.task_queue, owner=user.id)
        reply = await say(handle, "t0", "Yes, place the order please", message_id=7)
        seen = await view(handle)
        await handle.terminate("test over")

    async with sessions() as session:
        orders = (await session.scalars(select(ChatOrder))).all()
        charges = (await session.scalars(select(CreditLedgerEntry).where(CreditLedgerEntry.kind == "charge"))).all()
    [order] = orders
    assert (order.user_id, order.number, order.total, order.phone) == (user.id, 1, 2580, "+380671234567")
    assert order.items == [{"sku": "HOODIE-OVS", "size": "M", "quantity": 2, "price": 1290}]
    assert order.idempotency_key == contract.order_idempotency_key(handle.id, 1)
    assert (reply.text, reply.order_number) == (MODEL_FINAL, 1)
    assert [(m.text, m.reply_to) for m in telegram.sent] == [(MODEL_FINAL, 7)]  # one send: the model's final text
    assert (seen.orders, seen.stage, seen.orders_placed) == ([str(order.id)], "ordered", 1)
    assert [c.user_id for c in charges] == [user.id]  # the message is charged once, not once per model call

    first, second = (r.json() for r in model.requests)  # the order, then the final text: two calls
    assert second["messages"][:-2] == first["messages"]  # the same conversation, then the tool exchange
    call, result = second["messages"][-2:]
    assert call["role"] == "assistant" and call["content"] is None
    [tool_call] = call["tool_calls"]
    assert (tool_call["id"], tool_call["type"], tool_call["function"]["name"]) == ("call_1", "function", "create_order")
    assert json.loads(tool_call["function"]["arguments"]) == CHECKED_ORDER
    assert result == {"role": "tool", "tool_call_id": "call_1", "content": contract.order_placed_text("en", 1)}


async def test_the_models_order_reaches_an_outside_crm_once_under_its_idempotency_key(
    client: Client, telegram: FakeTelegram, crm: FakeCrm, model: FakeOpenAI
) -> None:
    model.message = ordering_model(MODEL_FINAL)
    async with ChatWorkers(client, telegram=telegram, crm=crm, model=endpoint(model)) as workers:
        handle = await start(client, workers.task_queue)
        reply = await say(handle, "t0", "Yes, place the order please")
        seen = await view(handle)
        await handle.terminate("test over")

    [(key, order)] = crm.orders.items()
    assert key == contract.order_idempotency_key(handle.id, 1)
    assert [(i["sku"], i["size"], i["quantity"]) for i in order["items"]] == [("HOODIE-OVS", "M", 2)]
    assert (order["customer"]["phone"], order["city"], order["total"]) == ("+380671234567", "Kyiv", 2580)
    assert reply.text == MODEL_FINAL and [m.text for m in telegram.sent] == [MODEL_FINAL]
    assert seen.orders == [order["id"]] and len(model.requests) == 2


async def test_a_second_create_order_in_the_final_call_is_not_obeyed(
    client: Client, telegram: FakeTelegram, crm: FakeCrm, model: FakeOpenAI
) -> None:
    model.message = ordering_model(None)  # it calls create_order again instead of answering
    async with ChatWorkers(client, telegram=telegram, crm=crm, model=endpoint(model)) as workers:
        handle = await start(client, workers.task_queue)
        reply = await say(handle, "t0", "Yes, place the order please")
        seen = await view(handle)
        await handle.terminate("test over")

    placed = contract.order_placed_text("en", 1)
    assert len(crm.orders) == 1 and len(crm.requests) == 1  # no second order
    assert reply.text == placed and [m.text for m in telegram.sent] == [placed]  # the tool's result is the reply
    assert len(model.requests) == 2 and seen.orders_placed == 1


@pytest.mark.parametrize("failure", ["empty answer", "key refused"])
async def test_a_final_call_that_fails_still_tells_the_customer_the_order_is_placed(
    client: Client, telegram: FakeTelegram, crm: FakeCrm, model: FakeOpenAI, failure: str
) -> None:
    def order_then_fail(body: dict[str, Any]) -> dict[str, Any]:
        if failure == "key refused":
            model.status = 401  # from the next call on: a permanent failure of the reply step (not retried)
        if any(message["role"] == "tool" for message in body["messages"]):
            return {"role": "assistant", "content": None}  # an empty answer: malformed, the model path's apology
        return tool_call_message(MODEL_ORDER)

    model.message = order_then_fail
    async with ChatWorkers(client, telegram=telegram, crm=crm, model=endpoint(model)) as workers:
        handle = await start(client, workers.task_queue)
        reply = await say(handle, "t0", "Yes, place the order please")
        await handle.terminate("test over")

    placed = contract.order_placed_text("en", 1)
    assert len(crm.orders) == 1 and len(model.requests) == 2
    assert reply.text == placed and [m.text for m in telegram.sent] == [placed]  # not an apology for a placed order


# --- the model path: fallbacks -------------------------------------------------------------------------------------


async def test_a_model_that_times_out_gets_a_clear_apology_and_the_next_message_still_works(
    client: Client, telegram: FakeTelegram, model: FakeOpenAI
) -> None:
    model.delay_s = 10.0  # far past the endpoint's timeout: the first call is abandoned
    async with ChatWorkers(client, telegram=telegram, model=endpoint(model, timeout_s=2.0)) as workers:
        handle = await start(client, workers.task_queue)
        first = await say(handle, "t0", "Hello!")
        model.delay_s = 0.0
        second = await say(handle, "t1", "Do you have hoodies?")
        seen = await view(handle)
        await handle.terminate("test over")

    assert first.text == contract.apology_text("en")
    assert second.text == "Hello! What would you like to order?"
    assert [m.text for m in telegram.sent] == [first.text, second.text]
    assert seen.messages_seen == 2 and seen.delivery_error is None


async def test_an_invalid_tool_call_asks_the_customer_to_correct_the_order_and_orders_nothing(
    client: Client, telegram: FakeTelegram, crm: FakeCrm, model: FakeOpenAI
) -> None:
    model.message = tool_call_message('{"items": [{"sku": "HOODIE-OVS", ')  # cut-off JSON
    async with ChatWorkers(client, telegram=telegram, crm=crm, model=endpoint(model)) as workers:
        handle = await start(client, workers.task_queue)
        first = await say(handle, "t0", "Yes, place the order please")
        model.message = None
        second = await say(handle, "t1", "Which sizes do you have?")
        seen = await view(handle)
        await handle.terminate("test over")

    assert "couldn't put your order together" in first.text and first.order_number is None
    assert second.text == "Hello! What would you like to order?"
    assert [m.text for m in telegram.sent] == [first.text, second.text]
    assert crm.requests == [] and (seen.orders_placed, seen.orders) == (0, [])


# --- delivery faults ---------------------------------------------------------------------------------------------


async def test_a_telegram_rate_limit_is_waited_out_then_the_reply_is_sent_once(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    telegram.rate_limit_next(retry_after=3)  # longer than the send step's own first backoff (2 s)
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue)
        reply = await say(handle, "r0", "Hello!", message_id=3)
        seen = await view(handle)
        history = await handle.fetch_history()
        await handle.terminate("test over")

    assert sends(telegram) == 2  # the 429 (the reply step's own try), then the one that went through
    assert [(m.text, m.reply_to) for m in telegram.sent] == [(reply.text, 3)]
    # the reply step handed the send over with Telegram's retry_after: a durable timer of that long came first,
    # then the send step's first attempt
    timers = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in history.events
        if e.HasField("timer_started_event_attributes")
    ]
    assert timedelta(seconds=3) in timers  # (beside the conversation's own idle timers)
    [started] = activity_starts(history, contract.SEND_REPLY_ACTIVITY)
    assert started.activity_task_started_event_attributes.attempt == 1
    assert not activity_starts(history, contract.GENERATE_REPLY_ACTIVITY)  # the reply was made once
    assert seen.delivery_error is None


async def test_a_chat_telegram_does_not_know_is_recorded_not_retried_and_the_conversation_goes_on(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    telegram.fail_next(400, description="Bad Request: chat not found")
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue)
        first = await say(handle, "n0", "Hello!")
        refused = await view(handle)
        requests_after_first = sends(telegram)
        second = await say(handle, "n1", "how much is the hoodie?")
        recovered = await view(handle)
        await handle.terminate("test over")

    assert requests_after_first == 1  # permanent: not retried
    assert refused.delivery_error is not None and "chat not found" in refused.delivery_error
    assert first.text and refused.messages_seen == 1  # the message was answered all the same
    assert [m.text for m in telegram.sent] == [second.text]  # the next reply goes through
    assert recovered.delivery_error is None and recovered.messages_seen == 2


async def test_a_telegram_server_error_is_retried_and_the_reply_sent_once(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    telegram.fail_next(502)
    async with chat_worker:
        handle = await start(client, chat_worker.task_queue)
        reply = await say(handle, "e0", "Hello!")
        seen = await view(handle)
        history = await handle.fetch_history()
        await handle.terminate("test over")

    assert sends(telegram) == 2 and [m.text for m in telegram.sent] == [reply.text]
    # the reply step's own try failed; the send step (with its retries) sent it, and the reply was made once
    [made] = activity_starts(history, contract.PROCESS_AND_RESPOND_ACTIVITY)
    assert made.activity_task_started_event_attributes.attempt == 1
    [started] = activity_starts(history, contract.SEND_REPLY_ACTIVITY)
    assert started.activity_task_started_event_attributes.attempt == 1
    assert seen.delivery_error is None


# --- ManyChat: replies answered synchronously, or sent later -------------------------------------------------------


async def test_manychat_replies_go_out_only_when_their_caller_gave_up_and_only_once(
    client: Client, manychat: FakeManyChat
) -> None:
    async with ChatWorkers(client, manychat=manychat) as workers:
        handle = await start(client, workers.task_queue, channel="manychat")
        chat_id = (await view(handle)).chat_id

        answered = await say(handle, "k1", "Hello!")
        assert manychat.sent == []  # answered through the update: ManyChat shows it, nothing is sent

        await handle.signal(contract.LATE_SIGNAL, "k1")  # its caller gave up: the reply is sent instead

        async def one_sent() -> None:
            assert len(manychat.sent) == 1

        await assert_eventually(one_sent)

        await handle.signal(contract.LATE_SIGNAL, "k2")  # the caller gave up before the message got in
        early = await say(handle, "k2", "how much is the hoodie?")

        await handle.signal(contract.LATE_SIGNAL, "k1")  # repeated signals: each reply was sent already
        await handle.signal(contract.LATE_SIGNAL, "k2")
        await say(handle, "k3", "thanks")  # handled after those signals (one at a time, in arrival order)
        await handle.terminate("test over")

    assert [(s.subscriber_id, s.texts) for s in manychat.sent] == [
        (int(chat_id), [answered.text]),
        (int(chat_id), [early.text]),
    ]


async def test_a_queued_manychat_message_is_answered_through_the_sending_api_once(
    client: Client, manychat: FakeManyChat
) -> None:
    async with ChatWorkers(client, manychat=manychat) as workers:  # `wait: false` on a ManyChat chat
        handle = await start(client, workers.task_queue, channel="manychat")
        chat_id = (await view(handle)).chat_id
        await handle.signal(contract.MESSAGE_SIGNAL, IncomingMessage(key="q1", text="Hello!"))
        await handle.signal(contract.MESSAGE_SIGNAL, IncomingMessage(key="q1", text="Hello!"))  # redelivered
        answered = await say(handle, "q2", "how much is the hoodie?")  # after those, one at a time
        sent_by_then = len(manychat.sent)
        await handle.signal(contract.LATE_SIGNAL, "q1")  # a caller that gave up on it: it went out already
        await say(handle, "q3", "thanks")
        await handle.terminate("test over")

    assert sent_by_then == 1  # nobody waited for it: sent through the API without being asked
    assert [(s.subscriber_id, len(s.texts)) for s in manychat.sent] == [(int(chat_id), 1)]
    assert manychat.sent[0].texts[0] != answered.text  # the queued message's own reply, not the update's


async def test_a_late_delivery_signal_never_sends_a_telegram_reply_twice(
    client: Client, chat_worker: Any, telegram: FakeTelegram
) -> None:
    async with chat_worker:  # the API's `wait: true` caller of a Telegram chat gave up after the reply went out
        handle = await start(client, chat_worker.task_queue)
        first = await say(handle, "l0", "Hello!")
        await handle.signal(contract.LATE_SIGNAL, "l0")
        second = await say(handle, "l1", "how much is the hoodie?")  # handled after the signal
        await handle.terminate("test over")

    assert [m.text for m in telegram.sent] == [first.text, second.text]
