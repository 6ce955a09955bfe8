"""The same code on PostgreSQL (asyncpg): migrations, concurrent credit holds and a full analysis run.

A throwaway cluster is started from Debian's postgresql package in a temporary folder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.analysis.schemas import AnalysisResult
from api.caller import Caller
from api.services import analysis as service
from conveyor import credits
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.errors import InsufficientCredits
from conveyor.models import User
from conveyor.settings import Settings
from tests.helpers import start_dev_server
from tests.helpers.postgres import throwaway_postgres
from workers.run import build_workers, open_resources, queues_of_groups

pytestmark = pytest.mark.needs_postgres

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "analysis"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL cluster for this module."""
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(postgres_url)
    eng = create_engine(postgres_url)
    yield eng
    await eng.dispose()


async def test_migrations_create_every_table(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert {"users", "api_keys", "credit_ledger", "credit_holds", "analysis_tasks", "alembic_version"} <= tables


async def test_concurrent_holds_cannot_overdraw(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        user, _ = await create_user(session, "pg-holds", 10)

    async def hold(i: int) -> bool:
        try:
            async with sessions.begin() as session:
                await credits.hold(session, user.id, f"pg:{i}", 4)
            return True
        except InsufficientCredits:
            return False

    results = await asyncio.gather(*(hold(i) for i in range(8)))
    assert sum(results) == 2  # 2 x 4 fit in 10 credits, the other six are refused
    async with sessions() as session:
        assert await credits.available_credits(session, user.id) == 2


async def test_full_analysis_run_on_postgres(postgres_url: str, engine: AsyncEngine, tmp_path: Path) -> None:
    env = await start_dev_server()
    settings = Settings(
        var_dir=tmp_path, database_url=postgres_url, temporal_address=env.client.service_client.config.target_host
    )
    try:
        async with open_resources(settings) as res:
            with concurrent.futures.ThreadPoolExecutor() as executor:
                workers = build_workers(env.client, res, queues_of_groups(["analysis"]), executor)
                runs = [asyncio.create_task(w.run()) for w in workers]
                try:
                    async with res.sessions() as session:
                        user, _ = await create_user(session, "pg-analyst", 50)
                        await session.commit()
                        task = await service.create_task(
                            session,
                            res.blobs,
                            settings,
                            user,
                            tool_id="master-my-data",
                            agents=[],
                            params={},
                            files=[
                                service.Upload(name, io.BytesIO((SAMPLES / name).read_bytes()))
                                for name in ("customers.csv", "customers_crm.csv")
                            ],
                        )
                        caller = Caller(
                            user=user, session=session, client=env.client, blobs=res.blobs, settings=settings
                        )
                        started = await service.process_task(caller, task.task_id)
                    handle = env.client.get_workflow_handle(started.workflow_id, result_type=AnalysisResult)
                    result = await asyncio.wait_for(handle.result(), timeout=120)
                finally:
                    await asyncio.gather(*(w.shutdown() for w in workers))
                    await asyncio.gather(*runs, return_exceptions=True)
            assert result.status == "completed"
            assert "golden_records.csv" in {o.name for o in result.outputs}
            async with res.sessions() as session:
                owner = await session.get(User, user.id)
                assert owner is not None and owner.credits == 50 - result.credits_charged
                assert result.credits_charged > 0
    finally:
        await env.shutdown()
