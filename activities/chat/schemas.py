"""Inputs and outputs of the conversation workflow and its activities (light: pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from activities.chat.assistant import ConversationState, OrderDraft
from activities.chat.turns import ToolCall

#: Message keys a conversation remembers (redeliveries arrive within minutes; this covers days of a busy chat).
DEDUPE_WINDOW = 1000
#: Replies a conversation keeps to answer a redelivery with the first reply again.
REPLY_MEMORY = 50


class IncomingMessage(BaseModel):
    """One customer message: its idempotency key, text and the ids a reply refers to."""

    key: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4096)
    message_id: int | None = None


class Reply(BaseModel):
    """The answer to a message (``duplicate``: a redelivery, answered with the first reply)."""

    key: str
    text: str
    duplicate: bool = False
    order_number: int | None = None


class SendRequest(BaseModel):
    """A reply to deliver on the conversation's channel."""

    channel: str
    chat_id: str
    text: str
    reply_to: int | None = None


class TurnRequest(BaseModel):
    """What the reply step needs: the conversation's state, summary and recent lines, and the message.

    On the model path, the second call of a turn that created an order carries the model's ``tool_call`` and the
    tool's ``tool_result``; the model answers with the final text (it may not order again in that turn).
    """

    state: ConversationState
    summary: str = ""
    text: str
    recent: list[str] = Field(default_factory=list)
    """The conversation's latest ``customer: …`` / ``assistant: …`` lines (the model's context)."""
    tool_call: ToolCall | None = None
    tool_result: str | None = None
    owner: int | None = None
    """Who pays for the reply (``None``: nobody is charged, e.g. in workflow tests)."""
    charge_key: str | None = None
    """The reply's charge, once per message whatever the retries."""
    deliver: SendRequest | None = None
    """Where the reply goes (the seed's ``process_and_respond``): sent by the same step unless the turn has an order
    to create first; its text is the reply's."""


class TurnResult(BaseModel):
    """The reply step's answer: the reply text, the new state and an order when the customer confirmed one.

    On the model path an order comes with the model's ``tool_call``: the workflow creates the order, then asks the
    model again with the tool's result for the text it sends.
    """

    text: str
    state: ConversationState
    order: OrderDraft | None = None
    tool_call: ToolCall | None = None
    fallback: bool = False
    """The text is ours, not the model's (the endpoint failed, or its order was invalid)."""
    sent: bool = False
    """The step also sent the reply (``TurnRequest.deliver``)."""
    delivery_error: str | None = None
    """Why the channel refused the reply for good (not retried); a passing failure leaves it to the send step."""
    send_after_s: float | None = None
    """The channel asked to wait this long before the send step tries again (Telegram's 429 ``retry_after``)."""


class OrderRequest(BaseModel):
    """An order to create at the CRM, keyed by conversation and order number."""

    conversation_id: str
    order: OrderDraft
    owner: int | None = None
    """The conversation's owner: the built-in CRM's orders are theirs."""
    channel: str = ""
    chat_id: str = ""


class OrderResult(BaseModel):
    """The CRM's answer: the order's id there."""

    order_id: str | None = None


class SummaryRequest(BaseModel):
    """What the summarisation step reads: the previous summary and the conversation's state."""

    summary: str
    state: ConversationState
    messages: list[str] = Field(default_factory=list)


class ConversationCarry(BaseModel):
    """What a conversation carries across ``continue_as_new``: state, summary and what dedupe needs."""

    state: ConversationState = Field(default_factory=ConversationState)
    summary: str = ""
    recent: list[str] = Field(default_factory=list)
    """The last few messages, as ``customer: …`` / ``assistant: …`` lines."""
    seen: list[str] = Field(default_factory=list)
    """Keys of processed messages, oldest first (at most :data:`DEDUPE_WINDOW`)."""
    replies: dict[str, str] = Field(default_factory=dict)
    """The latest replies by message key (at most :data:`REPLY_MEMORY`)."""
    followups_sent: int = 0
    messages_since_summary: int = 0
    late: list[str] = Field(default_factory=list)
    """Keys whose synchronous caller gave up (ManyChat's holding answer): their replies go out through the API."""
    delivered: list[str] = Field(default_factory=list)
    """Keys of remembered replies that went out on the channel: a late delivery never sends one twice."""
    delivery_error: str | None = None
    """Why the channel refused the latest reply for good (Telegram's "chat not found"), until one goes through."""
    orders: list[str] = Field(default_factory=list)
    """Ids the CRM gave this conversation's orders, oldest first."""


class ConversationInput(BaseModel):
    """A conversation's start (``carry`` set by ``continue_as_new``)."""

    channel: str
    chat_id: str
    owner: int
    followup_after_s: float = Field(3600.0, gt=0)
    followup_max: int = Field(1, ge=0)
    summary_every: int = Field(20, ge=2)
    summary_idle_s: float = Field(3600.0, gt=0)
    carry: ConversationCarry = Field(default_factory=ConversationCarry)


class ConversationView(BaseModel):
    """A conversation as its query shows it."""

    channel: str
    chat_id: str
    stage: str
    summary: str
    recent: list[str]
    cart: list[dict[str, object]]
    followups_sent: int
    orders_placed: int
    messages_seen: int
    orders: list[str] = Field(default_factory=list)
    delivery_error: str | None = None
    language: str = "uk"


class HealthReport(BaseModel):
    """One dependency's state as the worker health check found it."""

    name: str
    ok: bool
    detail: str = ""
    latency_ms: float | None = None
