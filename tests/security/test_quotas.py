"""Item 6 (quotas): per-user caps on runs under way per pipeline, checked by the kernel's admission, race-safe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.crawl import contract as crawl
from activities.crawl.models import CrawlSession
from cli.sample_site import SampleSite
from conveyor import credits
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.errors import RateLimited
from conveyor.models import CreditHold, User
from conveyor.quotas import RunCharge, admit, running_runs
from conveyor.settings import Settings
from tests.helpers.postgres import throwaway_postgres
from tests.helpers.stack import Stack


async def _user(sessions: async_sessionmaker[AsyncSession], amount: int) -> int:
    async with sessions.begin() as session:
        user, _ = await create_user(session, f"quota-{uuid.uuid4().hex[:8]}", amount)
        return user.id


async def _admit_one(sessions: async_sessionmaker[AsyncSession], settings: Settings, user_id: int) -> str:
    """One crawl admission in its own transaction: ``admitted`` or the refusal's code."""
    run_id = str(uuid.uuid4())
    async with sessions() as session:
        try:
            await admit(
                session,
                settings,
                user_id,
                crawl.PIPELINE,
                group=crawl.workflow_id_for(run_id),
                charges=[RunCharge(crawl.SESSION_TABLE, run_id, 10)],
            )
        except RateLimited as err:
            return err.code
        await session.commit()
        return "admitted"


async def test_cap_reached_answers_429_naming_pipeline_and_cap_and_stores_nothing(
    stack: Stack, sample_site: SampleSite
) -> None:
    user_id, key = await stack.new_user(credits=1000)
    cap = stack.settings.max_running_per_user.get("crawl", crawl.PIPELINE.max_running)
    for _ in range(cap):  # runs under way: admitted and holding credits
        assert await _admit_one(stack.sessions, stack.settings, user_id) == "admitted"
    async with stack.http(key) as http:
        resp = await http.post("/api/crawls", json={"url": sample_site.url, "max_pages": 5})
    assert resp.status_code == 429, resp.text
    error = resp.json()["error"]
    assert error["code"] == "TOO_MANY_RUNNING"
    assert error["details"] == {"pipeline": "crawl", "cap": cap, "running": cap}
    async with stack.sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(CrawlSession).where(CrawlSession.user_id == user_id)
        )
        user = await session.get(User, user_id)
    assert stored == 0
    assert user is not None and user.credits_held == 10 * cap  # nothing more was held for the refused start


@asynccontextmanager
async def _database(
    backend: str, sqlite: async_sessionmaker[AsyncSession]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions of a migrated database: the test's own SQLite, or a throwaway PostgreSQL cluster."""
    if backend == "sqlite":
        yield sqlite
        return
    with throwaway_postgres() as url:
        await migrate(url)
        engine = create_engine(url)
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.needs_postgres)])
async def test_concurrent_admissions_cannot_pass_a_cap_of_one(
    sessions: async_sessionmaker[AsyncSession], backend: str
) -> None:
    settings = Settings(max_running_per_user={"crawl": 1})
    async with _database(backend, sessions) as db:
        user_id = await _user(db, 1000)
        outcomes = await asyncio.gather(*(_admit_one(db, settings, user_id) for _ in range(6)))
        assert sorted(outcomes) == ["TOO_MANY_RUNNING"] * 5 + ["admitted"]
        async with db() as session:
            assert await running_runs(session, user_id, "crawl") == 1
            user = await session.get(User, user_id)
            assert user is not None and user.credits_held == 10


async def test_a_settled_run_frees_its_slot(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"max_running_per_user": {"crawl": 1}})
    user_id = await _user(stack.sessions, 1000)
    assert await _admit_one(stack.sessions, settings, user_id) == "admitted"
    assert await _admit_one(stack.sessions, settings, user_id) == "TOO_MANY_RUNNING"
    async with stack.sessions.begin() as session:
        held = await session.scalar(select(CreditHold).where(CreditHold.user_id == user_id))
        assert held is not None
        assert await credits.settle(session, held.reference, 4, reason="test run ended") == 4
    assert await _admit_one(stack.sessions, settings, user_id) == "admitted"
    async with stack.sessions() as session:
        user = await session.get(User, user_id)
    assert user is not None and (user.credits, user.credits_held) == (996, 10)


async def test_a_run_temporal_ended_frees_its_slot_at_the_next_start(stack: Stack, sample_site: SampleSite) -> None:
    """Terminated in Temporal and never read back through the API: the next start at the cap reconciles it."""
    user_id, key = await stack.new_user(credits=1000)
    cap = stack.settings.max_running_per_user.get("crawl", crawl.PIPELINE.max_running)
    for _ in range(cap - 1):  # the other slots: runs under way that Temporal knows nothing to end
        assert await _admit_one(stack.sessions, stack.settings, user_id) == "admitted"
    body = {"url": sample_site.url, "max_pages": 50, "max_depth": 5}
    async with stack.http(key) as http:
        first = await http.post("/api/crawls", json=body)
        assert first.status_code == 202, first.text
        first_id = first.json()["session_id"]
        await stack.client.get_workflow_handle(crawl.workflow_id_for(first_id)).terminate(reason="test")
        async with stack.sessions() as session:  # its row was not read back: it still holds its slot
            row = await session.get(CrawlSession, first_id)
            assert row is not None and row.status in ("queued", "running"), row.status
            assert await running_runs(session, user_id, "crawl") == cap
        second = await http.post("/api/crawls", json=body)
        assert second.status_code == 202, second.text  # without the reconcile: 429 TOO_MANY_RUNNING
        assert (await http.post(f"/api/crawls/{second.json()['session_id']}/cancel")).status_code in (200, 202, 409)
    async with stack.sessions() as session:
        row = await session.get(CrawlSession, first_id)
        assert row is not None and (row.status, row.error_code) == ("failed", "TERMINATED")
        hold = await session.scalar(
            select(CreditHold).where(CreditHold.run_id == first_id, CreditHold.run_table == crawl.SESSION_TABLE)
        )
        assert hold is not None and hold.status != "active"  # settled: its pages charged, the rest given back
