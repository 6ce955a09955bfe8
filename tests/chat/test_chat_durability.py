"""A chat reply survives its worker being killed (-9) while the model is still thinking: once a new worker runs, the
reply is made again and sent exactly once, replying to its message."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.chat import contract
from activities.chat.schemas import ConversationView
from conveyor.db import migrate
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.chat_stack import (
    TimedTelegram,
    chat_env,
    chat_fakes,
    chat_settings,
    fresh_id,
    post_update,
    text_update,
)
from tests.helpers.fakes import FakeOpenAI
from tests.helpers.processes import spawn_worker, stop_all
from tests.helpers.stack import serve_api

pytestmark = [pytest.mark.process, pytest.mark.slow]

#: Bounds for recovery, generous for two busy cores: the lost reply step is tried again once its heartbeat timeout
#: (15 s) passes and a worker is back. Nothing asserts how fast recovery is, only that it completes.
STARTED_WITHIN_S = 90.0
RECOVERED_WITHIN_S = 150.0

QUESTION = "how much is the hoodie?"


class HeldFirstAnswer:
    """The fake model's first answer to :data:`QUESTION`, held until the test lets it go (so the kill always lands
    while the reply is being made); every other answer at once, an echo of the customer's message."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._held = False

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        said = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        with self._lock:
            hold = said == QUESTION and not self._held
            self._held = self._held or hold
        if hold:
            self.asked.set()
            self._release.wait(STARTED_WITHIN_S)
        return {"role": "assistant", "content": f"echo: {said}"}

    def release(self) -> None:
        """Let the held answer go (to a connection nobody reads any more)."""
        self._release.set()


async def replies(telegram: TimedTelegram, chat_id: int, count: int) -> list[tuple[int | None, str]]:
    """The chat's messages at the fake Bot API once there are ``count`` (and no more so far)."""

    async def arrived() -> list[tuple[int | None, str]]:
        sent = telegram.sent_to(chat_id)
        assert len(sent) >= count, sent
        return sent

    sent = await assert_eventually(arrived, within_s=RECOVERED_WITHIN_S, interval=0.2)
    assert len(sent) == count, sent
    return sent


async def test_a_reply_cut_short_by_kill_9_is_made_again_and_sent_once(tmp_path: Path) -> None:
    env = await start_dev_server()  # its own server: no other worker may take the conversation's tasks
    model = HeldFirstAnswer()
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        with chat_fakes(model=FakeOpenAI(message=model)) as fakes:
            assert fakes.model is not None
            settings = chat_settings(tmp_path / "var", env.client.service_client.config.target_host, fakes)
            await migrate(settings.database_url_resolved)
            first = spawn_worker(settings, contract.QUEUES, tmp_path / "worker1.log", extra_env=chat_env(fakes))
            async with serve_api(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as hooks:
                chat = fresh_id()
                accepted = await post_update(hooks, text_update(chat, 1, QUESTION))
                assert accepted.status_code == 200, accepted.text
                assert await asyncio.to_thread(model.asked.wait, STARTED_WITHIN_S), "the worker never asked the model"

                first.send_signal(signal.SIGKILL)  # mid-reply: the model has not answered yet
                await asyncio.to_thread(first.wait, 10)
                model.release()
                assert fakes.telegram.sent_to(chat) == []
                second = spawn_worker(settings, contract.QUEUES, tmp_path / "worker2.log", extra_env=chat_env(fakes))

                [(reply_to, text)] = await replies(fakes.telegram, chat, 1)
                assert (reply_to, text) == (1, f"echo: {QUESTION}")
                # a later message is answered only after everything of the first: no second reply came meanwhile
                assert (await post_update(hooks, text_update(chat, 2, "thanks"))).status_code == 200
                sent = await replies(fakes.telegram, chat, 2)
                assert sent == [(1, f"echo: {QUESTION}"), (2, "echo: thanks")]

            asked = [r for r in fakes.model.requests if QUESTION in r.json()["messages"][-1]["content"]]
            assert len(asked) >= 2  # the reply was made again after the kill
            handle = env.client.get_workflow_handle(contract.conversation_workflow_id("telegram", chat))
            seen = await handle.query(contract.CONVERSATION_QUERY, result_type=ConversationView)
            assert seen.messages_seen == 2 and seen.delivery_error is None
            assert second.poll() is None  # the new worker did the rest
    finally:
        stop_all(first, second)
        await env.shutdown()
    assert first.returncode == -signal.SIGKILL
