"""Chat: the Telegram and ManyChat webhooks, the seed's dispatcher as an API, conversations, bots and orders.

Shared by the HTTP API and the CLI; it reaches conversation workflows by the contract's names. A message is
durably accepted once Temporal has it: a signal-with-start (queued) or an update-with-start (the reply is awaited)
on the chat's one ``ConversationWorkflow``. Nothing else stands between a webhook and its 200: the owner of a bot
and the conversations already recorded are kept in this process for a short while.

Tenant limits apply to what costs (messages per minute and replies awaited at once, per owner), never to the number
of open conversations. Counters live in this process: N API replicas allow N times the configured rates.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy

from activities.chat import contract
from activities.chat.manychat import ManyChatRequest, dynamic_block, holding_block, parse_request
from activities.chat.manychat import check_bearer as check_manychat_bearer
from activities.chat.manychat import dedupe_key as manychat_key
from activities.chat.models import ChatBot, ChatConversation, ChatOrder
from activities.chat.schemas import ConversationInput, ConversationView, IncomingMessage, Reply
from activities.chat.telegram import Ignored, classify, parse_update
from activities.chat.telegram import check_secret as check_telegram_secret
from activities.chat.telegram import dedupe_key as telegram_key
from api.caller import Caller
from conveyor.auth import default_owner
from conveyor.client import search_attributes, temporal_errors
from conveyor.codec import is_local_install, write_secret_once
from conveyor.credits import available_credits
from conveyor.db import GroupCommit, dialect_insert
from conveyor.errors import (
    Conflict,
    ConveyorError,
    ExternalServiceError,
    InsufficientCredits,
    NotFound,
    RateLimited,
)
from conveyor.settings import Settings

Channel = Literal["telegram", "manychat", "api"]
#: A chat id the API takes: what Telegram, ManyChat and people use, never anything that breaks a workflow id.
CHAT_ID_PATTERN = r"^[A-Za-z0-9_.:@+-]{1,100}$"
#: How long ``wait: true`` waits for the reply before answering 202 (the seed's process_and_respond hard limit).
WAIT_TIMEOUT = contract.PROCESS_AND_RESPOND.hard
#: How long a bot's owner is trusted from memory (a bot changing hands takes effect within this).
OWNER_TTL_S = 30.0
#: Where a local install keeps the webhook secret it made for itself (the demo signs its updates with it).
LOCAL_SECRET_FILE = "telegram-webhook-secret"


# --- secrets and owners -------------------------------------------------------------------------------------------


def telegram_secret(settings: Settings) -> str | None:
    """The Telegram webhook's secret token: ``CONVEYOR_TELEGRAM_WEBHOOK_SECRET``, else on a local install (Temporal
    on loopback) one of its own, made once under the var dir with mode 0600; ``None`` otherwise."""
    configured = _secret_text(settings.telegram_webhook_secret)
    if configured:
        return configured
    if not is_local_install(settings):
        return None
    path = settings.var_dir.resolve() / LOCAL_SECRET_FILE
    return write_secret_once(path, secrets.token_urlsafe(32)).strip()


def manychat_secret(settings: Settings) -> str | None:
    """The bearer token ManyChat's External Request carries: its own setting, else the Telegram webhook's secret."""
    return _secret_text(settings.manychat_webhook_secret) or telegram_secret(settings)


def _secret_text(value: Any) -> str:
    return str(value.get_secret_value()).strip() if value is not None else ""


def configured_bot(settings: Settings, channel: str) -> str:
    """The id of the channel's configured bot: the numeric part of its token (a Telegram bot's id, a ManyChat
    page's id), ``default`` when none is set."""
    token = _secret_text(settings.telegram_bot_token if channel == "telegram" else settings.manychat_api_token)
    bot_id = token.partition(":")[0]
    return bot_id if token and bot_id.isdigit() else "default"


