"""A chat stack for tests: the chat queues' workers and the API against a dev server, every outside service the chat
pipeline talks to being a local fake on 127.0.0.1 (Telegram's Bot API, ManyChat, an outside CRM, an OpenAI-compatible
model); Telegram updates and ManyChat requests as the webhooks receive them."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.chat import contract
from conveyor.settings import Settings
from tests.helpers.fakes import FakeCrm, FakeManyChat, FakeOpenAI, FakeTelegram, Recorded, Response
from tests.helpers.stack import Stack, run_stack, stack_settings

#: The Telegram webhook's secret token and ManyChat's External Request bearer in every chat stack.
TELEGRAM_SECRET = "tg-webhook-secret-0123456789"
MANYCHAT_SECRET = "mc-webhook-secret-0123456789"
#: The ids of the fakes' bots (the numeric part of their tokens), connected to the stack's bot owner.
TELEGRAM_BOT_ID = "123456789"
MANYCHAT_PAGE_ID = "1234567"

_ids = itertools.count(1)


def fresh_id() -> int:
    """An id no other test of the process uses (chats, messages, updates, subscribers alike)."""
    return 10_000 + next(_ids)


class TimedTelegram(FakeTelegram):
    """The fake Bot API, also noting when each request arrived (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, Recorded]] = []
        super().__init__()

    def _handle(self, request: Recorded) -> Response:
        self.arrivals.append((time.monotonic(), request))
        return super()._handle(request)

    def sends_to(self, chat_id: int | str) -> list[tuple[float, Recorded]]:
        """Every ``sendMessage`` request for ``chat_id`` (refused ones included), with its arrival time."""
        return [
            (at, r)
            for at, r in list(self.arrivals)
            if r.path.endswith("/sendMessage") and str(r.json().get("chat_id")) == str(chat_id)
        ]

    def sent_to(self, chat_id: int | str) -> list[tuple[int | None, str]]:
        """The messages the fake accepted for ``chat_id``, in order, as ``(reply_to, text)``."""
        return [(m.reply_to, m.text) for m in self.sent if str(m.chat_id) == str(chat_id)]


@dataclass
class ChatFakes:
    """The outside services of a chat stack (``model`` and ``crm`` only when the stack uses them)."""

    telegram: TimedTelegram
    manychat: FakeManyChat
    crm: FakeCrm | None = None
    model: FakeOpenAI | None = None

    def stop(self) -> None:
        """Stop every fake."""
        for fake in (self.telegram, self.manychat, self.crm, self.model):
            if fake is not None:
                fake.stop()


@contextmanager
def chat_fakes(*, crm: bool = False, model: FakeOpenAI | None = None) -> Iterator[ChatFakes]:
    """Fake Telegram and ManyChat (and an outside CRM, and ``model``) served until the block ends."""
    fakes = ChatFakes(TimedTelegram(), FakeManyChat(), FakeCrm() if crm else None, model)
    for fake in (fakes.telegram, fakes.manychat, fakes.crm, fakes.model):
        if fake is not None:
            fake.start()
    try:
        yield fakes
    finally:
        fakes.stop()


def chat_values(fakes: ChatFakes) -> dict[str, Any]:
    """The chat settings pointing at ``fakes`` (the model and outside CRM only when there are fakes of them)."""
    values: dict[str, Any] = {
        "telegram_api_url": fakes.telegram.url,
        "telegram_bot_token": fakes.telegram.token,
        "telegram_webhook_secret": TELEGRAM_SECRET,
        "manychat_webhook_secret": MANYCHAT_SECRET,
        "manychat_api_url": fakes.manychat.url,
        "manychat_api_token": fakes.manychat.api_token,
    }
    if fakes.model is not None:
        values |= {"llm_base_url": fakes.model.base_url, "llm_api_key": fakes.model.api_key, "llm_model": "gpt-test"}
    if fakes.crm is not None:
        values |= {"crm_url": fakes.crm.url, "crm_api_key": fakes.crm.api_key}
    return values


