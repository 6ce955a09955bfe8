"""ChatHealthWorkflow (the seed's 5-minute ``ping`` and ``worker_health_check``) on the time-skipping server with the
real activities: each dependency's state lands in ``worker_checks`` for ``/api/health``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.chat import contract
from activities.chat.activities import ChatActivities, chat_activities
from activities.chat.catalog import load_catalog
from activities.chat.manychat import ManyChatClient
from activities.chat.schemas import HealthReport
from activities.chat.telegram import TelegramClient
from conveyor.models import WorkerCheck
from tests.helpers import NewWorker
from tests.helpers.fakes import FakeManyChat, FakeTelegram
from workflows.chat import ChatHealthWorkflow

#: A well-formed token the fake Bot API does not know (it answers 401, as Telegram does for a revoked token).
WRONG_TOKEN = "987654321:AAHwrongTelegramBotToken_9876543210"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


async def run_health(client: Client, new_worker: NewWorker, acts: ChatActivities) -> list[HealthReport]:
    """Run the health workflow once with ``acts`` serving the default queue; its reports."""
    workflow_worker = new_worker([ChatHealthWorkflow])
    activity_worker = new_worker([], chat_activities(acts, contract.DEFAULT_QUEUE), task_queue=contract.DEFAULT_QUEUE)
    async with workflow_worker, activity_worker:
        reports: list[HealthReport] = await client.execute_workflow(
            ChatHealthWorkflow.run,
            contract.HealthRun(source="test"),
            id=f"chat-health-{uuid.uuid4()}",
            task_queue=workflow_worker.task_queue,
        )
    return reports


async def checks(sessions: async_sessionmaker[AsyncSession]) -> dict[str, WorkerCheck]:
    """The ``worker_checks`` rows by name."""
    async with sessions() as session:
        return {row.name: row for row in (await session.scalars(select(WorkerCheck))).all()}


async def test_the_health_check_records_the_database_temporal_and_telegram_as_ok(
    client: Client, new_worker: NewWorker, telegram: FakeTelegram, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with TelegramClient(telegram.token, api_url=telegram.url) as bot:
        acts = ChatActivities(load_catalog(), sessions=sessions, telegram=lambda: bot)
        reports = await run_health(client, new_worker, acts)

    rows = await checks(sessions)
    assert set(rows) == {"chat.temporal", "chat.database", "chat.telegram"}
    assert all(row.ok for row in rows.values()), {name: row.detail for name, row in rows.items()}
    assert rows["chat.telegram"].latency_ms is not None and rows["chat.telegram"].checked_at is not None
    assert {r.name: r.ok for r in reports} == {name: True for name in rows}
    assert any(r.path.endswith("/getMe") for r in telegram.requests)  # Telegram was asked, not assumed


async def test_a_refused_telegram_token_is_recorded_as_not_ok_with_a_detail(
    client: Client, new_worker: NewWorker, telegram: FakeTelegram, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with TelegramClient(WRONG_TOKEN, api_url=telegram.url) as bot:
        acts = ChatActivities(load_catalog(), sessions=sessions, telegram=lambda: bot)
        reports = await run_health(client, new_worker, acts)

    rows = await checks(sessions)
    assert rows["chat.database"].ok and rows["chat.temporal"].ok
    refused = rows["chat.telegram"]
    assert not refused.ok and "refused the bot token" in refused.detail
    assert WRONG_TOKEN not in refused.detail  # the token is a secret: never in a stored detail
    assert [r.ok for r in reports if r.name == "chat.telegram"] == [False]


async def test_manychat_is_checked_when_configured(
    client: Client, new_worker: NewWorker, sessions: async_sessionmaker[AsyncSession]
) -> None:
    with FakeManyChat() as manychat:
        async with ManyChatClient(manychat.api_token, api_url=manychat.url) as api:
            acts = ChatActivities(load_catalog(), sessions=sessions, manychat=lambda: api)
            await run_health(client, new_worker, acts)
        assert any(r.path.startswith("/fb/page/getInfo") for r in manychat.requests)

    rows = await checks(sessions)
    assert set(rows) == {"chat.temporal", "chat.database", "chat.manychat"} and rows["chat.manychat"].ok


async def test_without_a_database_the_check_says_so_and_writes_nothing(client: Client, new_worker: NewWorker) -> None:
    reports = await run_health(client, new_worker, ChatActivities(load_catalog()))

    assert {r.name: r.ok for r in reports} == {"chat.temporal": True, "chat.database": False}
    assert "no database" in next(r.detail for r in reports if r.name == "chat.database")


async def test_a_channel_no_longer_configured_leaves_the_health_rows(
    client: Client, new_worker: NewWorker, telegram: FakeTelegram, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with TelegramClient(telegram.token, api_url=telegram.url) as bot:
        await run_health(client, new_worker, ChatActivities(load_catalog(), sessions=sessions, telegram=lambda: bot))
    assert "chat.telegram" in await checks(sessions)

    await run_health(client, new_worker, ChatActivities(load_catalog(), sessions=sessions))  # the token was removed

    assert set(await checks(sessions)) == {"chat.temporal", "chat.database"}
