"""Item 6 (quotas): per-user caps on runs under way per pipeline, checked by the kernel's admission, race-safe."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.crawl import contract as crawl
from activities.crawl.models import CrawlSession
from cli.sample_site import SampleSite
from conveyor import credits
from conveyor.auth import create_user
from conveyor.errors import RateLimited
from conveyor.models import CreditHold, User
from conveyor.quotas import RunCharge, admit, running_runs
from conveyor.settings import Settings
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


async def test_concurrent_admissions_cannot_pass_a_cap_of_one(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"max_running_per_user": {"crawl": 1}})
    user_id = await _user(stack.sessions, 1000)
    outcomes = await asyncio.gather(*(_admit_one(stack.sessions, settings, user_id) for _ in range(6)))
    assert sorted(outcomes) == ["TOO_MANY_RUNNING"] * 5 + ["admitted"]
    async with stack.sessions() as session:
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
