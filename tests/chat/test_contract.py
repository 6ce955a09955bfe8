"""The chat contract: the seed's queues and limits, conversation ids and idempotency keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from activities.chat import contract


def test_every_seed_queue_is_namespaced_with_its_limits() -> None:
    assert contract.QUEUES == (
        "chat.llm",
        "chat.summarization",
        "chat.followups",
        "chat.crm",
        "chat.webhooks",
        "chat.default",
    )
    seed = {
        contract.GENERATE_REPLY: (55, 60),
        contract.PROCESS_AND_RESPOND: (85, 90),
        contract.SEND_REPLY: (25, 30),
        contract.SUMMARIZE: (110, 120),
        contract.SEND_FOLLOWUP: (55, 60),
        contract.CREATE_ORDER: (25, 30),
    }
    for limit, (soft, hard) in seed.items():
        assert (limit.soft, limit.hard) == (timedelta(seconds=soft), timedelta(seconds=hard))
        assert limit.soft is not None and limit.soft < limit.hard and limit.queue in contract.QUEUES
    assert contract.HEALTH.hard == timedelta(seconds=10)


def test_a_chat_has_one_conversation_workflow_per_channel() -> None:
    assert contract.conversation_workflow_id("telegram", 42) == "chat-telegram-42"
    assert contract.conversation_workflow_id("manychat", "abc") != contract.conversation_workflow_id("api", "abc")
    with pytest.raises(ValueError, match="unknown channel"):
        contract.conversation_workflow_id("sms", 1)


def test_message_keys_repeat_for_a_redelivery_and_differ_between_messages() -> None:
    first = contract.message_key("telegram", 10, 42)
    assert first == contract.message_key("telegram", 10, 42)
    assert first.startswith("telegram:process:")
    assert first != contract.message_key("telegram", 11, 42) != contract.message_key("telegram", 10, 43)


def test_an_orders_idempotency_key_is_stable_per_conversation_and_order() -> None:
    key = contract.order_idempotency_key("chat-telegram-42", 1)
    assert key == contract.order_idempotency_key("chat-telegram-42", 1)
    assert key != contract.order_idempotency_key("chat-telegram-42", 2)
    assert len(key) <= 64
