"""The chat activities on their own (``ActivityEnvironment``): the built-in CRM's idempotency, one charge per message,
the errors of what is not configured, the model path's final text, and which activities each chat queue serves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.chat import contract
from activities.chat.activities import ChatActivities, ModelEndpoint, chat_activities
from activities.chat.assistant import ConversationState, OrderDraft, OrderItem
from activities.chat.catalog import load_catalog
from activities.chat.models import ChatOrder
from activities.chat.schemas import OrderRequest, SendRequest, SummaryRequest, TurnRequest
from activities.chat.turns import CreateOrderArgs, OrderItemArg, ToolCall
from conveyor.auth import create_user
from conveyor.errors import NON_RETRYABLE_ERROR_TYPES, BadInput
from conveyor.models import CreditLedgerEntry, User
from tests.helpers.fakes import FakeOpenAI

CATALOG = load_catalog()
ORDER = OrderDraft(
    number=1,
    items=(OrderItem(sku="HOODIE-OVS", size="M", quantity=2, price=1290),),
    customer_name="Olena Petrenko",
    phone="+380671234567",
    city="Kyiv",
    total=2580,
)
CALL = ToolCall(
    id="call_1",
    args=CreateOrderArgs(
        items=(OrderItemArg(sku="HOODIE-OVS", size="M", quantity=2),),
        customer_name="Olena Petrenko",
        phone="+380671234567",
        city="Kyiv",
    ),
)


async def run(fn: Any, arg: Any) -> Any:
    """Run one activity the way a worker does (its own activity context)."""
    return await ActivityEnvironment().run(fn, arg)


async def new_user(sessions: async_sessionmaker[AsyncSession], credits: int = 10) -> int:
    async with sessions() as session:
        user, _ = await create_user(session, "shop-owner", credits)
        await session.commit()
        return user.id


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(content="Your order is on its way!") as fake:
        yield fake


def with_model(fake: FakeOpenAI) -> ChatActivities:
    """The activities on the model path, the model being ``fake``."""
    return ChatActivities(CATALOG, model=ModelEndpoint(fake.base_url, SecretStr(fake.api_key), "gpt-test", 10.0))


# --- the built-in CRM -----------------------------------------------------------------------------------------------


async def test_the_built_in_crm_stores_an_order_once_per_idempotency_key(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await new_user(sessions)
    acts = ChatActivities(CATALOG, sessions=sessions)
    request = OrderRequest(
        conversation_id="chat-telegram-42", order=ORDER, owner=owner, channel="telegram", chat_id="42"
    )

    first = await run(acts.create_order, request)
    again = await run(acts.create_order, request)  # a retry after a lost answer
    second = await run(acts.create_order, request.model_copy(update={"order": ORDER.model_copy(update={"number": 2})}))

    assert first.order_id and again.order_id == first.order_id and second.order_id != first.order_id
    async with sessions() as session:
        rows = (await session.scalars(select(ChatOrder).order_by(ChatOrder.number))).all()
    assert [(row.number, str(row.id)) for row in rows] == [(1, first.order_id), (2, second.order_id)]
    row = rows[0]
    assert (row.user_id, row.conversation_id, row.channel, row.chat_id) == (owner, "chat-telegram-42", "telegram", "42")
    assert (row.total, row.currency, row.status, row.phone) == (2580, "UAH", "new", "+380671234567")
    assert row.items == [{"sku": "HOODIE-OVS", "size": "M", "quantity": 2, "price": 1290}]
    assert row.idempotency_key == contract.order_idempotency_key("chat-telegram-42", 1)


@pytest.mark.parametrize("with_sessions", [False, True], ids=["no database", "no owner"])
async def test_without_a_crm_and_nowhere_to_keep_the_order_it_is_refused_for_good(
    sessions: async_sessionmaker[AsyncSession], with_sessions: bool
) -> None:
    acts = ChatActivities(CATALOG, sessions=sessions if with_sessions else None)
    request = OrderRequest(conversation_id="chat-telegram-42", order=ORDER, owner=None if with_sessions else 1)

    with pytest.raises(BadInput) as refused:
        await run(acts.create_order, request)

    assert refused.value.code == "CRM_NOT_CONFIGURED" and not refused.value.retryable


# --- charging --------------------------------------------------------------------------------------------------------


async def charges(sessions: async_sessionmaker[AsyncSession], owner: int) -> tuple[list[CreditLedgerEntry], int]:
    """The owner's charges and credits left."""
    async with sessions() as session:
        entries = (
            await session.scalars(
                select(CreditLedgerEntry).where(CreditLedgerEntry.user_id == owner, CreditLedgerEntry.kind == "charge")
            )
        ).all()
        credits = await session.scalar(select(User.credits).where(User.id == owner))
    return list(entries), int(credits or 0)


