"""Chat from the terminal: ``chat send|show|list``, ``chat bots connect|list`` and ``orders list``; and the demo's
part (a scripted Telegram conversation through the webhook, answered at a local Bot API, ending in an order)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer
from pydantic import SecretStr
from rich.table import Table

from cli.context import DemoContext, DemoRun, cli_context, cli_settings, run_command
from cli.output import console, emit_json
from conveyor.errors import BadInput
from conveyor.settings import Settings

if TYPE_CHECKING:
    from cli.local_bot_api import LocalBotApi, SentMessage

CHANNELS = ("api", "telegram", "manychat")
UserOption = Annotated[str | None, typer.Option("--user", help="Act as this user (default: the local user).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ChannelOption = Annotated[
    str,
    typer.Option("--channel", help="api (your own chats), or telegram / manychat (a chat of the bot you own)."),
]

chat_app = typer.Typer(
    help="Chat conversations: send a message, show one, list them; connect bots.", no_args_is_help=True
)
bots_app = typer.Typer(help="Bots: connect a Telegram bot or a ManyChat page to you.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders of the built-in CRM.", no_args_is_help=True)
chat_app.add_typer(bots_app, name="bots")


def _channel(value: str) -> str:
    """The channel named, or BadInput naming the known ones."""
    if value not in CHANNELS:
        raise BadInput(f"--channel: {value!r} is not one of {', '.join(CHANNELS)}", code="BAD_OPTION")
    return value


# --- chat send ----------------------------------------------------------------------------------------------------


async def send(
    settings: Settings,
    chat_id: str,
    text: str,
    *,
    wait: bool,
    message_id: str | None,
    channel: str,
    user: str | None,
) -> dict[str, Any]:
    """Post one message to a conversation of the caller: its reply, or where it was queued (``MessageOut``)."""
    from api.services import chat as service

    number = int(message_id) if message_id is not None and message_id.isdigit() else message_id
    body = service.MessageIn(channel=_channel(channel), chat_id=chat_id, text=text, message_id=number, wait=wait)
    async with cli_context(settings, user) as cli, cli.caller() as caller:
        out = await service.post_message(service.Chat.of(cli.sessions, settings), caller, body)
        return out.model_dump(mode="json")


@chat_app.command("send")
def chat_send(
    chat_id: Annotated[str, typer.Argument(help="The chat: any id of yours (api), or the Telegram/ManyChat chat.")],
    text: Annotated[str, typer.Argument(help="The customer's message (1 to 4,096 characters).")],
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Queue the message and return at once (read the reply with show).")
    ] = False,
    message_id: Annotated[
        str | None,
        typer.Option("--message-id", help="The message's id: a repeat with the same id gets the first reply again."),
    ] = None,
    channel: ChannelOption = "api",
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a message to a conversation and print its reply (one credit), or that it was queued."""
    out = run_command(
        send(cli_settings(), chat_id, text, wait=not no_wait, message_id=message_id, channel=channel, user=user),
        as_json=as_json,
    )
    if as_json:
        emit_json(out)
    elif out["queued"]:
        console.print(
            f"queued in {out['workflow_id']} (trace {out['trace_id']}); "
            f"`conveyor chat show {chat_id}` shows the reply once it is made"
        )
    else:
        console.print(out["reply"], markup=False, highlight=False)
        notes = [f"order #{out['order_number']} placed"] if out.get("order_number") else []
        if out["duplicate"]:
            notes.append("a repeat of a message already answered: its first reply")
        console.print(f"[dim]{out['workflow_id']} · {'; '.join([*notes, out['trace_id']])}[/dim]")


# --- chat show ----------------------------------------------------------------------------------------------------


async def show(settings: Settings, chat_id: str, channel: str, user: str | None) -> dict[str, Any]:
    """A conversation of the caller as ``GET /api/chat/conversations/{workflow_id}`` answers it."""
    from api.routes.chat import conversation_detail
    from api.services import chat as service

    _channel(channel)
    async with cli_context(settings, user) as cli, cli.caller() as caller:
        detail = await conversation_detail(caller, service.conversation_id_of(caller, chat_id, channel))
        return detail.model_dump(mode="json")


