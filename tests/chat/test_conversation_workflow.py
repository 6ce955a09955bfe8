"""ConversationWorkflow on the time-skipping server with the real activities (local assistant, Telegram and CRM
clients against the local fakes): order of processing, dedupe across continue-as-new, follow-ups, summaries, and
an order that waits out a CRM outage without being duplicated."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.chat import contract
from activities.chat.activities import ChatActivities, chat_activities
from activities.chat.catalog import load_catalog
from activities.chat.crm import CrmClient
from activities.chat.schemas import ConversationInput, ConversationView, IncomingMessage, Reply
from activities.chat.telegram import TelegramClient
from tests.helpers import DATA_CONVERTER, make_worker, register_search_attributes, test_server_path
from tests.helpers.fakes import FakeCrm, FakeTelegram
from workflows.chat import ConversationWorkflow

ORDER_SCRIPT = ["Hello!", "I want 2 hoodies size M", "Olena Petrenko", "+380671234567", "Kyiv", "yes"]


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


def activities_for(telegram: FakeTelegram, crm: FakeCrm) -> list[Any]:
    """The real activities, their outside services being the fakes."""
    acts = ChatActivities(
        load_catalog(),
        telegram=lambda: TelegramClient(telegram.token, api_url=telegram.url),
        crm=lambda: CrmClient(crm.url, api_key=crm.api_key),
    )
    return chat_activities(acts)


async def start(client: Client, queue: str, **options: Any) -> WorkflowHandle[Any, Any]:
    chat_id = str(uuid.uuid4().int % 10**9)
    return await client.start_workflow(
        ConversationWorkflow.run,
        ConversationInput(channel="telegram", chat_id=chat_id, owner=1, **options),
        id=contract.conversation_workflow_id("telegram", chat_id),
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
    """The conversation's worker on a queue of its own, and the activities on every chat queue (as deployed)."""

    def __init__(self, client: Client, telegram: FakeTelegram, crm: FakeCrm) -> None:
        acts = activities_for(telegram, crm)
        self.task_queue = f"chat-{uuid.uuid4().hex[:8]}"
        self._workers = [make_worker(client, [ConversationWorkflow], task_queue=self.task_queue)]
        self._workers += [make_worker(client, [], acts, task_queue=queue) for queue in contract.QUEUES]
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> ChatWorkers:
        for worker in self._workers:
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


@pytest.fixture
async def chat_worker(client: Client, telegram: FakeTelegram, crm: FakeCrm) -> ChatWorkers:
    """Workers for the conversation and all its activities, their outside services being the fakes."""
    return ChatWorkers(client, telegram, crm)


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

        for _ in range(600):
            if crm.orders and telegram.sent[-1].text == contract.order_placed_text("en", 1):
                break
            await asyncio.sleep(0.05)
        await handle.terminate("test over")

    assert contract.pending_order_text("en") in replies[-1].text
    assert len(crm.orders) == 1  # retried under one idempotency key: one order
    assert telegram.sent[-1].text == contract.order_placed_text("en", 1)
