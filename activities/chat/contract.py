"""The chat pipeline's light contract (seed 001, MIRT's workers): queues with the seed's time limits, ids, keys.

Not wired yet (no manifest in ``workers/pipelines.py``): the conversation workflow, the webhooks and the tables come
next. What is fixed here is what they will share.

The seed's six Celery queues become ``chat.<queue>`` task queues; each step keeps the seed's soft and hard limits
(the soft limit is the activity's own deadline, the hard limit its start-to-close timeout):

=============  ==================================  ==========  ==========
queue          seed task                           soft (s)    hard (s)
=============  ==================================  ==========  ==========
chat.llm       process_message                     55          60
chat.llm       process_and_respond                 85          90
chat.webhooks  send_response                       25          30
chat.summarization  summarize_session              110         120
chat.followups send_followup                       55          60
chat.crm       create_crm_order                    25          30
chat.default   ping, worker_health_check           —           10
=============  ==================================  ==========  ==========

The seed's exception classes map onto the kernel's taxonomy (``conveyor/errors.py``): ``RetryableError`` →
``Retryable``; ``DatabaseError`` → ``Retryable`` (code ``DATABASE_ERROR``); ``PermanentError`` → ``BadInput`` (never
retried); ``RateLimitError(retry_after)`` → ``RateLimited(retry_after=…)`` (the next attempt waits that long);
``ExternalServiceError(service, …)`` → ``ExternalServiceError`` (retried with backoff). The seed retries
``max_retries=3`` times with a default delay of 60 s: :data:`MAX_ATTEMPTS` and :data:`RETRY_DELAY`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

NAME = "chat"

LLM_QUEUE = "chat.llm"
SUMMARIZATION_QUEUE = "chat.summarization"
FOLLOWUPS_QUEUE = "chat.followups"
CRM_QUEUE = "chat.crm"
WEBHOOKS_QUEUE = "chat.webhooks"
DEFAULT_QUEUE = "chat.default"
QUEUES = (LLM_QUEUE, SUMMARIZATION_QUEUE, FOLLOWUPS_QUEUE, CRM_QUEUE, WEBHOOKS_QUEUE, DEFAULT_QUEUE)

#: The seed's ``max_retries=3``: the first attempt and three retries.
MAX_ATTEMPTS = 4
#: The seed's default retry delay.
RETRY_DELAY = timedelta(seconds=60)


@dataclass(frozen=True)
class Limit:
    """A seed task's time limits: ``soft`` is the step's own deadline, ``hard`` Temporal's start-to-close."""

    queue: str
    soft: timedelta | None
    hard: timedelta


GENERATE_REPLY = Limit(LLM_QUEUE, timedelta(seconds=55), timedelta(seconds=60))
PROCESS_AND_RESPOND = Limit(LLM_QUEUE, timedelta(seconds=85), timedelta(seconds=90))
SEND_REPLY = Limit(WEBHOOKS_QUEUE, timedelta(seconds=25), timedelta(seconds=30))
SUMMARIZE = Limit(SUMMARIZATION_QUEUE, timedelta(seconds=110), timedelta(seconds=120))
SEND_FOLLOWUP = Limit(FOLLOWUPS_QUEUE, timedelta(seconds=55), timedelta(seconds=60))
CREATE_ORDER = Limit(CRM_QUEUE, timedelta(seconds=25), timedelta(seconds=30))
HEALTH = Limit(DEFAULT_QUEUE, None, timedelta(seconds=10))

#: Channels a conversation can come from.
CHANNELS = ("telegram", "manychat", "api")


def conversation_workflow_id(channel: str, chat_id: str | int) -> str:
    """The one conversation workflow of a chat: ``chat-<channel>-<chat_id>``."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
    return f"chat-{channel}-{chat_id}"


def message_key(source: str, message_id: str | int, chat_id: str | int, action: str = "process") -> str:
    """A message's idempotency key, the seed's ``webhook_task_id``: ``<source>:<action>:<digest>``.

    Equal for every redelivery of one message, whatever else the redelivery carries.
    """
    digest = hashlib.sha256(f"{source}\0{chat_id}\0{message_id}".encode()).hexdigest()[:16]
    return f"{source}:{action}:{digest}"


def order_idempotency_key(conversation_id: str, order_number: int) -> str:
    """The ``Idempotency-Key`` of a conversation's n-th order at an outside CRM: a retried create is one order."""
    digest = hashlib.sha256(f"{conversation_id}\0{order_number}".encode()).hexdigest()
    return f"conveyor-order-{digest[:32]}"


CONVERSATION_WORKFLOW = "ConversationWorkflow"
#: Activities (called by these names; the worker side registers them).
GENERATE_REPLY_ACTIVITY = "chat.generate_reply"
SEND_REPLY_ACTIVITY = "chat.send_reply"
CREATE_ORDER_ACTIVITY = "chat.create_order"
SUMMARIZE_ACTIVITY = "chat.summarize"
SEND_FOLLOWUP_ACTIVITY = "chat.send_followup"
#: The conversation's handlers: ``message`` waits for the reply (update), ``queue_message`` does not (signal).
MESSAGE_UPDATE = "message"
MESSAGE_SIGNAL = "queue_message"
CONVERSATION_QUERY = "conversation"


def followup_text(language: str) -> str:
    """The follow-up a customer with an unfinished cart gets, in their language."""
    if language == "uk":
        return "Ваш кошик досі чекає на вас. Продовжимо оформлення замовлення?"
    return "Your cart is still waiting for you. Shall we finish your order?"


def pending_order_text(language: str) -> str:
    """What a customer is told when the CRM could not take the order yet (it is retried, never duplicated)."""
    if language == "uk":
        return "Замовлення прийняте й чекає на підтвердження системи — ми повідомимо, щойно воно буде оформлене."
    return "Your order is taken and waiting for our system to confirm it; we will let you know as soon as it is placed."


def order_placed_text(language: str, number: int) -> str:
    """What a customer is told once a pending order reached the CRM."""
    if language == "uk":
        return f"Замовлення №{number} оформлено. Дякуємо!"
    return f"Order #{number} is placed. Thank you!"