def chat_settings(var: Path, temporal_address: str, fakes: ChatFakes, **overrides: Any) -> Settings:
    """A test stack's settings with the chat pipeline pointed at ``fakes``."""
    return stack_settings(var, temporal_address, **(chat_values(fakes) | overrides))


def chat_env(fakes: ChatFakes) -> dict[str, str]:
    """The same chat settings as environment variables, for a ``conveyor worker`` child."""
    return {f"CONVEYOR_{name.upper()}": str(value) for name, value in chat_values(fakes).items()}


@dataclass
class ChatStack:
    """A running chat stack: its handles, fakes, and the user owning its Telegram bot and ManyChat page."""

    stack: Stack
    fakes: ChatFakes
    owner_id: int
    owner: httpx.AsyncClient
    """The bots' owner's API client: the webhooks' conversations and orders are theirs."""
    hooks: httpx.AsyncClient
    """A client without an API key, as Telegram and ManyChat call the webhooks."""

    @property
    def telegram(self) -> TimedTelegram:
        """The fake Bot API."""
        return self.fakes.telegram

    @property
    def client(self) -> Client:
        """The Temporal client."""
        return self.stack.client

    async def tenant(self, credits: int = 10_000) -> tuple[int, httpx.AsyncClient]:
        """A new user and its API client (closed with the stack)."""
        user_id, key = await self.stack.new_user(credits)
        return user_id, self.stack.http(key)


@asynccontextmanager
async def run_chat_stack(client: Client, settings: Settings, fakes: ChatFakes) -> AsyncIterator[ChatStack]:
    """The chat queues' workers and the API (as ``run_stack`` runs them), the bots connected to a new user."""
    async with run_stack(client, settings, contract.QUEUES) as stack:
        owner_id, key = await stack.new_user(1_000_000)
        async with stack.http(key) as owner, httpx.AsyncClient(base_url=stack.api_url, timeout=60) as hooks:
            for channel, bot_id in (("telegram", TELEGRAM_BOT_ID), ("manychat", MANYCHAT_PAGE_ID)):
                connected = await owner.post("/api/chat/bots", json={"channel": channel, "bot_id": bot_id})
                assert connected.status_code == 201, connected.text
            yield ChatStack(stack, fakes, owner_id, owner, hooks)


# --- what the webhooks receive -------------------------------------------------------------------------------------


def text_update(chat_id: int, message_id: int, text: str, *, chat_type: str = "private") -> dict[str, Any]:
    """A Telegram update carrying a new text message (``update_id`` fresh)."""
    return {
        "update_id": fresh_id(),
        "message": {
            "message_id": message_id,
            "date": 1_767_225_600,
            "chat": {"id": chat_id, "type": chat_type},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Olena", "language_code": "en"},
            "text": text,
        },
    }


async def post_update(
    hooks: httpx.AsyncClient, update: dict[str, Any] | bytes, *, secret: str | None = TELEGRAM_SECRET
) -> httpx.Response:
    """POST an update (a dict, or raw bytes as they were delivered) to the Telegram webhook with ``secret``."""
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return await hooks.post("/webhooks/telegram", content=body, headers=headers)


async def post_manychat(
    hooks: httpx.AsyncClient, subscriber_id: int, message_id: int, text: str, *, secret: str = MANYCHAT_SECRET
) -> httpx.Response:
    """A ManyChat External Request for ``text`` (ids sent as numbers, as a flow often sends them)."""
    body = {"subscriber_id": subscriber_id, "text": text, "message_id": message_id}
    return await hooks.post("/webhooks/manychat", json=body, headers={"Authorization": f"Bearer {secret}"})


async def workflow_exists(client: Client, workflow_id: str) -> bool:
    """Whether Temporal has a workflow ``workflow_id`` (any run, any status)."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