@dataclass
class Owners:
    """Bots' owners and recorded conversations, remembered by this API process for a short while."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    _owners: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    _recorded: set[str] = field(default_factory=set)
    _records: GroupCommit[ChatConversation, None] | None = None
    _lookups: dict[tuple[str, str], asyncio.Future[int]] = field(default_factory=dict)

    async def owner_of(self, channel: str) -> int:
        """Who owns the channel's configured bot: whoever connected it, else ``CONVEYOR_CHAT_DEFAULT_OWNER``.

        Looked up once per :data:`OWNER_TTL_S` however many messages arrive meanwhile (they share the lookup).
        """
        bot = (channel, configured_bot(self.settings, channel))
        known = self._owners.get(bot)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        lookup = self._lookups.get(bot)
        if lookup is None or lookup.done():
            lookup = asyncio.ensure_future(self._look_up(bot))
            self._lookups[bot] = lookup
        return await asyncio.shield(lookup)

    async def _look_up(self, bot: tuple[str, str]) -> int:
        async with self.sessions.begin() as session:
            owner = await bot_owner(session, self.settings, *bot)
        self._owners[bot] = (owner, time.monotonic() + OWNER_TTL_S)
        return owner

    async def record(self, owner: int, channel: str, chat_id: str, workflow_id: str) -> None:
        """Note a conversation once (its first message), so its owner lists it; first messages arriving together
        share one transaction."""
        if workflow_id in self._recorded:
            return
        if self._records is None:
            self._records = GroupCommit(self._write_records)
        await self._records.submit(
            ChatConversation(workflow_id=workflow_id, user_id=owner, channel=channel, chat_id=chat_id)
        )
        self._recorded.add(workflow_id)
        if len(self._recorded) > 100_000:
            self._recorded.clear()

    async def _write_records(self, rows: list[ChatConversation]) -> list[None]:
        async with self.sessions.begin() as session:
            await record_conversations(session, rows)
        return [None] * len(rows)


async def bot_owner(session: AsyncSession, settings: Settings, channel: str, bot_id: str) -> int:
    """The owner of a bot: whoever connected it, else the default owner."""
    owner = await session.scalar(select(ChatBot.user_id).where(ChatBot.channel == channel, ChatBot.bot_id == bot_id))
    if owner is not None:
        return int(owner)
    return await default_owner(
        session,
        settings.chat_default_owner,
        "CONVEYOR_CHAT_DEFAULT_OWNER",
        settings.local_user,
        settings.local_user_credits,
    )


async def record_conversations(session: AsyncSession, rows: Sequence[ChatConversation]) -> None:
    """Insert the conversations' rows, but those already there (unsaved objects, read for their columns)."""
    values = {
        row.workflow_id: {
            "workflow_id": row.workflow_id,
            "user_id": row.user_id,
            "channel": row.channel,
            "chat_id": row.chat_id,
            "created_at": datetime.now(UTC),
        }
        for row in rows
    }
    insert = dialect_insert(session, ChatConversation, core=True).on_conflict_do_nothing(index_elements=["workflow_id"])
    await session.execute(insert, list(values.values()))


async def connect_bot(caller: Caller, channel: str, bot_id: str) -> tuple[ChatBot, bool]:
    """Connect a bot to the caller (idempotent; another user's bot is ``409 BOT_TAKEN``)."""
    session = caller.session
    found = await session.scalar(select(ChatBot).where(ChatBot.channel == channel, ChatBot.bot_id == bot_id))
    if found is not None:
        if found.user_id != caller.user.id:
            raise Conflict(f"the {channel} bot {bot_id} is connected to another user", code="BOT_TAKEN")
        return found, False
    bot = ChatBot(user_id=caller.user.id, channel=channel, bot_id=bot_id)
    session.add(bot)
    await session.commit()
    return bot, True


def bots_query(caller: Caller) -> Select[Any]:
    """The caller's bots, oldest first."""
    return select(ChatBot).where(ChatBot.user_id == caller.user.id).order_by(ChatBot.id)


# --- tenant limits ------------------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class Limits:
    """Per-owner message rate (a token bucket a minute deep) and replies awaited at once."""

    settings: Settings
    _buckets: dict[int, _Bucket] = field(default_factory=dict)
    _waiting: dict[int, int] = field(default_factory=dict)

    def take_message(self, owner: int) -> None:
        """Count one message of ``owner``; ``RateLimited`` past ``CONVEYOR_CHAT_MESSAGES_PER_MINUTE``."""
        per_minute = float(self.settings.chat_messages_per_minute)
        now = time.monotonic()
        bucket = self._buckets.setdefault(owner, _Bucket(per_minute, now))
        bucket.tokens = min(per_minute, bucket.tokens + (now - bucket.updated) * per_minute / 60.0)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) * 60.0 / per_minute
            raise RateLimited(
                f"more than {per_minute:g} messages a minute for this account; retry in {math.ceil(wait)} s",
                code="CHAT_RATE_LIMITED",
                retry_after=timedelta(seconds=math.ceil(wait)),
                details={"per_minute": int(per_minute)},
            )
        bucket.tokens -= 1.0

    def start_wait(self, owner: int) -> None:
        """Count one reply awaited; ``RateLimited`` past ``CONVEYOR_CHAT_MAX_WAITING_REPLIES``."""
        cap = self.settings.chat_max_waiting_replies
        if self._waiting.get(owner, 0) >= cap:
            raise RateLimited(
                f"{cap} replies are already being awaited for this account; retry shortly or send with wait: false",
                code="TOO_MANY_WAITING_REPLIES",
                retry_after=timedelta(seconds=1),
                details={"max_waiting_replies": cap},
            )
        self._waiting[owner] = self._waiting.get(owner, 0) + 1

    def end_wait(self, owner: int) -> None:
        """One awaited reply came (or its caller gave up)."""
        left = self._waiting.get(owner, 1) - 1
        if left > 0:
            self._waiting[owner] = left
        else:
            self._waiting.pop(owner, None)


