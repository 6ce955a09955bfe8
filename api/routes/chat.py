"""Chat over HTTP: the Telegram and ManyChat webhooks, the seed's dispatcher (``POST /api/chat/messages``), your
conversations, bots and the built-in CRM's orders (seed 001, MIRT's workers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from activities.chat.schemas import ConversationView
from api.caller import Caller
from api.deps import CallerDep, StateDep
from api.pages import Page, PageDep, page_of, paginate
from api.services import chat as service
from api.services.chat import Chat, MessageIn, MessageOut, TelegramAccepted
from conveyor.errors import ConveyorError, RateLimited

router = APIRouter(tags=["chat"])


def _chat(state: StateDep) -> Chat:
    return state.shared("chat.state", lambda: Chat.of(state.sessions, state.settings))


def _failure(err: ConveyorError) -> JSONResponse:
    """A webhook's error answer (with ``Retry-After`` where the sender should come back)."""
    status = service.error_status(err)
    headers = None
    if isinstance(err, RateLimited) and err.retry_after is not None:
        headers = {"Retry-After": str(max(1, int(err.retry_after.total_seconds())))}
    elif status == 503:
        headers = {"Retry-After": "5"}
    return JSONResponse({"error": err.to_dict()}, status_code=status, headers=headers)


def _json_body(description: str) -> dict[str, Any]:
    """A raw JSON object body (read as bytes, checked by the service), described for the OpenAPI document."""
    schema = {"type": "object", "description": description}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/webhooks/telegram",
    response_model=TelegramAccepted,
    summary="Telegram webhook (secret token; no API key)",
    responses={
        401: {"description": "missing or wrong X-Telegram-Bot-Api-Secret-Token (nothing started)"},
        400: {"description": "not a Telegram update, an unknown chat type, an empty or too long text"},
        429: {"description": "the bot's owner sends more messages a minute than allowed: Telegram retries"},
        503: {"description": "not configured, or Temporal out of reach: Telegram retries (nothing is lost)"},
    },
    openapi_extra=_json_body("a Telegram Update"),
)
async def telegram_webhook(
    request: Request,
    state: StateDep,
    x_telegram_bot_api_secret_token: str | None = Header(None),
) -> Any:
    """A Telegram Update: 200 once a text message is durably accepted into its chat's conversation (the reply goes
    out through the Bot API); other updates (edits, joins, stickers) are accepted and ignored."""
    body = await request.body()
    try:
        return await service.accept_telegram(
            _chat(state), await state.temporal(), body=body, secret_header=x_telegram_bot_api_secret_token
        )
    except ConveyorError as err:
        return _failure(err)


class DynamicBlock(BaseModel):
    """ManyChat's Dynamic Block: ``{"version": "v2", "content": {"type": …, "messages": [{"type": "text", …}]}}``."""

    version: Literal["v2"]
    content: dict[str, Any]


@router.post(
    "/webhooks/manychat",
    response_model=DynamicBlock,
    summary="ManyChat External Request (bearer secret; no API key)",
    responses={
        401: {"description": "missing or wrong bearer token (nothing started)"},
        400: {"description": "not {subscriber_id, text, message_id}, an empty or too long text"},
        429: {"description": "too many messages a minute, or replies awaited at once, for the bot's owner"},
        503: {"description": "not configured, or Temporal out of reach"},
    },
    openapi_extra=_json_body("a ManyChat External Request"),
)
async def manychat_webhook(
    request: Request,
    state: StateDep,
    authorization: str | None = Header(None),
) -> Any:
    """The reply as a Dynamic Block when it is ready within ``CONVEYOR_CHAT_SYNC_TIMEOUT_S``, else a holding
    message (the reply then follows through ManyChat's sending API)."""
    body = await request.body()
    try:
        return await service.answer_manychat(
            _chat(state), await state.temporal(), body=body, authorization=authorization
        )
    except ConveyorError as err:
        return _failure(err)


