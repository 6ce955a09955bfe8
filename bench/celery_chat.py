"""The seed's Telegram chat path as a minimal Celery + Redis peer, for ``bench/chat.py`` to measure against.

What the seed runs (001, MIRT's workers with ``CELERY_ENABLED=true``): the webhook hands each message to
``dispatch_message(..., fire_and_forget=True)``, which queues ``process_and_respond`` on the ``llm`` queue under
the idempotent task id ``webhook_task_id("telegram", message_id, user_id, "process")``; a worker at
``CELERY_CONCURRENCY=4`` (prefork, ``task_acks_late``, ``task_reject_on_worker_lost``, prefetch 1, a child
replaced every 100 tasks) asks the model for the reply and sends it through the Bot API. This peer does the same:

* :func:`create_peer_app`: a Starlette ``POST /webhooks/telegram`` that checks the secret token header, parses and
  classifies the update with Conveyor's own Telegram code, and calls ``process_and_respond.apply_async(...,
  task_id=message_key(...))`` (a thread, the publish blocks); 200 once the task is queued, 503 if Redis is away.
* :func:`process_and_respond`: the task (the seed's limits, 85 s soft and 90 s hard): one chat completion with the
  same system prompt, catalog and tool that Conveyor's model path sends (synchronous httpx), then ``sendMessage``
  replying to the customer's message. It keeps no conversation history, so it does less than Conveyor per
  message; and it does not order a chat's messages (the seed's Celery does not).

Everything comes from the environment, as ``celery -A bench.celery_chat worker`` imports this module:
``CONVEYOR_BENCH_REDIS_URL`` (broker; results are not stored), ``CONVEYOR_BENCH_LLM_BASE_URL`` (``…/v1``),
``CONVEYOR_BENCH_LLM_API_KEY``, ``CONVEYOR_BENCH_LLM_MODEL``, ``CONVEYOR_BENCH_TELEGRAM_API_URL``,
``CONVEYOR_BENCH_TELEGRAM_TOKEN`` and, for the endpoint, ``CONVEYOR_BENCH_SECRET``. Bench-only: Celery and
redis-py are installed by ``scripts/bench-setup.sh``, never by the project.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import anyio
import httpx
import redis
from celery import Celery  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from activities.chat.catalog import load_catalog
from activities.chat.contract import message_key
from activities.chat.llm import CREATE_ORDER_TOOL, catalog_hint, wire_messages
from activities.chat.telegram import SECRET_HEADER, Incoming, check_secret, classify, parse_update
from activities.chat.turns import ChatMessage, LlmRequest
from conveyor.errors import ConveyorError

#: The seed's queue for AI message processing.
QUEUE = "llm"
TASK = "process_and_respond"
WEBHOOK_PATH = "/webhooks/telegram"
#: The seed's ``CELERY_CONCURRENCY`` (the worker's ``--concurrency``) and ``CELERY_MAX_TASKS_PER_CHILD``.
CONCURRENCY = 4
MAX_TASKS_PER_CHILD = 100
#: ``process_and_respond``'s limits in the seed (soft, hard), seconds.
SOFT_LIMIT_S = 85
HARD_LIMIT_S = 90
#: The model call's and the Bot API call's own timeouts (well inside the task's limits).
LLM_TIMEOUT_S = 60.0
TELEGRAM_TIMEOUT_S = 20.0

celery_app = Celery("bench.celery_chat")
celery_app.conf.update(  # the seed's celery_app.py "Key Settings"
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=MAX_TASKS_PER_CHILD,
    task_ignore_result=True,  # fire and forget: nothing reads a result
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def configure(redis_url: str) -> None:
    """Point the Celery app's broker at ``redis_url``."""
    celery_app.conf.update(broker_url=redis_url)


if "CONVEYOR_BENCH_REDIS_URL" in os.environ:  # the worker and the endpoint: both are started with it
    configure(os.environ["CONVEYOR_BENCH_REDIS_URL"])


def wait_for_worker(timeout: float = 60) -> None:
    """Block until a worker on this app's broker answers a ping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if celery_app.control.ping(timeout=0.5):
            return
    raise SystemExit(f"the Celery worker did not answer within {timeout:.0f} s")


@cache
def _http() -> httpx.Client:
    """The worker child's HTTP client (one per prefork child, made on first use, kept alive)."""
    return httpx.Client(timeout=httpx.Timeout(LLM_TIMEOUT_S))