def _items(items: list[dict[str, Any]]) -> str:
    return ", ".join(f"{i.get('quantity', 1)} × {i.get('sku', '?')} {i.get('size', '')}".strip() for i in items)


def print_orders(orders: list[dict[str, Any]], title: str = "orders") -> None:
    """A table of orders: number, items, total, customer, phone, city, status."""
    table = Table("#", "items", "total", "customer", "phone", "city", "status", "conversation", title=title)
    for o in orders:
        table.add_row(
            str(o["number"]),
            _items(o["items"]),
            f"{o['total']:,} {o['currency']}",
            o["customer_name"],
            o["phone"],
            o["city"],
            o["status"],
            o["conversation_id"],
        )
    console.print(table)


def print_conversation(detail: dict[str, Any]) -> None:
    """The conversation: stage, summary, recent messages, cart, follow-ups, orders and its Web UI link."""
    state = detail["state"]
    console.print(
        f"[bold]{detail['workflow_id']}[/bold] · {detail['channel']} chat {detail['chat_id']} · stage "
        f"[bold]{state['stage']}[/bold] · {state['messages_seen']} messages · {state['followups_sent']} follow-ups sent"
        f" · {state['orders_placed']} orders"
    )
    if state["summary"]:
        console.print("[bold]summary[/bold]", markup=True)
        console.print(state["summary"], markup=False, highlight=False)
    messages = Table("who", "message", title="recent messages", show_lines=True)
    for line in state["recent"]:
        who, _, said = line.partition(": ")
        messages.add_row(who, said)
    console.print(messages)
    if state["cart"]:
        console.print(f"cart: {_items(state['cart'])}")
    if state.get("delivery_error"):
        console.print(f"[red]the latest reply was not delivered:[/red] {state['delivery_error']}")
    if detail["orders"]:
        print_orders(detail["orders"], title="orders (built-in CRM)")
    console.print(f"Web UI: {detail['web_ui']}")