# --- reaching a conversation --------------------------------------------------------------------------------------


def conversation_input(settings: Settings, channel: str, chat_id: str, owner: int) -> ConversationInput:
    """A new conversation's start, with the settings' follow-up and summary timers."""
    return ConversationInput(
        channel=channel,
        chat_id=chat_id,
        owner=owner,
        followup_after_s=settings.chat_followup_after,
        followup_max=settings.chat_followup_max,
        summary_every=settings.chat_summary_every,
        summary_idle_s=settings.chat_summary_idle,
    )


@dataclass(frozen=True)
class Target:
    """A conversation to deliver a message to: its channel and chat, its owner and workflow id."""

    channel: str
    chat_id: str
    owner: int

    @property
    def workflow_id(self) -> str:
        """``chat-<channel>-<chat_id>``."""
        return contract.conversation_workflow_id(self.channel, self.chat_id)


async def queue_message(client: Client, settings: Settings, target: Target, message: IncomingMessage) -> None:
    """Signal-with-start the conversation: the message is durably accepted when this returns."""
    with temporal_errors(f"conversation {target.workflow_id}"):
        await client.start_workflow(
            contract.CONVERSATION_WORKFLOW,
            conversation_input(settings, target.channel, target.chat_id, target.owner),
            id=target.workflow_id,
            task_queue=contract.LLM_QUEUE,
            start_signal=contract.MESSAGE_SIGNAL,
            start_signal_args=[message],
            search_attributes=search_attributes(contract.NAME, target.owner),
        )


async def await_reply(
    client: Client, settings: Settings, target: Target, message: IncomingMessage, within: timedelta
) -> Reply | None:
    """Update-with-start the conversation and wait ``within`` for the reply.

    ``None`` when it takes longer: the message is then made sure of by a signal-with-start (a copy the conversation
    drops if the update got in first) and the conversation is told to send the reply itself (``deliver_later``).
    """
    start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        contract.CONVERSATION_WORKFLOW,
        conversation_input(settings, target.channel, target.chat_id, target.owner),
        id=target.workflow_id,
        task_queue=contract.LLM_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=search_attributes(contract.NAME, target.owner),
    )

    async def reply() -> Reply:
        handle = await client.start_update_with_start_workflow(
            contract.MESSAGE_UPDATE,
            message,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=Reply,
        )
        answer: Reply = await handle.result()
        return answer

    with temporal_errors(f"conversation {target.workflow_id}"):
        try:
            return await asyncio.wait_for(reply(), within.total_seconds())
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            pass  # the update's poll, cancelled by the timeout, says so with its own error (not TimeoutError)
        await queue_message(client, settings, target, message)
        await client.get_workflow_handle(target.workflow_id).signal(contract.LATE_SIGNAL, message.key)
    return None


# --- the webhooks -------------------------------------------------------------------------------------------------


