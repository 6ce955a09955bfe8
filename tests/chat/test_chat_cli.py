"""The chat commands and the demo's chat part against a real stack whose Telegram replies go to a loopback Bot API.

The stack is this module's own (its own dev server, so no other stack's workers take its conversations): its workers
send Telegram replies to ``http://127.0.0.1:<port>`` with the demo bot's token, where the demo serves its local Bot
API while its conversation runs.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.chat import contract
from cli.chat import DEMO_BOT_TOKEN, DEMO_SCRIPT, demo
from cli.context import DemoContext
from conveyor.auth import create_user
from conveyor.temporal import free_port
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.processes import cli_json, run_cli
from tests.helpers.stack import Stack, run_stack, stack_settings

pytestmark = [pytest.mark.stack, pytest.mark.process]


@pytest.fixture(scope="module")
async def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The chat queues' workers and the API on a dev server of their own, sending Telegram replies as the demo bot to
    a loopback port."""
    server = await start_dev_server()
    settings = stack_settings(
        tmp_path_factory.mktemp("chat-var"),
        server.client.service_client.config.target_host,
        telegram_bot_token=SecretStr(DEMO_BOT_TOKEN),
        telegram_api_url=f"http://127.0.0.1:{free_port()}",
    )
    try:
        async with run_stack(server.client, settings, contract.QUEUES) as running:
            yield running
    finally:
        await server.shutdown()


async def named_user(stack: Stack, credits: int = 100) -> tuple[str, int, str]:
    """A user the CLI can act as (``--user NAME``): its name, id and API key."""
    name = f"chat-{uuid.uuid4().hex[:8]}"
    async with stack.sessions.begin() as session:
        user, key = await create_user(session, name, credits)
        return name, user.id, key


async def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await run_cli(stack.settings, *args)


