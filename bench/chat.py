"""Benchmark: Telegram chat messages through Conveyor's chat pipeline vs the seed's Celery + Redis path, one run.

1. Builds one workload: ``--chats`` private chats of ``--per-chat`` Telegram text messages each, every one an
   ``Update`` body as Telegram posts it. Each text carries a ``[chat/message]`` tag, so the fake model can tell
   which message a request answers (for the split of the overhead below).
2. Two fakes served from this process on loopback ports: an OpenAI-compatible ``POST /v1/chat/completions`` that
   answers after ``--model-latency`` seconds (``asyncio.sleep``: any number of requests wait at once, so the model
   is never the bottleneck) and records when each request came and was answered; and a Bot API
   (``/bot<token>/sendMessage``, ``sendChatAction``) that records each reply's chat, text, ``reply_to`` message and
   arrival time. Both check the key and the token a real one would.
3. Conveyor: the dev server, migrated SQLite, the API as its own process (``conveyor api``) and a ``conveyor worker
   --group chat`` process, pointed at the fakes (``CONVEYOR_LLM_*``, ``CONVEYOR_TELEGRAM_*``). Its webhook
   (``POST /webhooks/telegram``) answers once the message is durably handed to the chat's conversation workflow;
   the workflow asks the model on ``chat.llm`` and sends the reply on ``chat.webhooks``.
4. Celery: ``redis-server`` on a free loopback port, the peer endpoint of :mod:`bench.celery_chat` as its own
   uvicorn process and a ``celery worker --concurrency=4 --prefetch-multiplier=1 -Q llm`` prefork process running
   the seed's ``process_and_respond`` (``acks_late``): the model, then ``sendMessage``.
5. Both sides get one warm-up message on another chat first, then the same updates, posted as Telegram delivers a
   bot's webhook: each chat's updates one after another, up to ``--concurrency`` requests at once (Telegram's
   ``max_connections``, 40 by default), a 503 retried. ``--pace reply`` (the default) is a customer who reads the
   answer before writing again: a chat's next message is posted once the reply to its previous one reached the Bot
   API (plus ``--think`` s), so 40 chats keep up to 40 messages waiting for a reply. ``--pace burst`` is a customer
   typing several messages in a row: the next is posted as soon as the previous was answered 2xx, so a chat's later
   messages queue behind its earlier ones (on Conveyor by design: it answers a chat's messages in order), which
   tests the order and counts that wait in the overhead. Done when every message has a reply at the fake Bot API,
   then ``SETTLE_S`` more for late second replies.

Measured per side: messages replied per second, from the first post to the last first reply; the accept latency of
the webhook; and per message the **overhead**, the time from posting the update to its reply reaching the Bot API
minus the model's ``--model-latency``, split into *to model* (post → the model request arrives: acceptance,
queueing, dispatch) and *after model* (the model's answer → ``sendMessage``); and the peak number of model requests
in flight. For Conveyor also the dispatch time from a message's *turn* (posted, and its chat's previous reply out)
to its model request, which leaves out the wait behind the chat's own earlier messages.
A message with no reply or two replies prints a FAIL line and exits 1, and so do a chat's replies out of order on
Conveyor (which keeps each chat's order); Celery's out-of-order chats are reported only (the seed's does not order).

Needs ``scripts/bench-setup.sh`` (redis-server, Celery and redis-py: bench-only). Its last line:
``chat: conveyor P msgs/s, celery Q msgs/s, ratio R, p95 overhead O ms`` (Conveyor's p95; goal R ≥ 1.0, O < 300).
Usage: ``python -m bench.chat [--chats N] [--per-chat N] [--model-latency S] [--concurrency N] [--pace reply|burst]
[--think S] [--only conveyor|celery]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from activities.chat.telegram import SECRET_HEADER
from bench.webhooks import Posting, serve, serve_process, start_redis, wait_for_count
from conveyor.temporal import free_port, stop_process

console = Console(width=None if sys.stdout.isatty() else 120)
SECRET = "bench-telegram-webhook-secret"
BOT_TOKEN = "123456:bench-token"
LLM_API_KEY = "bench"
LLM_MODEL = "bench-model"
WEBHOOK_PATH = "/webhooks/telegram"
TEXT = "how much is the hoodie?"
ANSWER = "The hoodie is 1,450 UAH; sizes S to XL are in stock. Which size would you like?"
FIRST_CHAT = 5_000_001
WARMUP_CHAT = 4_999_999
#: How long a side may take to reply to everything before its missing replies count as lost.
PROCESS_TIMEOUT_S = 300.0
#: After the last reply, wait this long so late second replies show up.
SETTLE_S = 2.0
_TAG = re.compile(r"\[(\d+)/(\d+)\]")

Key = tuple[int, int]
"""A message: ``(chat_id, message_id)``."""


# --- workload -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One customer message: its chat, its id in the chat and the update body Telegram posts for it."""

    chat_id: int
    message_id: int
    body: bytes

    @property
    def key(self) -> Key:
        """The message as ``(chat_id, message_id)``."""
        return self.chat_id, self.message_id


