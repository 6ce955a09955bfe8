"""The chat pipeline's light contract (seed 001, MIRT's workers): queues with the seed's time limits, ids, keys.

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

from pydantic import BaseModel

from conveyor.pipeline import Pipeline, Price, Queue, Schedule

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
HEALTH_WORKFLOW = "ChatHealthWorkflow"
#: Activities (called by these names; the worker side registers them).
GENERATE_REPLY_ACTIVITY = "chat.generate_reply"
PROCESS_AND_RESPOND_ACTIVITY = "chat.process_and_respond"
SEND_REPLY_ACTIVITY = "chat.send_reply"
CREATE_ORDER_ACTIVITY = "chat.create_order"
SUMMARIZE_ACTIVITY = "chat.summarize"
SEND_FOLLOWUP_ACTIVITY = "chat.send_followup"
PING_ACTIVITY = "chat.ping"
HEALTH_CHECK_ACTIVITY = "chat.worker_health_check"
#: The conversation's handlers: ``message`` waits for the reply (update), ``queue_message`` does not (signal).
MESSAGE_UPDATE = "message"
MESSAGE_SIGNAL = "queue_message"
#: The API's synchronous caller gave up on a message (ManyChat got the holding answer): send its reply instead.
LATE_SIGNAL = "deliver_later"
#: Late keys a conversation remembers for messages it has not seen yet.
LATE_MEMORY = 50
CONVERSATION_QUERY = "conversation"


def apology_text(language: str) -> str:
    """What a customer is told when no reply could be made (the model failed for good)."""
    if language == "uk":
        return "Вибачте, зараз не можу відповісти. Напишіть, будь ласка, ще раз за хвилину."
    return "Sorry, I can't answer right now. Please write to me again in a minute."


def order_refused_text(language: str) -> str:
    """What a customer is told when the CRM refused the order for good (a bad request, not an outage)."""
    if language == "uk":
        return "На жаль, не вдалося оформити замовлення. Менеджер зв'яжеться з вами найближчим часом."
    return "Sorry, the order could not be placed. A manager will contact you shortly."


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


class HealthRun(BaseModel):
    """The health schedule's input (``source``: who asked)."""

    source: str = "schedule"


#: The seed's ``health-check-5min`` Beat entry. Its ``followups-check-15min`` and ``summarization-check-1h`` scans
#: have no schedule here: each conversation's own durable timers do that work.
HEALTH_SCHEDULE = Schedule(
    id="chat-health",
    workflow=HEALTH_WORKFLOW,
    arg=HealthRun(),
    queue=DEFAULT_QUEUE,
    cron="*/5 * * * *",
    description="every 5 min: ping and worker_health_check (database, Temporal, the configured channel APIs) into "
    "/api/health (seed 001 health-check-5min)",
    execution_timeout=timedelta(minutes=2),
)

#: What an owner pays: each customer message answered (a redelivery is free).
MESSAGE_PRICE = Price("message", 1, "one customer message answered (by the model or the local assistant)")

#: Replies wait on a model: async activities, so one worker holds many at once where the seed's 4 processes each
#: blocked on one. 100 is the most connections Telegram opens to a webhook (``max_connections``), so a burst of
#: first messages never waits for a slot. The other queues keep modest caps.
LLM_CONCURRENCY = 100
CONCURRENCY = 16

PIPELINE = Pipeline(
    name=NAME,
    description="Telegram and ManyChat conversations, one durable workflow per chat: ordered replies from a model "
    "or the local shop assistant, follow-ups, summaries and CRM orders (seed 001, MIRT's workers)",
    queues=(
        Queue(
            LLM_QUEUE,
            LLM_CONCURRENCY,
            "one conversation per chat (messages in order, follow-up and summary timers) and its replies",
            workflows=(CONVERSATION_WORKFLOW,),
        ),
        Queue(SUMMARIZATION_QUEUE, CONCURRENCY, "conversation summaries before a conversation continues as new"),
        Queue(FOLLOWUPS_QUEUE, CONCURRENCY, "follow-ups to customers whose cart waits"),
        Queue(CRM_QUEUE, CONCURRENCY, "orders, into the built-in CRM or an outside one"),
        Queue(WEBHOOKS_QUEUE, CONCURRENCY, "replies sent through the Telegram Bot API or ManyChat"),
        Queue(
            DEFAULT_QUEUE, 4, "the 5-minute health schedule: ping and worker_health_check", workflows=(HEALTH_WORKFLOW,)
        ),
    ),
    schedules=(HEALTH_SCHEDULE,),
    prices=(MESSAGE_PRICE,),
    max_running=None,  # conversations are long-lived and never capped by number; messages are, by rate
)