@chat_app.command("show")
def chat_show(
    chat_id: Annotated[str, typer.Argument(help="The chat id, as given to `chat send` (or Telegram's chat id).")],
    channel: ChannelOption = "api",
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """A conversation: stage, summary, recent messages, cart, follow-ups, orders and its Web UI link."""
    detail = run_command(show(cli_settings(), chat_id, channel, user), as_json=as_json)
    if as_json:
        emit_json(detail)
    else:
        print_conversation(detail)


# --- chat list ----------------------------------------------------------------------------------------------------


async def _conversations(settings: Settings, channel: str | None, limit: int, user: str | None) -> list[dict[str, Any]]:
    from api.pages import PageParams, paginate
    from api.routes.chat import ConversationOut
    from api.services import chat as service

    if channel is not None:
        _channel(channel)
    async with cli_context(settings, user) as cli, cli.caller() as caller:
        rows, _ = await paginate(caller.session, service.conversations_query(caller, channel), PageParams(limit, 0))
        return [
            {
                **ConversationOut.model_validate(r).model_dump(mode="json"),
                "web_ui": settings.workflow_ui_url(r.workflow_id),
            }
            for r in rows
        ]


LimitOption = Annotated[int, typer.Option("--limit", min=1, max=200, help="How many, newest first.")]


@chat_app.command("list")
def chat_list(
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel's conversations.")] = None,
    limit: LimitOption = 50,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your conversations, newest first."""
    rows = run_command(_conversations(cli_settings(), channel, limit, user), as_json=as_json)
    if as_json:
        emit_json(rows)
        return
    table = Table("workflow id", "channel", "chat", "started", title="conversations")
    for r in rows:
        table.add_row(r["workflow_id"], r["channel"], r["chat_id"], r["created_at"][:19])
    console.print(table)


# --- chat bots connect / list -------------------------------------------------------------------------------------


async def _connect(settings: Settings, channel: str, bot_id: str, user: str | None) -> dict[str, Any]:
    from api.routes.chat import BotIn, BotOut
    from api.services import chat as service

    wanted = BotIn.model_validate({"channel": channel, "bot_id": bot_id})
    async with cli_context(settings, user) as cli, cli.caller() as caller:
        bot, created = await service.connect_bot(caller, wanted.channel, wanted.bot_id)
        return {**BotOut.model_validate(bot).model_dump(mode="json"), "owner": cli.user.name, "created": created}


@bots_app.command("connect")
def bots_connect(
    channel: Annotated[str, typer.Argument(help="telegram or manychat.")],
    bot_id: Annotated[
        str, typer.Argument(help="The number before ':' in the Telegram token, or the ManyChat page id.")
    ],
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Connect a bot to you: its conversations, orders and charges are then yours."""
    done = run_command(_connect(cli_settings(), channel, bot_id, user), as_json=as_json)
    if as_json:
        emit_json(done)
    else:
        verb = "connected" if done["created"] else "already connected"
        console.print(f"{done['channel']} bot {done['bot_id']} {verb} to {done['owner']}")


async def _bots(settings: Settings, user: str | None) -> list[dict[str, Any]]:
    from api.routes.chat import BotOut
    from api.services import chat as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        rows = (await caller.session.scalars(service.bots_query(caller))).all()
        return [BotOut.model_validate(b).model_dump(mode="json") for b in rows]


@bots_app.command("list")
def bots_list(user: UserOption = None, as_json: JsonOption = False) -> None:
    """Your connected bots."""
    rows = run_command(_bots(cli_settings(), user), as_json=as_json)
    if as_json:
        emit_json(rows)
        return
    table = Table("channel", "bot id", "connected", title="bots")
    for r in rows:
        table.add_row(r["channel"], r["bot_id"], r["created_at"][:19])
    console.print(table)


# --- orders list --------------------------------------------------------------------------------------------------


async def _orders(settings: Settings, conversation: str | None, limit: int, user: str | None) -> list[dict[str, Any]]:
    from api.pages import PageParams, paginate
    from api.routes.chat import OrderOut
    from api.services import chat as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        rows, _ = await paginate(caller.session, service.orders_query(caller, conversation), PageParams(limit, 0))
        return [OrderOut.model_validate(o).model_dump(mode="json") for o in rows]


@orders_app.command("list")
def orders_list(
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Only this conversation's (its workflow id).")
    ] = None,
    limit: LimitOption = 50,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your orders in the built-in CRM, newest first."""
    rows = run_command(_orders(cli_settings(), conversation, limit, user), as_json=as_json)
    if as_json:
        emit_json(rows)
    else:
        print_orders(rows)


def register(app: typer.Typer) -> None:
    """Add ``conveyor chat`` (with ``chat bots``) and ``conveyor orders``."""
    app.add_typer(chat_app, name="chat")
    app.add_typer(orders_app, name="orders")


# --- the demo's part ----------------------------------------------------------------------------------------------

#: What the demo's customer writes, one message each: the local assistant answers, collects the details and places
#: the order on the last one.
DEMO_SCRIPT = (
    "Hello!",
    "What sizes does the hoodie come in?",
    "I want 2 hoodies size M",
    "Olena Petrenko",
    "+380671234567",
    "Kyiv",
    "yes",
)
#: The demo bot's token: its id (before ':') is the bot the demo user connects; the secret part means nothing.
DEMO_BOT_TOKEN = "4242424242:conveyor-demo-local-bot"
#: How long the demo waits for one reply (the first also starts the conversation and warms the workers).
DEMO_REPLY_TIMEOUT_S = 60.0
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def demo_stack_settings(settings: Settings) -> dict[str, Any]:
    """Settings a stack the demo starts runs with, so its Telegram replies reach the demo's local Bot API: the demo
    bot's token and a free loopback port; none when a bot token is set (a configured bot is left alone)."""
    from conveyor.temporal import free_port

    if _secret(settings.telegram_bot_token):
        return {}
    return {
        "telegram_bot_token": SecretStr(DEMO_BOT_TOKEN),
        "telegram_api_url": f"http://127.0.0.1:{free_port()}",
    }


def local_bot_api_address(settings: Settings) -> tuple[str, int] | None:
    """Where the demo serves the Bot API: the loopback host and port of ``CONVEYOR_TELEGRAM_API_URL`` when a bot
    token is set; ``None`` when replies would go anywhere else (Telegram itself, another machine)."""
    url = urlsplit(settings.telegram_api_url)
    if not _secret(settings.telegram_bot_token) or url.scheme != "http" or url.hostname not in _LOOPBACK_HOSTS:
        return None
    if url.port is None or url.path.strip("/"):
        return None
    return url.hostname, url.port


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """A scripted conversation that ends in an order, then the health check once.

    Through ``POST /webhooks/telegram`` with the replies answered at a local Bot API when the stack sends Telegram
    replies to one on loopback (a stack the demo starts does, unless a bot token is set); otherwise through
    ``POST /api/chat/messages`` (a real bot is never sent a made-up customer's messages).
    """
    from api.services.chat import telegram_secret
    from cli.local_bot_api import start_local_bot_api

    address = local_bot_api_address(ctx.settings)
    secret = telegram_secret(ctx.settings)
    if _secret(ctx.settings.telegram_bot_token):
        why = f"Telegram replies go to {ctx.settings.telegram_api_url}, not to a local Bot API"
    else:
        why = "no Telegram bot is configured"
    runs: list[DemoRun] | None = None
    if address is not None and secret is not None:
        try:
            bot_api = start_local_bot_api(_secret(ctx.settings.telegram_bot_token), *address)
        except OSError as err:
            why = f"{ctx.settings.telegram_api_url} is taken ({err.strerror}): not the demo's to serve"
        else:
            try:
                runs = await _telegram_conversation(ctx, bot_api, secret)
                runs.append(await _health(ctx))
            finally:
                bot_api.stop()
    elif address is not None:
        why = "the Telegram webhook has no secret (set CONVEYOR_TELEGRAM_WEBHOOK_SECRET)"
    if runs is None:
        if ctx.show:
            console.print(f"[dim]chat: {why}; the conversation goes through POST /api/chat/messages[/dim]")
        runs = [await _api_conversation(ctx), await _health(ctx)]
    return runs


def _update(update_id: int, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
    """A Telegram Update carrying a private text message from the demo's customer."""
    customer = {"id": chat_id, "is_bot": False, "first_name": "Olena", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Olena"},
            "from": customer,
            "text": text,
        },
    }


async def _telegram_conversation(ctx: DemoContext, bot_api: LocalBotApi, secret: str) -> list[DemoRun]:
    """Post the script as Telegram updates, one at a time, each waiting for its reply at the local Bot API."""
    from activities.chat.contract import conversation_workflow_id
    from activities.chat.telegram import SECRET_HEADER

    bot_id = bot_api.token.partition(":")[0]
    connected = await ctx.http.post("/api/chat/bots", json={"channel": "telegram", "bot_id": bot_id})
    connected.raise_for_status()  # the bot's conversations and orders are the demo user's
    chat_id = 10**9 + secrets.randbelow(10**9)  # a new customer each run
    workflow_id = conversation_workflow_id("telegram", chat_id)
    first_update = secrets.randbelow(10**8)
    transcript: list[tuple[str, str]] = []
    problem = ""
    t0 = time.monotonic()
    # Telegram calls the webhook without an API key: the secret token is its credential
    async with httpx.AsyncClient(base_url=ctx.http.base_url, timeout=30) as telegram:
        for number, text in enumerate(DEMO_SCRIPT, 1):
            before = len(bot_api.sent_to(chat_id))
            answer = await telegram.post(
                "/webhooks/telegram",
                json=_update(first_update + number, chat_id, number, text),
                headers={SECRET_HEADER: secret},
            )
            answer.raise_for_status()
            sent = await _sent_after(bot_api, chat_id, before, DEMO_REPLY_TIMEOUT_S)
            if not sent:
                problem = await _undelivered(ctx, workflow_id, text)
                transcript.append((text, ""))
                break
            transcript.append((text, "\n".join(m.text for m in sent)))
    label, column = "chat: telegram conversation", "bot (as the local Bot API received it)"
    return [await _conversation_run(ctx, label, column, workflow_id, transcript, t0, problem)]


async def _sent_after(bot_api: LocalBotApi, chat_id: int, before: int, within_s: float) -> list[SentMessage]:
    """The messages the bot sent to ``chat_id`` beyond the first ``before``, once there is one (empty: none came)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        sent = bot_api.sent_to(chat_id)[before:]
        if sent:
            return sent
        await asyncio.sleep(0.05)
    return []


async def _undelivered(ctx: DemoContext, workflow_id: str, text: str) -> str:
    """Why no reply to ``text`` reached the local Bot API, as far as the conversation tells."""
    found = await ctx.http.get(f"/api/chat/conversations/{workflow_id}")
    if found.status_code != 200:
        return f"no reply to {text!r} within {DEMO_REPLY_TIMEOUT_S:g} s, and the conversation is not readable"
    error = found.json()["state"].get("delivery_error")
    if error:
        return f"the reply to {text!r} was not delivered: {error}"
    return f"no reply to {text!r} reached the local Bot API within {DEMO_REPLY_TIMEOUT_S:g} s"


async def _api_conversation(ctx: DemoContext) -> DemoRun:
    """Post the script to ``POST /api/chat/messages``, waiting for each reply."""
    chat_id = f"demo-{uuid.uuid4().hex[:10]}"
    transcript: list[tuple[str, str]] = []
    workflow_id = ""
    problem = ""
    t0 = time.monotonic()
    for number, text in enumerate(DEMO_SCRIPT, 1):
        body = {"channel": "api", "chat_id": chat_id, "text": text, "message_id": number, "wait": True}
        answer = await ctx.http.post("/api/chat/messages", json=body, timeout=120)
        answer.raise_for_status()
        out = answer.json()
        workflow_id = out["workflow_id"]
        if out["queued"]:
            problem = f"no reply to {text!r} within the wait; it was queued"
            transcript.append((text, ""))
            break
        transcript.append((text, out["reply"]))
    label, column = "chat: api conversation", "bot (POST /api/chat/messages answered)"
    return await _conversation_run(ctx, label, column, workflow_id, transcript, t0, problem)


async def _conversation_run(
    ctx: DemoContext,
    label: str,
    column: str,
    workflow_id: str,
    transcript: list[tuple[str, str]],
    t0: float,
    problem: str,
) -> DemoRun:
    """Show the transcript and the order; the summary row, failed unless the conversation ended in an order."""
    from conveyor.client import describe

    orders = (await ctx.http.get("/api/orders", params={"conversation_id": workflow_id})).json()["items"]
    if not orders and not problem:
        problem = "the conversation did not end in an order"
    if ctx.show:
        table = Table("#", "customer", column, title=f"{label} ({workflow_id})", show_lines=True)
        for number, (said, replied) in enumerate(transcript, 1):
            table.add_row(str(number), said, replied or "[red]no reply[/red]")
        console.print(table)
        if orders:
            print_orders(orders, title="the order, in the built-in CRM (GET /api/orders)")
        console.print(f"Web UI: {ctx.settings.workflow_ui_url(workflow_id)}")
        if problem:
            console.print(f"[red]chat: {problem}[/red]")
    outputs = f"{len(transcript)} messages, {sum(1 for _, r in transcript if r)} replies"
    if orders:
        order = orders[-1]
        outputs += f"; order #{order['number']}: {_items(order['items'])}, {order['total']:,} {order['currency']}"
    if problem:
        outputs += f"; {problem}"
    final = await describe(ctx.client, workflow_id)
    return ctx.run(label, final, t0, "failed" if problem else "completed", outputs)


async def _health(ctx: DemoContext) -> DemoRun:
    """The 5-minute health schedule's workflow, run once now: ping, then the database and channel API checks."""
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from activities.chat import contract
    from activities.chat.schemas import HealthReport
    from conveyor.client import describe
    from conveyor.temporal import PIPELINE_ATTR

    t0 = time.monotonic()
    health_id = f"chat-health-demo-{uuid.uuid4().hex[:8]}"
    reports: list[HealthReport] = await ctx.client.execute_workflow(
        contract.HEALTH_WORKFLOW,
        contract.HealthRun(source="demo"),
        id=health_id,
        task_queue=contract.DEFAULT_QUEUE,
        result_type=list[HealthReport],
        search_attributes=TypedSearchAttributes([SearchAttributePair(PIPELINE_ATTR, contract.NAME)]),
    )
    checks = ", ".join(f"{r.name.removeprefix('chat.')} {'ok' if r.ok else 'failing'}" for r in reports)
    return ctx.run("chat: health", await describe(ctx.client, health_id), t0, "completed", checks)