def build_workload(
    chats: int, per_chat: int, first_chat: int = FIRST_CHAT, first_update: int = 1
) -> list[list[Message]]:
    """``per_chat`` text messages in each of ``chats`` private chats, one list per chat, in the chat's order."""
    now = int(time.time())
    update_id = first_update
    workload: list[list[Message]] = []
    for chat_id in range(first_chat, first_chat + chats):
        messages = []
        for message_id in range(1, per_chat + 1):
            update = {
                "update_id": update_id,
                "message": {
                    "message_id": message_id,
                    "date": now,
                    "chat": {"id": chat_id, "type": "private"},
                    "from": {"id": chat_id, "is_bot": False, "first_name": "A"},
                    "text": f"{TEXT} [{chat_id}/{message_id}]",
                },
            }
            messages.append(Message(chat_id, message_id, json.dumps(update).encode()))
            update_id += 1
        workload.append(messages)
    return workload


# --- the fake model and Bot API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelCall:
    """One chat completion the fake model answered: the message it was for, when it came and was answered."""

    key: Key | None
    started: float
    answered: float


@dataclass(frozen=True)
class Sent:
    """One ``sendMessage`` the fake Bot API accepted."""

    chat_id: int
    text: str
    reply_to: int | None
    at: float

    @property
    def key(self) -> Key | None:
        """The message this replies to: its ``reply_to`` in the chat, else the tag the model echoed."""
        if self.reply_to is not None:
            return self.chat_id, self.reply_to
        found = _TAG.search(self.text)
        return (int(found.group(1)), int(found.group(2))) if found else None