def ok(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stdout + done.stderr
    return cli_json(done)


async def test_send_show_list_and_orders(chat_stack: Stack) -> None:
    name, user_id, key = await named_user(chat_stack)
    first = ok(
        await cli(chat_stack, "chat", "send", "shop-1", DEMO_SCRIPT[0], "--message-id", "1", "--user", name, "--json")
    )
    assert first["queued"] is False and first["reply"].startswith("Hello!")
    assert first["workflow_id"] == f"chat-api-u{user_id}-shop-1" and not first["duplicate"]
    again = ok(
        await cli(chat_stack, "chat", "send", "shop-1", DEMO_SCRIPT[0], "--message-id", "1", "--user", name, "--json")
    )
    assert again["duplicate"] and again["reply"] == first["reply"] and again["trace_id"] == first["trace_id"]

    async with chat_stack.http(key) as http:  # the rest of the order as the same user, through the API
        for number, text in enumerate(DEMO_SCRIPT[1:], 2):
            body = {"chat_id": "shop-1", "text": text, "message_id": number}
            answer = await http.post("/api/chat/messages", json=body)
            assert answer.status_code == 200, answer.text
    assert answer.json()["order_number"] == 1

    shown = ok(await cli(chat_stack, "chat", "show", "shop-1", "--user", name, "--json"))
    assert shown["workflow_id"] == first["workflow_id"] and shown["web_ui"].endswith(first["workflow_id"])
    assert (shown["state"]["stage"], shown["state"]["messages_seen"]) == ("ordered", len(DEMO_SCRIPT))
    assert shown["state"]["recent"][:2] == [f"customer: {DEMO_SCRIPT[0]}", f"assistant: {first['reply']}"]
    [order] = shown["orders"]
    assert (order["customer_name"], order["phone"], order["city"]) == ("Olena Petrenko", "+380671234567", "Kyiv")
    assert order["items"] == [{"sku": "HOODIE-OVS", "size": "M", "quantity": 2, "price": 1290}]
    human = await cli(chat_stack, "chat", "show", "shop-1", "--user", name)
    assert human.returncode == 0 and "ordered" in human.stdout and "Olena Petrenko" in human.stdout
    assert f"Web UI: {shown['web_ui']}" in human.stdout

    orders = ok(await cli(chat_stack, "orders", "list", "--user", name, "--json"))
    assert [(o["number"], o["total"], o["conversation_id"]) for o in orders] == [(1, 2580, first["workflow_id"])]

    queued = ok(
        await cli(
            chat_stack, "chat", "send", "shop-2", "How much is the hoodie?", "--no-wait", "--user", name, "--json"
        )
    )
    assert queued["queued"] is True and queued["reply"] is None
    assert queued["workflow_id"] == f"chat-api-u{user_id}-shop-2"

    async def answered() -> Any:
        later = ok(await cli(chat_stack, "chat", "show", "shop-2", "--user", name, "--json"))
        assert later["state"]["messages_seen"] == 1
        return later

    later = await assert_eventually(answered, within_s=60, interval=0.5)
    assert later["state"]["recent"][1].startswith("assistant: Oversized hoodie costs")
    listed = ok(await cli(chat_stack, "chat", "list", "--user", name, "--json"))
    assert [c["chat_id"] for c in listed] == ["shop-2", "shop-1"]  # newest first
    assert ok(await cli(chat_stack, "chat", "list", "--channel", "telegram", "--user", name, "--json")) == []


async def test_bots_connect_once_and_bad_input_exits_with_one_line(chat_stack: Stack) -> None:
    name, _, _ = await named_user(chat_stack)
    connected = ok(await cli(chat_stack, "chat", "bots", "connect", "telegram", "7001002003", "--user", name, "--json"))
    assert (connected["channel"], connected["bot_id"], connected["created"]) == ("telegram", "7001002003", True)
    again = ok(await cli(chat_stack, "chat", "bots", "connect", "telegram", "7001002003", "--user", name, "--json"))
    assert again["created"] is False
    taken = await cli(chat_stack, "chat", "bots", "connect", "telegram", "7001002003")  # the local user
    assert taken.returncode == 1 and taken.stderr.startswith("error BOT_TAKEN")
    assert [b["bot_id"] for b in ok(await cli(chat_stack, "chat", "bots", "list", "--user", name, "--json"))] == [
        "7001002003"
    ]

    for args, code in [
        (("chat", "send", "shop", "   "), "BAD_OPTION"),  # no text
        (("chat", "send", "shop", "x" * 4097), "BAD_OPTION"),  # past Telegram's 4,096 characters
        (("chat", "send", "not an id!", "hi"), "BAD_OPTION"),
        (("chat", "send", "shop", "hi", "--channel", "sms"), "BAD_OPTION"),
        (("chat", "show", "shop", "--channel", "sms"), "BAD_OPTION"),
        (("chat", "bots", "connect", "telegram", "not-a-number"), "BAD_OPTION"),
        (("chat", "bots", "connect", "whatsapp", "123"), "BAD_OPTION"),
    ]:
        refused = await cli(chat_stack, *args, "--user", name)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert refused.stderr.startswith(f"error {code}: ") and refused.stderr.count("\n") == 1, refused.stderr
    missing = await cli(chat_stack, "chat", "show", "never-written", "--user", name, "--json")
    assert missing.returncode == 1 and cli_json(missing)["error"]["code"] == "CONVERSATION_NOT_FOUND"


async def demo_context(stack: Stack, http: httpx.AsyncClient, **settings: Any) -> DemoContext:
    return DemoContext(stack.settings.model_copy(update=settings), http, stack.client, show=False)


async def test_the_demo_conversation_goes_through_the_telegram_webhook_and_ends_in_an_order(chat_stack: Stack) -> None:
    _, _, key = await named_user(chat_stack)
    async with chat_stack.http(key) as http:
        conversation, health = await demo(await demo_context(chat_stack, http))
        assert (conversation.pipeline, conversation.status) == ("chat: telegram conversation", "completed")
        assert conversation.workflow_id.startswith("chat-telegram-")
        assert f"{len(DEMO_SCRIPT)} messages, {len(DEMO_SCRIPT)} replies" in conversation.outputs
        assert "order #1: 2 × HOODIE-OVS M, 2,580 UAH" in conversation.outputs
        # the conversation and its order belong to the demo bot's owner, who connected it
        detail = (await http.get(f"/api/chat/conversations/{conversation.workflow_id}")).json()
        assert detail["state"]["stage"] == "ordered" and detail["state"]["delivery_error"] is None
        assert [o["phone"] for o in detail["orders"]] == ["+380671234567"]
        assert [b["bot_id"] for b in (await http.get("/api/chat/bots")).json()] == [DEMO_BOT_TOKEN.partition(":")[0]]
    # the health check reached the local Bot API (getMe) while the demo served it
    assert health.status == "completed" and "telegram ok" in health.outputs and "database ok" in health.outputs


async def test_without_a_local_bot_api_the_demo_conversation_goes_through_the_api(chat_stack: Stack) -> None:
    _, _, key = await named_user(chat_stack)
    async with chat_stack.http(key) as http:
        conversation, health = await demo(await demo_context(chat_stack, http, telegram_bot_token=None))
        assert (conversation.pipeline, conversation.status) == ("chat: api conversation", "completed")
        assert "order #1" in conversation.outputs
        orders = (await http.get("/api/orders", params={"conversation_id": conversation.workflow_id})).json()
        assert orders["total"] == 1
    assert health.status == "completed"


async def test_a_demo_conversation_that_ends_without_an_order_fails(
    chat_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.chat.DEMO_SCRIPT", DEMO_SCRIPT[:-1])  # the customer never says "yes"
    _, _, key = await named_user(chat_stack)
    async with chat_stack.http(key) as http:
        conversation, _ = await demo(await demo_context(chat_stack, http, telegram_bot_token=None))
    assert conversation.status == "failed" and "did not end in an order" in conversation.outputs
