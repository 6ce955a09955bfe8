"""Inputs and outputs of the conversation workflow and its activities (light: pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from activities.chat.assistant import ConversationState, OrderDraft

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


class TurnRequest(BaseModel):
    """What the reply step needs: the conversation's state and summary, and the message."""

    state: ConversationState
    summary: str = ""
    text: str


class TurnResult(BaseModel):
    """The reply step's answer: the reply text, the new state and an order when the customer confirmed one."""

    text: str
    state: ConversationState
    order: OrderDraft | None = None


class OrderRequest(BaseModel):
    """An order to create at the CRM, keyed by conversation and order number."""

    conversation_id: str
    order: OrderDraft


class OrderResult(BaseModel):
    """The CRM's answer (``pending``: the CRM was down; the order is retried and the customer told so)."""

    order_id: str | None = None
    pending: bool = False


class SendRequest(BaseModel):
    """A reply to deliver on the conversation's channel."""

    channel: str
    chat_id: str
    text: str
    reply_to: int | None = None


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
