"""The demo's local Bot API answers the pipeline's Telegram client like the Bot API, and the demo sends replies to it
only where the stack's settings point Telegram at a loopback address."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from activities.chat.telegram import TelegramClient
from cli.chat import DEMO_BOT_TOKEN, demo_stack_settings, local_bot_api_address
from cli.local_bot_api import LocalBotApi, local_bot_api
from conveyor.errors import BadInput
from conveyor.settings import Settings

TOKEN = "5550001:local-test-token"


@pytest.fixture
def bot_api() -> Iterator[LocalBotApi]:
    with local_bot_api(TOKEN) as api:
        yield api


async def test_the_pipelines_client_sends_replies_and_chat_actions_to_it(bot_api: LocalBotApi) -> None:
    client = TelegramClient(TOKEN, api_url=bot_api.url)
    try:
        assert (await client.get_me())["id"] == 5550001
        first = await client.send_message(42, "Hello!", reply_to=7)
        parts = await client.send_message(42, "x" * 5000)  # split in two past 4,096 characters
        await client.send_chat_action(42, "typing")
    finally:
        await client.aclose()

    assert len(first) == 1 and len(parts) == 2 and len(set(first + parts)) == 3
    sent = bot_api.sent_to(42)
    assert [(m.text[:6], m.reply_to) for m in sent] == [("Hello!", 7), ("xxxxxx", None), ("xxxxxx", None)]
    assert bot_api.actions_in(42) == ["typing"] and bot_api.sent_to(43) == []


async def test_it_refuses_what_the_bot_api_refuses(bot_api: LocalBotApi) -> None:
    stranger = TelegramClient("5550001:someone-else", api_url=bot_api.url)
    try:
        with pytest.raises(BadInput) as refused:
            await stranger.send_message(42, "hi")
    finally:
        await stranger.aclose()
    assert refused.value.code == "TELEGRAM_TOKEN_INVALID"

    async with httpx.AsyncClient(base_url=f"{bot_api.url}/bot{TOKEN}") as http:
        empty = await http.post("/sendMessage", json={"chat_id": 42, "text": "  "})
        long = await http.post("/sendMessage", json={"chat_id": 42, "text": "x" * 4097})
        no_chat = await http.post("/sendMessage", json={"chat_id": "", "text": "hi"})
        action = await http.post("/sendChatAction", json={"chat_id": 42, "action": "dancing"})
        unknown = await http.post("/sendSticker", json={"chat_id": 42})
        form = await http.post("/sendMessage", data={"chat_id": "42", "text": "from a form"})
    assert [(r.status_code, r.json()["ok"]) for r in (empty, long, no_chat, action, unknown)] == [
        (400, False),
        (400, False),
        (400, False),
        (400, False),
        (404, False),
    ]
    assert empty.json()["description"] == "Bad Request: message text is empty"
    assert form.status_code == 200 and form.json()["result"]["chat"]["id"] == 42
    assert [m.text for m in bot_api.sent_to(42)] == ["from a form"]


def test_a_stack_the_demo_starts_sends_replies_to_a_loopback_bot_api_unless_a_bot_is_configured() -> None:
    chosen = demo_stack_settings(Settings(telegram_bot_token=None))
    assert chosen["telegram_bot_token"].get_secret_value() == DEMO_BOT_TOKEN
    address = local_bot_api_address(Settings(**chosen))
    assert address is not None and address[0] == "127.0.0.1" and f":{address[1]}" in chosen["telegram_api_url"]

    assert demo_stack_settings(Settings(telegram_bot_token=SecretStr("1:real-bot"))) == {}


@pytest.mark.parametrize(
    ("token", "url", "served"),
    [
        ("1:t", "http://127.0.0.1:8081", ("127.0.0.1", 8081)),
        ("1:t", "http://localhost:9000/", ("localhost", 9000)),
        ("1:t", "https://api.telegram.org", None),  # Telegram itself: never sent the demo's customer
        ("1:t", "http://10.0.0.5:8081", None),  # another machine's Bot API server
        ("1:t", "http://127.0.0.1", None),
        ("1:t", "http://127.0.0.1:8081/proxy", None),
        (None, "http://127.0.0.1:8081", None),  # no bot: the stack sends no Telegram replies
        ("", "http://127.0.0.1:8081", None),
    ],
)
def test_the_demo_serves_the_bot_api_only_on_a_loopback_url_with_a_bot(
    token: str | None, url: str, served: tuple[str, int] | None
) -> None:
    secret = SecretStr(token) if token is not None else None
    assert local_bot_api_address(Settings(telegram_bot_token=secret, telegram_api_url=url)) == served