def _tag_of(body: dict[str, Any]) -> Key | None:
    """The ``[chat/message]`` tag of the latest user message of a chat completion request."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            found = _TAG.search(str(message.get("content") or ""))
            return (int(found.group(1)), int(found.group(2))) if found else None
    return None


def _telegram_error(status: int, description: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error_code": status, "description": description}, status_code=status)


@dataclass
class Fakes:
    """The fake model and Bot API of one side, and what they recorded (times are ``time.monotonic()``)."""

    model_latency: float
    model_calls: list[ModelCall] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    chat_actions: int = 0
    refused: list[str] = field(default_factory=list)
    _replied: dict[Key, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    def model_app(self) -> Starlette:
        """``POST /v1/chat/completions``: a text answer (echoing the message's tag) after ``model_latency``."""

        async def completions(request: Request) -> JSONResponse:
            started = time.monotonic()
            if request.headers.get("authorization") != f"Bearer {LLM_API_KEY}":
                self.refused.append("model: wrong API key")
                error = {"message": "Incorrect API key provided", "type": "invalid_api_key"}
                return JSONResponse({"error": error}, status_code=401)
            body = await request.json()
            key = _tag_of(body)
            await asyncio.sleep(self.model_latency)
            content = f"{ANSWER} [{key[0]}/{key[1]}]" if key else ANSWER
            self.model_calls.append(ModelCall(key, started, time.monotonic()))
            return JSONResponse(
                {
                    "id": f"chatcmpl-bench-{len(self.model_calls)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

    def bot_app(self) -> Starlette:
        """``POST /bot<token>/sendMessage`` and ``sendChatAction``, as the Bot API answers them."""

        async def method(request: Request) -> JSONResponse:
            if request.path_params["token"] != BOT_TOKEN:
                self.refused.append("bot api: wrong token")
                return _telegram_error(401, "Unauthorized")
            body = await request.json()
            chat_id = body.get("chat_id")
            if not isinstance(chat_id, int | str) or isinstance(chat_id, bool) or chat_id == "":
                self.refused.append(f"bot api: chat_id {chat_id!r}")
                return _telegram_error(400, "Bad Request: chat_id is empty")
            name = request.path_params["method"]
            if name == "sendChatAction":
                self.chat_actions += 1
                return JSONResponse({"ok": True, "result": True})
            if name != "sendMessage":
                return _telegram_error(404, "Not Found")
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                self.refused.append("bot api: empty text")
                return _telegram_error(400, "Bad Request: message text is empty")
            reply_to = (body.get("reply_parameters") or {}).get("message_id", body.get("reply_to_message_id"))
            sent = Sent(int(chat_id), text, reply_to, time.monotonic())
            self.sent.append(sent)
            if sent.key is not None:
                self._replied[sent.key].set()
            result = {"message_id": len(self.sent), "date": int(time.time()), "chat": {"id": chat_id}, "text": text}
            return JSONResponse({"ok": True, "result": result})

        return Starlette(routes=[Route("/bot{token}/{method}", method, methods=["POST"])])

    async def wait_for_reply(self, key: Key, within_s: float) -> bool:
        """Wait until ``key`` has a reply (True) or ``within_s`` pass (False)."""
        try:
            async with asyncio.timeout(within_s):
                await self._replied[key].wait()
        except TimeoutError:
            return False
        return True

    def replied(self, keys: set[Key]) -> int:
        """How many of ``keys`` have had a reply."""
        return len(keys & {sent.key for sent in self.sent})


@dataclass(frozen=True)
class Outside:
    """Where a side finds the fakes."""

    llm_base_url: str
    """``…/v1``: the client appends ``/chat/completions``."""
    telegram_api_url: str


@asynccontextmanager
async def serve_fakes(fakes: Fakes) -> AsyncIterator[Outside]:
    """Serve the fake model and Bot API on free loopback ports for one side."""
    async with serve(fakes.model_app(), free_port()) as model_url, serve(fakes.bot_app(), free_port()) as bot_url:
        yield Outside(f"{model_url}/v1", bot_url)


# --- posting --------------------------------------------------------------------------------------------------


async def post_update(
    http: httpx.AsyncClient, url: str, message: Message, posting: Posting, posted: dict[Key, float]
) -> None:
    """Post one update as Telegram does (the secret header; a 503 or a dropped connection retried)."""
    begun = time.monotonic()
    posted[message.key] = begun
    headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
    for attempt in range(20):
        try:
            response = await http.post(url, content=message.body, headers=headers)
        except httpx.TransportError:
            status = 503
        else:
            status = response.status_code
            if status == 200:
                posting.latencies_ms.append((time.monotonic() - begun) * 1000)
                return
            if status != 503:
                posting.refused[status] += 1
                console.print(f"[red]{url}: {status} {response.text[:300]}")
                return
        posting.retries += 1
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    posting.refused[503] += 1


async def post_all(
    base_url: str, workload: list[list[Message]], fakes: Fakes, args: argparse.Namespace
) -> tuple[Posting, dict[Key, float]]:
    """Post every chat's updates in the chat's order, ``args.concurrency`` requests at a time; when each was posted.

    ``args.pace`` ``reply``: a chat's next message is written ``args.think`` s after the reply to its previous one
    reached the Bot API (a customer reads the answer, then writes again); ``burst``: ``args.think`` s after the
    previous update was accepted (a customer typing several messages in a row).
    """
    url = base_url + WEBHOOK_PATH
    posting = Posting()
    posted: dict[Key, float] = {}
    slots = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def chat(messages: list[Message]) -> None:
            for index, message in enumerate(messages):
                if index and args.pace == "reply":
                    await fakes.wait_for_reply(messages[index - 1].key, PROCESS_TIMEOUT_S)
                if index and args.think:
                    await asyncio.sleep(args.think)
                async with slots:
                    await post_update(http, url, message, posting, posted)

        posting.started = time.monotonic()
        await asyncio.gather(*(chat(messages) for messages in workload))
        posting.seconds = time.monotonic() - posting.started
    return posting, posted


# --- measuring ------------------------------------------------------------------------------------------------


def _quantile(values: list[float], q: int) -> float:
    """The ``q``-th percentile of ``values`` (NaN when there are none)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def peak_in_flight(calls: list[ModelCall]) -> int:
    """The most model requests that were in flight at once."""
    edges = sorted([(call.started, 1) for call in calls] + [(call.answered, -1) for call in calls])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


@dataclass
class SideResult:
    """One side's measurements and its correctness checks."""

    name: str
    ordered: bool
    """Whether the side promises each chat's order (a break is then a failure)."""
    posting: Posting
    messages: int
    replied: int
    seconds: float
    overhead_ms: list[float]
    first_overhead_ms: list[float]
    """The overhead of each chat's first message (its conversation started by it)."""
    to_model_ms: list[float]
    after_model_ms: list[float]
    turn_to_model_ms: list[float]
    model_peak: int
    lost: int
    doubled: int
    out_of_order: list[int]
    """Chats whose replies came in another order than their messages."""
    problems: list[str]
    load: float = 0.0
    """The machine's 1-minute load average when the side's posting began (others' work shows up here)."""

    @property
    def per_s(self) -> float:
        """Messages replied per second, first post to last first reply."""
        return self.replied / self.seconds if self.seconds > 0 else 0.0


def analyse(
    name: str,
    ordered: bool,
    workload: list[list[Message]],
    posting: Posting,
    posted: dict[Key, float],
    fakes: Fakes,
    model_latency: float,
) -> SideResult:
    """What the fakes recorded about the workload's messages: rates, the overhead and its parts, the checks."""
    keys = {message.key for messages in workload for message in messages}
    replies: dict[Key, list[Sent]] = defaultdict(list)
    for sent in sorted(fakes.sent, key=lambda s: s.at):
        if sent.key in keys:
            replies[sent.key].append(sent)
    calls: dict[Key, list[ModelCall]] = defaultdict(list)
    for call in fakes.model_calls:
        if call.key in keys:
            calls[call.key].append(call)
    overhead, first_overhead, to_model, after_model, turn_to_model = [], [], [], [], []
    out_of_order: list[int] = []
    for messages in workload:
        previous_reply: float | None = None
        for message in messages:
            got = replies.get(message.key)
            if not got:
                previous_reply = None
                continue
            first = got[0].at
            overhead.append((first - posted[message.key] - model_latency) * 1000)
            if message is messages[0]:
                first_overhead.append(overhead[-1])
            before = [call for call in calls.get(message.key, []) if call.answered <= first]
            if before:
                call = before[-1]
                to_model.append((call.started - posted[message.key]) * 1000)
                after_model.append((first - call.answered) * 1000)
                turn = max(posted[message.key], previous_reply or 0.0)
                turn_to_model.append((call.started - turn) * 1000)
            previous_reply = first
        firsts = sorted((replies[m.key][0].at, m.message_id) for m in messages if replies.get(m.key))
        if [message_id for _, message_id in firsts] != sorted(message_id for _, message_id in firsts):
            out_of_order.append(messages[0].chat_id)
    lost = sum(1 for key in keys if key not in replies)
    doubled = sum(len(got) - 1 for got in replies.values())
    last = max((got[0].at for got in replies.values()), default=posting.started)
    problems: list[str] = []
    if lost:
        problems.append(f"{lost} of {len(keys)} messages got no reply")
    if doubled:
        problems.append(f"{doubled} second replies (a message answered twice)")
    if ordered and out_of_order:
        problems.append(f"{len(out_of_order)} chats got their replies out of order, e.g. chat {out_of_order[0]}")
    if posting.refused:
        problems.append(f"updates refused: {dict(posting.refused)}")
    if fakes.refused:
        problems.append(f"the fakes refused {len(fakes.refused)} calls, e.g. {fakes.refused[0]}")
    workload_calls = [call for call in fakes.model_calls if call.key in keys]
    return SideResult(
        name=name,
        ordered=ordered,
        posting=posting,
        messages=len(keys),
        replied=len(replies),
        seconds=last - posting.started,
        overhead_ms=overhead,
        first_overhead_ms=first_overhead,
        to_model_ms=to_model,
        after_model_ms=after_model,
        turn_to_model_ms=turn_to_model if ordered else [],
        model_peak=peak_in_flight(workload_calls),
        lost=lost,
        doubled=doubled,
        out_of_order=out_of_order,
        problems=problems,
    )


async def wait_for_replies(fakes: Fakes, keys: set[Key], within_s: float) -> int:
    """Wait until every one of ``keys`` has a reply (or ``within_s`` passed); returns how many have one."""

    async def count() -> int:
        return fakes.replied(keys)

    done, _ = await wait_for_count(count, len(keys), within_s)
    return done


async def warm_up(base_url: str, fakes: Fakes) -> None:
    """One message on the warm-up chat, waited for, so both sides start the measurement warm."""
    warm = build_workload(1, 1, first_chat=WARMUP_CHAT, first_update=900_000)
    posting, _ = await post_all(base_url, warm, fakes, argparse.Namespace(concurrency=1, pace="burst", think=0.0))
    if posting.refused:
        raise SystemExit(f"the warm-up update was refused: {dict(posting.refused)}")
    if await wait_for_replies(fakes, {warm[0][0].key}, 60) < 1:
        raise SystemExit("the warm-up message got no reply within 60 s")


async def measure(
    name: str,
    ordered: bool,
    base_url: str,
    fakes: Fakes,
    workload: list[list[Message]],
    args: argparse.Namespace,
) -> SideResult:
    """Warm up, post the workload, wait for every reply (and late doubles), then analyse what the fakes saw."""
    await warm_up(base_url, fakes)
    load = os.getloadavg()[0]
    posting, posted = await post_all(base_url, workload, fakes, args)
    keys = {message.key for messages in workload for message in messages}
    await wait_for_replies(fakes, keys, PROCESS_TIMEOUT_S)
    await asyncio.sleep(SETTLE_S)
    result = analyse(name, ordered, workload, posting, posted, fakes, args.model_latency)
    result.load = load
    return result


def _print_log_tail(path: Path, what: str) -> None:
    """The last lines of a process's log, when a side failed."""
    if path.exists():
        tail = path.read_text(errors="replace").splitlines()[-40:]
        console.print(f"{what} log (last lines):", *tail, sep="\n", markup=False, highlight=False)


# --- Conveyor -------------------------------------------------------------------------------------------------


async def run_conveyor(workload: list[list[Message]], args: argparse.Namespace) -> SideResult:
    """The workload through Conveyor's Telegram webhook and a ``conveyor worker --group chat`` process."""
    from conveyor.codec import process_keys
    from conveyor.db import migrate
    from conveyor.logging import configure_logging
    from conveyor.settings import Settings
    from conveyor.temporal import start_ephemeral_server

    process_keys("bench")  # the worker and API processes inherit the same payload key through the environment
    var = Path(tempfile.mkdtemp(prefix="conveyor-bench-chat-"))
    env = await start_ephemeral_server()
    fakes = Fakes(args.model_latency)
    settings = Settings(
        var_dir=var,
        temporal_address=env.client.service_client.config.target_host,
        api_port=free_port(),
        log_level="warning",
    )
    configure_logging(settings)
    await migrate(settings.database_url_resolved)
    worker: subprocess.Popen[bytes] | None = None
    log = (var / "worker.log").open("ab")
    try:
        async with serve_fakes(fakes) as outside:
            worker_env = {
                **os.environ,
                "CONVEYOR_VAR_DIR": str(var),
                "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
                "CONVEYOR_LOG_LEVEL": "warning",
                "CONVEYOR_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                "CONVEYOR_TELEGRAM_API_URL": outside.telegram_api_url,
                "CONVEYOR_TELEGRAM_WEBHOOK_SECRET": SECRET,
                "CONVEYOR_LLM_BASE_URL": outside.llm_base_url,
                "CONVEYOR_LLM_API_KEY": LLM_API_KEY,
                "CONVEYOR_LLM_MODEL": LLM_MODEL,
            }
            worker = subprocess.Popen(
                [sys.executable, "-m", "cli", "worker", "--group", "chat"], env=worker_env, stdout=log, stderr=log
            )
            api_env = {
                **worker_env,
                "CONVEYOR_API_HOST": "127.0.0.1",
                "CONVEYOR_API_PORT": str(settings.api_port),
                "CONVEYOR_RATE_LIMIT_PER_MINUTE": "1000000",
                "CONVEYOR_RATE_LIMIT_BURST": "100000",
                "CONVEYOR_CHAT_MESSAGES_PER_MINUTE": "1000000",  # a tenant's cap, not the pipeline's: not measured
            }
            api_command = [sys.executable, "-m", "cli", "api"]
            async with serve_process(api_command, api_env, settings.api_port, var / "api.log") as url:
                return await measure("Conveyor", True, url, fakes, workload, args)
    except BaseException:
        log.flush()
        _print_log_tail(var / "worker.log", "chat worker")
        _print_log_tail(var / "api.log", "API")
        raise
    finally:
        if worker is not None:
            stop_process(worker, timeout=30)
        log.close()
        await env.shutdown()
        shutil.rmtree(var, ignore_errors=True)


# --- Celery + Redis -------------------------------------------------------------------------------------------


async def run_celery(workload: list[list[Message]], args: argparse.Namespace) -> SideResult:
    """The workload through the Celery + Redis peer (:mod:`bench.celery_chat`)."""
    try:
        from bench.celery_chat import CONCURRENCY, QUEUE, configure, wait_for_worker
    except ImportError:
        raise SystemExit("Celery or redis-py is missing: run scripts/bench-setup.sh") from None

    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port)
    logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-celery-chat-"))
    fakes = Fakes(args.model_latency)
    worker: subprocess.Popen[bytes] | None = None
    log = (logs / "worker.log").open("ab")
    configure(redis_url)  # this process pings the worker through the same broker
    try:
        async with serve_fakes(fakes) as outside:
            peer_env = {
                **os.environ,
                "CONVEYOR_BENCH_REDIS_URL": redis_url,
                "CONVEYOR_BENCH_SECRET": SECRET,
                "CONVEYOR_BENCH_LLM_BASE_URL": outside.llm_base_url,
                "CONVEYOR_BENCH_LLM_API_KEY": LLM_API_KEY,
                "CONVEYOR_BENCH_LLM_MODEL": LLM_MODEL,
                "CONVEYOR_BENCH_TELEGRAM_API_URL": outside.telegram_api_url,
                "CONVEYOR_BENCH_TELEGRAM_TOKEN": BOT_TOKEN,
            }
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench.celery_chat", "worker", "--pool=prefork"]
                + [f"--concurrency={CONCURRENCY}", "--prefetch-multiplier=1", "-Q", QUEUE, "--loglevel=warning"],
                env=peer_env,
                stdout=log,
                stderr=log,
            )
            await asyncio.to_thread(wait_for_worker)
            peer_port = free_port()
            peer_command = [sys.executable, "-m", "uvicorn", "--factory", "bench.celery_chat:peer_app_from_env"]
            peer_command += ["--host", "127.0.0.1", "--port", str(peer_port), "--log-level", "warning"]
            peer_command += ["--no-access-log"]
            async with serve_process(peer_command, peer_env, peer_port, logs / "peer.log") as url:
                return await measure("Celery+Redis", False, url, fakes, workload, args)
    except BaseException:
        log.flush()
        _print_log_tail(logs / "worker.log", "Celery worker")
        _print_log_tail(logs / "peer.log", "peer endpoint")
        raise
    finally:
        if worker is not None:
            stop_process(worker, timeout=30)
        log.close()
        server.terminate()
        server.wait(10)
        shutil.rmtree(logs, ignore_errors=True)


# --- report ---------------------------------------------------------------------------------------------------


def _ms(values: list[float], q: int) -> str:
    value = _quantile(values, q)
    return "-" if value != value else f"{value:.0f}"  # NaN: nothing measured


def report(results: list[SideResult], args: argparse.Namespace) -> int:
    """Print the table, any FAIL lines and the last line; returns the exit status."""
    messages = args.chats * args.per_chat
    pace = "after the reply" if args.pace == "reply" else "right after the previous one"
    table = Table(
        title=(
            f"Telegram chat: {messages} messages in {args.chats} chats, model {args.model_latency:g} s, "
            f"{args.concurrency} connections, a chat's next message {pace}"
            + (f" + {args.think:g} s" if args.think else "")
        ),
        caption=(
            "msgs/s: first post to last reply; overhead: post → reply at the Bot API minus the model's "
            f"{args.model_latency:g} s; to model: post → model request; after model: model answer → sendMessage; "
            "model peak: model requests in flight at once; load: the machine's 1-minute load average as posting "
            f"began ({os.cpu_count()} CPUs); times in ms"
        ),
    )
    table.add_column("side", no_wrap=True)
    for name in ("msgs/s", "accept\np95", "overhead\np50", "overhead\np95", "to model\np95", "after model\np95"):
        table.add_column(name, justify="right")
    for name in ("model\npeak", "lost", "double", "out of\norder", "load"):
        table.add_column(name, justify="right")
    for side in results:
        table.add_row(
            side.name,
            f"{side.per_s:.2f}",
            _ms(side.posting.latencies_ms, 95),
            _ms(side.overhead_ms, 50),
            _ms(side.overhead_ms, 95),
            _ms(side.to_model_ms, 95),
            _ms(side.after_model_ms, 95),
            str(side.model_peak),
            str(side.lost),
            str(side.doubled),
            str(len(side.out_of_order)),
            f"{side.load:.1f}",
        )
    console.print(table)
    for side in results:
        later = sorted(set(side.overhead_ms) - set(side.first_overhead_ms))
        console.print(
            f"{side.name}: overhead of a chat's first message p50 {_ms(side.first_overhead_ms, 50)} ms, "
            f"p95 {_ms(side.first_overhead_ms, 95)} ms; of the later ones p50 {_ms(later, 50)} ms, "
            f"p95 {_ms(later, 95)} ms",
            highlight=False,
        )
        if side.turn_to_model_ms and args.pace == "burst":  # with ``reply`` a message's turn is its post
            console.print(
                f"{side.name}: from a message's turn (posted, its chat's previous reply out) to its model request "
                f"p50 {_ms(side.turn_to_model_ms, 50)} ms, p95 {_ms(side.turn_to_model_ms, 95)} ms; "
                f"model answer to sendMessage p50 {_ms(side.after_model_ms, 50)} ms",
                highlight=False,
            )
        if not side.ordered and side.out_of_order:
            console.print(
                f"note {side.name}: {len(side.out_of_order)} of {args.chats} chats got replies out of order "
                "(the seed's Celery does not keep a chat's order; reported, not failed)",
                highlight=False,
            )
    status = 0
    for side in results:
        for problem in side.problems:
            console.print(f"FAIL {side.name}: {problem}", highlight=False)
            status = 1
    if status == 0:
        kept = "; Conveyor kept every chat's order" if any(side.ordered for side in results) else ""
        console.print(f"replies: every message answered exactly once{kept}", highlight=False)
    if len(results) == 2:
        ours, theirs = results
        ratio = ours.per_s / theirs.per_s if theirs.per_s else float("inf")
        overhead = _quantile(ours.overhead_ms, 95)
        console.print(f"goal: ratio ≥ 1.0, p95 overhead < 300 ms (Conveyor p95 {overhead:.0f} ms)", highlight=False)
        line = (
            f"chat: conveyor {ours.per_s:.2f} msgs/s, celery {theirs.per_s:.2f} msgs/s, ratio {ratio:.2f}, "
            f"p95 overhead {overhead:.0f} ms"
        )
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    else:
        for side in results:
            line = (
                f"chat: {side.name} {side.per_s:.2f} msgs/s, p95 overhead {_quantile(side.overhead_ms, 95):.0f} ms "
                "(one side only)"
            )
            console.print(line, soft_wrap=True, highlight=False, markup=False)
    return status


async def main(args: argparse.Namespace) -> int:
    """Run the chosen sides over one workload and report."""
    workload = build_workload(args.chats, args.per_chat)
    runs: list[Callable[[list[list[Message]], argparse.Namespace], Awaitable[SideResult]]] = []
    if args.only in ("both", "conveyor"):
        runs.append(run_conveyor)
    if args.only in ("both", "celery"):
        runs.append(run_celery)
    results = [await run(workload, args) for run in runs]
    return report(results, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=40, help="private chats writing to the bot")
    parser.add_argument("--per-chat", type=int, default=5, help="messages each chat sends")
    parser.add_argument("--model-latency", type=float, default=1.0, help="seconds the fake model takes to answer")
    parser.add_argument(
        "--concurrency", type=int, default=40, help="webhook requests in flight at once (Telegram's default: 40)"
    )
    parser.add_argument(
        "--pace",
        choices=("reply", "burst"),
        default="reply",
        help="a chat's next message after the reply to its previous one, or right after it was accepted",
    )
    parser.add_argument("--think", type=float, default=0.0, help="seconds a customer waits before the next message")
    parser.add_argument("--only", choices=("both", "conveyor", "celery"), default="both")
    sys.exit(asyncio.run(main(parser.parse_args())))