@dataclass
class Chat:
    """What the chat routes share in one API process: owners, limits and the Temporal client."""

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    owners: Owners
    limits: Limits

    @classmethod
    def of(cls, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> Chat:
        """The process's chat state."""
        return cls(sessions, settings, Owners(sessions, settings), Limits(settings))

    async def target(self, channel: str, chat_id: str) -> Target:
        """The conversation of a chat of the channel's configured bot, counted against its owner's rate."""
        owner = await self.owners.owner_of(channel)
        self.limits.take_message(owner)
        target = Target(channel, chat_id, owner)
        await self.owners.record(owner, channel, chat_id, target.workflow_id)
        return target


class TelegramAccepted(BaseModel):
    """What the Telegram webhook did with an update."""

    ok: bool = True
    workflow_id: str | None = Field(None, description="The conversation the message was accepted into.")
    ignored: str | None = Field(None, description="Why the update was accepted and dropped (not a text message…).")


async def accept_telegram(chat: Chat, client: Client, *, body: bytes, secret_header: str | None) -> TelegramAccepted:
    """A Telegram update: checked secret (401), parsed (400), ignored if not a new text message, else queued."""
    secret = telegram_secret(chat.settings)
    if secret is None:
        raise _not_configured("CONVEYOR_TELEGRAM_WEBHOOK_SECRET")
    check_telegram_secret(secret_header, secret)
    incoming = classify(parse_update(body))
    if isinstance(incoming, Ignored):
        return TelegramAccepted(ignored=incoming.reason)
    target = await chat.target("telegram", str(incoming.chat_id))
    message = IncomingMessage(
        key=telegram_key(incoming.chat_id, incoming.message_id), text=incoming.text, message_id=incoming.message_id
    )
    await queue_message(client, chat.settings, target, message)
    return TelegramAccepted(workflow_id=target.workflow_id)


async def answer_manychat(
    chat: Chat, client: Client, *, body: bytes, authorization: str | None, channel: str = "telegram"
) -> dict[str, Any]:
    """ManyChat's External Request: the reply as a Dynamic Block within ``CONVEYOR_CHAT_SYNC_TIMEOUT_S``, else a
    holding message (the reply then goes out through ManyChat's sending API)."""
    secret = manychat_secret(chat.settings)
    if secret is None:
        raise _not_configured("CONVEYOR_MANYCHAT_WEBHOOK_SECRET")
    check_manychat_bearer(authorization, secret)
    request: ManyChatRequest = parse_request(body)
    target = await chat.target("manychat", request.subscriber_id)
    message = IncomingMessage(key=manychat_key(request.subscriber_id, request.message_id), text=request.text)
    chat.limits.start_wait(target.owner)
    try:
        within = timedelta(seconds=chat.settings.chat_sync_timeout_s)
        reply = await await_reply(client, chat.settings, target, message, within)
    finally:
        chat.limits.end_wait(target.owner)
    if reply is None:
        return holding_block(channel=channel)
    return dynamic_block([reply.text], channel)


def _not_configured(setting: str) -> ConveyorError:
    return ExternalServiceError(f"the webhook is not configured: set {setting}", code="WEBHOOK_NOT_CONFIGURED")


# --- the dispatcher (the seed's queued and synchronous modes) ------------------------------------------------------


class MessageIn(BaseModel):
    """A message for a conversation: ``wait`` for its reply (synchronous), or have it queued."""

    channel: Channel = Field("api", description="api (your own chats), or telegram / manychat (your bot's chats).")
    chat_id: str = Field(pattern=CHAT_ID_PATTERN, description="The chat: any id of yours for api.")
    text: str = Field(min_length=1, max_length=4096)
    message_id: str | int | None = Field(
        None, description="The message's id: a repeat with the same id gets the first reply, never a second one."
    )
    wait: bool = Field(True, description="Wait for the reply (up to 90 s), or answer 202 at once.")

    @field_validator("text")
    @classmethod
    def _some_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message has no text")
        return value.strip()

    @field_validator("message_id")
    @classmethod
    def _an_id(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str) and not re.fullmatch(CHAT_ID_PATTERN, value):
            raise ValueError("must be 1 to 100 letters, digits or _.:@+-")
        return value


class MessageOut(BaseModel):
    """A message's fate: its reply (``queued`` false) or the conversation it was queued into."""

    queued: bool
    reply: str | None = None
    trace_id: str = Field(description="The message's idempotency key (the seed's task id).")
    workflow_id: str
    duplicate: bool = Field(False, description="A repeat of a message already answered: this is its first reply.")
    order_number: int | None = None


def api_chat_id(user_id: int, chat_id: str) -> str:
    """An API chat's id in its workflow id: one user's chats never meet another's."""
    return f"u{user_id}-{chat_id}"


async def post_message(chat: Chat, caller: Caller, body: MessageIn) -> MessageOut:
    """The seed's dispatcher: ``wait`` → the reply (the synchronous path, still durable); else queued (202)."""
    if await available_credits(caller.session, caller.user.id) <= 0:
        raise InsufficientCredits("no credits left for replies", code="INSUFFICIENT_CREDITS")
    await caller.session.commit()  # the credit read holds no transaction while the reply is awaited
    target = await _own_target(chat, caller, body)
    key = contract.message_key(
        body.channel, body.message_id if body.message_id is not None else _new_id(), body.chat_id
    )
    message_id = body.message_id if isinstance(body.message_id, int) else None
    message = IncomingMessage(key=key, text=body.text, message_id=message_id)
    if not body.wait:
        await queue_message(caller.client, chat.settings, target, message)
        return MessageOut(queued=True, trace_id=key, workflow_id=target.workflow_id)
    chat.limits.start_wait(target.owner)
    try:
        reply = await await_reply(caller.client, chat.settings, target, message, WAIT_TIMEOUT)
    finally:
        chat.limits.end_wait(target.owner)
    if reply is None:
        return MessageOut(queued=True, trace_id=key, workflow_id=target.workflow_id)
    return MessageOut(
        queued=False,
        reply=reply.text,
        trace_id=key,
        workflow_id=target.workflow_id,
        duplicate=reply.duplicate,
        order_number=reply.order_number,
    )


def _new_id() -> str:
    return secrets.token_hex(8)


async def _own_target(chat: Chat, caller: Caller, body: MessageIn) -> Target:
    """The caller's conversation: an API chat of theirs, or a chat of a bot they own."""
    if body.channel == "api":
        chat.limits.take_message(caller.user.id)
        target = Target("api", api_chat_id(caller.user.id, body.chat_id), caller.user.id)
        await chat.owners.record(caller.user.id, "api", body.chat_id, target.workflow_id)
        return target
    if await chat.owners.owner_of(body.channel) != caller.user.id:
        raise NotFound(f"no {body.channel} bot of yours is configured here", code="BOT_NOT_FOUND")
    return await chat.target(body.channel, body.chat_id)


# --- reading conversations and orders -----------------------------------------------------------------------------


def conversations_query(caller: Caller, channel: str | None = None) -> Select[Any]:
    """The caller's conversations, newest first."""
    query = select(ChatConversation).where(ChatConversation.user_id == caller.user.id)
    if channel is not None:
        query = query.where(ChatConversation.channel == channel)
    return query.order_by(ChatConversation.id.desc())


async def own_conversation(caller: Caller, workflow_id: str) -> ChatConversation:
    """One of the caller's conversations by its workflow id (404 otherwise, whoever else has it)."""
    found = await caller.session.scalar(
        select(ChatConversation).where(
            ChatConversation.workflow_id == workflow_id, ChatConversation.user_id == caller.user.id
        )
    )
    if found is None:
        raise NotFound(f"no conversation {workflow_id[:200]!r}", code="CONVERSATION_NOT_FOUND")
    return found


def conversation_id_of(caller: Caller, chat_id: str, channel: str = "api") -> str:
    """The workflow id of a chat of the caller, as ``conveyor chat show CHAT_ID`` names it."""
    return contract.conversation_workflow_id(
        channel, api_chat_id(caller.user.id, chat_id) if channel == "api" else chat_id
    )


async def view_of(caller: Caller, conversation: ChatConversation) -> ConversationView:
    """What the conversation's workflow holds now (its messages, summary, cart, follow-ups and orders)."""
    handle = caller.client.get_workflow_handle(conversation.workflow_id)
    with temporal_errors(f"conversation {conversation.workflow_id}"):
        view: ConversationView = await handle.query(contract.CONVERSATION_QUERY, result_type=ConversationView)
    return view


def orders_query(caller: Caller, conversation_id: str | None = None) -> Select[Any]:
    """The caller's orders in the built-in CRM, newest first."""
    query = select(ChatOrder).where(ChatOrder.user_id == caller.user.id)
    if conversation_id is not None:
        query = query.where(ChatOrder.conversation_id == conversation_id)
    return query.order_by(ChatOrder.id.desc())


async def orders_of(caller: Caller, conversation_id: str) -> Sequence[ChatOrder]:
    """A conversation's orders in the built-in CRM, oldest first."""
    rows = await caller.session.scalars(orders_query(caller, conversation_id).order_by(None).order_by(ChatOrder.id))
    return rows.all()


def error_status(err: ConveyorError) -> int:
    """The HTTP status of a webhook's error: the taxonomy's, 503 for anything worth the sender's retry (Temporal or
    the database out of reach, the webhook not configured) but 429 for a rate limit."""
    if isinstance(err, RateLimited):
        return err.http_status
    return 503 if err.retryable else err.http_status