@cache
def _catalog_hint() -> str:
    """The shop's catalog as Conveyor's model path puts it into the system prompt."""
    return catalog_hint(load_catalog())


def ask_model(text: str) -> str:
    """The model's reply to one customer message: Conveyor's system prompt, catalog and tool, one user message."""
    request = LlmRequest(messages=(ChatMessage(role="user", content=text),), catalog_hint=_catalog_hint())
    payload = {
        "model": os.environ["CONVEYOR_BENCH_LLM_MODEL"],
        "messages": wire_messages(request),
        "tools": [CREATE_ORDER_TOOL],
        "tool_choice": "auto",
    }
    headers = {"Authorization": f"Bearer {os.environ['CONVEYOR_BENCH_LLM_API_KEY']}"}
    url = os.environ["CONVEYOR_BENCH_LLM_BASE_URL"].rstrip("/") + "/chat/completions"
    response = _http().post(url, json=payload, headers=headers)
    response.raise_for_status()
    content: str = response.json()["choices"][0]["message"]["content"]
    return content.strip()


def send_message(chat_id: int, text: str, reply_to: int) -> None:
    """``sendMessage`` through the Bot API, replying to the customer's message."""
    api_url = os.environ["CONVEYOR_BENCH_TELEGRAM_API_URL"].rstrip("/")
    url = f"{api_url}/bot{os.environ['CONVEYOR_BENCH_TELEGRAM_TOKEN']}/sendMessage"
    body = {
        "chat_id": chat_id,
        "text": text,
        "reply_parameters": {"message_id": reply_to, "allow_sending_without_reply": True},
    }
    response = _http().post(url, json=body, timeout=TELEGRAM_TIMEOUT_S)
    response.raise_for_status()


@celery_app.task(name=TASK, queue=QUEUE, soft_time_limit=SOFT_LIMIT_S, time_limit=HARD_LIMIT_S)  # type: ignore[untyped-decorator]
def process_and_respond(session_id: str, user_message: str, platform: str, chat_id: int, message_id: int) -> None:
    """Fire and forget: the model's reply to one message, sent to the chat it came from."""
    if platform != "telegram":
        raise ValueError(f"unknown platform {platform!r}")
    send_message(chat_id, ask_model(user_message), reply_to=message_id)


def dispatch(message: Incoming) -> str:
    """Queue ``process_and_respond`` for ``message`` under the seed's idempotent task id; returns the id."""
    task_id = message_key("telegram", message.message_id, message.user_id or message.chat_id)
    kwargs: dict[str, Any] = {
        "session_id": str(message.chat_id),
        "user_message": message.text,
        "platform": "telegram",
        "chat_id": message.chat_id,
        "message_id": message.message_id,
    }
    process_and_respond.apply_async(kwargs=kwargs, task_id=task_id)
    return task_id


def create_peer_app(secret: str) -> Starlette:
    """The peer's ASGI app: ``POST /webhooks/telegram`` (secret header, parse, ``apply_async``)."""

    async def telegram_webhook(request: Request) -> JSONResponse:
        """Accept one update: 200 once queued (or ignored), 401/400 refused, 503 when the broker is away."""
        try:
            check_secret(request.headers.get(SECRET_HEADER), secret)
            found = classify(parse_update(await request.body()))
        except ConveyorError as err:
            return JSONResponse(err.to_dict(), status_code=err.http_status)
        if not isinstance(found, Incoming):
            return JSONResponse({"ok": True, "ignored": found.reason})
        try:
            task_id = await anyio.to_thread.run_sync(dispatch, found)
        except (OperationalError, redis.RedisError, OSError) as err:
            return JSONResponse({"code": "QUEUE_UNAVAILABLE", "message": str(err)}, status_code=503)
        return JSONResponse({"ok": True, "queued": True, "task_id": task_id})

    return Starlette(routes=[Route(WEBHOOK_PATH, telegram_webhook, methods=["POST"])])


def peer_app_from_env() -> Starlette:
    """The peer's app for ``uvicorn --factory``: its secret (and, at import, its Redis) from the environment."""
    return create_peer_app(os.environ["CONVEYOR_BENCH_SECRET"])