@router.post(
    "/api/chat/messages",
    response_model=MessageOut,
    responses={202: {"model": MessageOut, "description": "queued: the reply is sent on the channel, or read later"}},
)
async def post_message(body: MessageIn, caller: CallerDep, state: StateDep) -> Any:
    """The seed's dispatcher: ``wait: true`` answers with the reply (durable all the same); ``wait: false`` queues
    the message and answers 202 with the conversation's workflow id. A repeated ``message_id`` gets the first
    reply, never a second one."""
    out = await service.post_message(_chat(state), caller, body)
    if out.queued:
        return JSONResponse(out.model_dump(mode="json"), status_code=202)
    return out


class ConversationOut(BaseModel):
    """A conversation in a listing."""

    model_config = ConfigDict(from_attributes=True)

    workflow_id: str
    channel: str
    chat_id: str
    created_at: datetime


class OrderOut(BaseModel):
    """An order of the built-in CRM."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: str
    number: int
    items: list[dict[str, Any]]
    customer_name: str
    phone: str
    city: str
    total: int = Field(description="In the catalog's currency.")
    currency: str
    status: str
    created_at: datetime


class ConversationDetail(ConversationOut):
    """A conversation: what its workflow holds now, and its orders in the built-in CRM."""

    state: ConversationView
    orders: list[OrderOut]
    web_ui: str


@router.get("/api/chat/conversations", response_model=Page[ConversationOut])
async def list_conversations(
    caller: CallerDep, window: PageDep, channel: Literal["telegram", "manychat", "api"] | None = None
) -> Page[ConversationOut]:
    """Your conversations (of one channel with ``?channel=``), newest first."""
    rows, total = await paginate(caller.session, service.conversations_query(caller, channel), window)
    return page_of([ConversationOut.model_validate(r) for r in rows], total, window)


@router.get("/api/chat/conversations/{workflow_id}", response_model=ConversationDetail)
async def get_conversation(workflow_id: str, caller: CallerDep) -> ConversationDetail:
    """One of your conversations by its workflow id (``chat-<channel>-<chat_id>``): messages, summary, cart,
    follow-ups sent and orders."""
    return await conversation_detail(caller, workflow_id)


async def conversation_detail(caller: Caller, workflow_id: str) -> ConversationDetail:
    """One of the caller's conversations, as its route and `conveyor chat show` show it."""
    conversation = await service.own_conversation(caller, workflow_id)
    view = await service.view_of(caller, conversation)
    orders = await service.orders_of(caller, conversation.workflow_id)
    return ConversationDetail(
        workflow_id=conversation.workflow_id,
        channel=conversation.channel,
        chat_id=conversation.chat_id,
        created_at=conversation.created_at,
        state=view,
        orders=[OrderOut.model_validate(o) for o in orders],
        web_ui=caller.settings.workflow_ui_url(conversation.workflow_id),
    )


@router.get("/api/orders", response_model=Page[OrderOut])
async def list_orders(caller: CallerDep, window: PageDep, conversation_id: str | None = None) -> Page[OrderOut]:
    """Your orders in the built-in CRM (of one conversation with ``?conversation_id=``), newest first."""
    rows, total = await paginate(caller.session, service.orders_query(caller, conversation_id), window)
    return page_of([OrderOut.model_validate(r) for r in rows], total, window)


class BotIn(BaseModel):
    """A bot to connect to you: its conversations, orders and charges are then yours."""

    channel: Literal["telegram", "manychat"]
    bot_id: str = Field(
        pattern=r"^[0-9]{1,20}$",
        description="The bot's id: the number before ':' in its Telegram token, or the ManyChat page id.",
    )


class BotOut(BaseModel):
    """A connected bot."""

    model_config = ConfigDict(from_attributes=True)

    channel: str
    bot_id: str
    created_at: datetime


@router.post("/api/chat/bots", response_model=BotOut, status_code=201)
async def connect_bot(body: BotIn, caller: CallerDep) -> Any:
    """Connect a bot (idempotent: 200 again; another user's bot is 409 ``BOT_TAKEN``)."""
    bot, created = await service.connect_bot(caller, body.channel, body.bot_id)
    out = BotOut.model_validate(bot)
    return out if created else JSONResponse(out.model_dump(mode="json"), status_code=200)


@router.get("/api/chat/bots", response_model=list[BotOut])
async def list_bots(caller: CallerDep) -> list[BotOut]:
    """Your connected bots."""
    return [BotOut.model_validate(b) for b in (await caller.session.scalars(service.bots_query(caller))).all()]