async def test_a_reply_is_charged_once_per_message_whatever_the_retries(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await new_user(sessions, credits=10)
    acts = ChatActivities(CATALOG, sessions=sessions)
    request = TurnRequest(state=ConversationState(), text="Hello!", owner=owner, charge_key="chat-telegram-42:m1")

    first = await run(acts.generate_reply, request)
    again = await run(acts.generate_reply, request)  # the reply step retried: the same message
    await run(acts.generate_reply, request.model_copy(update={"charge_key": "chat-telegram-42:m2"}))

    assert first.text and again.text == first.text
    entries, credits = await charges(sessions, owner)
    assert sorted(e.idempotency_key for e in entries) == ["chat:chat-telegram-42:m1", "chat:chat-telegram-42:m2"]
    assert [e.amount for e in entries] == [-contract.MESSAGE_PRICE.credits] * 2
    assert credits == 10 - 2 * contract.MESSAGE_PRICE.credits


@pytest.mark.parametrize("missing", ["owner", "charge_key"])
async def test_a_reply_without_an_owner_or_a_charge_key_is_not_charged(
    sessions: async_sessionmaker[AsyncSession], missing: str
) -> None:
    owner = await new_user(sessions, credits=10)
    request = TurnRequest(state=ConversationState(), text="Hello!", owner=owner, charge_key="chat-telegram-42:m1")

    await run(ChatActivities(CATALOG, sessions=sessions).generate_reply, request.model_copy(update={missing: None}))

    assert await charges(sessions, owner) == ([], 10)


# --- the model path's final text -----------------------------------------------------------------------------------

FINAL_REQUEST = TurnRequest(
    state=ConversationState(language="en"),
    text="Yes, place the order please",
    tool_call=CALL,
    tool_result=contract.order_placed_text("en", 1),
)


async def test_the_final_call_carries_the_tool_exchange_and_its_text_is_the_reply(model: FakeOpenAI) -> None:
    result = await run(with_model(model).generate_reply, FINAL_REQUEST)

    assert (result.text, result.fallback, result.order, result.tool_call) == (
        "Your order is on its way!",
        False,
        None,
        None,
    )
    *_, user, call, tool = model.requests[0].json()["messages"]
    assert user == {"role": "user", "content": "Yes, place the order please"}
    [tool_call] = call["tool_calls"]
    assert tool_call["id"] == "call_1" and json.loads(tool_call["function"]["arguments"]) == CALL.args.model_dump(
        mode="json"
    )
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": contract.order_placed_text("en", 1)}


def _ordering(arguments: str) -> dict[str, Any]:
    """An assistant message calling ``create_order`` with ``arguments``."""
    call = {"id": "call_2", "type": "function", "function": {"name": "create_order", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


@pytest.mark.parametrize(
    "answer",
    [
        _ordering(json.dumps(CALL.args.model_dump(mode="json"))),
        _ordering("{"),
        {"role": "assistant", "content": "   "},
    ],
    ids=["orders again", "orders again, invalid", "empty answer"],
)
async def test_a_final_call_that_orders_again_or_fails_answers_with_the_tools_result(
    model: FakeOpenAI, answer: dict[str, Any]
) -> None:
    model.message = answer

    result = await run(with_model(model).generate_reply, FINAL_REQUEST)

    assert (result.text, result.fallback, result.order) == (contract.order_placed_text("en", 1), True, None)


# --- what is not configured ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "code"), [("telegram", "TELEGRAM_NOT_CONFIGURED"), ("manychat", "MANYCHAT_NOT_CONFIGURED")]
)
@pytest.mark.parametrize("step", ["send_reply", "send_followup"])
async def test_sending_on_a_channel_without_its_token_is_refused_for_good(channel: str, code: str, step: str) -> None:
    acts = ChatActivities(CATALOG)

    with pytest.raises(BadInput) as refused:
        await run(getattr(acts, step), SendRequest(channel=channel, chat_id="42", text="Hello!"))

    failure = refused.value.to_application_error()  # what the worker's interceptor hands Temporal
    assert refused.value.code == code and failure.details[0] == code
    assert failure.non_retryable and failure.type in NON_RETRYABLE_ERROR_TYPES  # never retried


async def test_an_api_conversations_reply_is_not_sent_anywhere() -> None:
    asked: list[str] = []

    def unreachable() -> None:
        asked.append("a channel client")

    acts = ChatActivities(CATALOG, telegram=unreachable, manychat=unreachable)

    await run(acts.send_reply, SendRequest(channel="api", chat_id="42", text="Hello!"))

    assert asked == []  # read from the conversation instead


# --- summaries and queues --------------------------------------------------------------------------------------------


async def test_a_summary_keeps_the_earlier_summary_the_state_and_the_latest_lines() -> None:
    messages = [f"customer: message {i}" for i in range(30)]
    request = SummaryRequest(
        summary="Olena asked about hoodies.\nolder detail", state=ConversationState(), messages=messages
    )

    summary = await run(ChatActivities(CATALOG).summarize, request)

    lines = summary.splitlines()
    assert lines[0] == "Olena asked about hoodies." and "older detail" not in summary
    assert lines[-10:] == messages[-10:] and "message 19" not in summary


def names(fns: list[Any]) -> list[str]:
    """The activity names ``fns`` are registered under."""
    found = []
    for fn in fns:
        definition = activity._Definition.from_callable(fn)
        assert definition is not None and definition.name is not None
        found.append(definition.name)
    return found


def test_each_chat_queue_serves_its_own_activities() -> None:
    acts = ChatActivities(CATALOG)
    expected = {
        contract.LLM_QUEUE: [contract.GENERATE_REPLY_ACTIVITY, contract.PROCESS_AND_RESPOND_ACTIVITY],
        contract.WEBHOOKS_QUEUE: [contract.SEND_REPLY_ACTIVITY],
        contract.FOLLOWUPS_QUEUE: [contract.SEND_FOLLOWUP_ACTIVITY],
        contract.CRM_QUEUE: [contract.CREATE_ORDER_ACTIVITY],
        contract.SUMMARIZATION_QUEUE: [contract.SUMMARIZE_ACTIVITY],
        contract.DEFAULT_QUEUE: [contract.PING_ACTIVITY, contract.HEALTH_CHECK_ACTIVITY],
    }

    assert set(expected) == set(contract.QUEUES)
    for queue, wanted in expected.items():
        assert names(chat_activities(acts, queue)) == wanted, queue
    assert sorted(names(chat_activities(acts))) == sorted(n for wanted in expected.values() for n in wanted)
    with pytest.raises(KeyError):
        chat_activities(acts, "chat.unknown")


async def test_ping_answers() -> None:
    assert await run(ChatActivities(CATALOG).ping, contract.HealthRun()) == "pong"
