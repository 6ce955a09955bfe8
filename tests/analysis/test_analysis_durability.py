"""Work survives a worker crash: kill -9 the worker mid-agent, start another, the task still completes once."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import PendingActivityState

from activities.analysis.contract import RUN_AGENT, TASKS_QUEUE
from activities.analysis.models import AnalysisTask
from activities.analysis.schemas import AnalysisResult
from api.caller import Caller
from api.services import analysis as service
from bench.datagen import write_messy_csv
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.models import CreditLedgerEntry, User
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.settings import Settings
from conveyor.storage import LocalBlobStore
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.processes import max_activity_attempt, spawn_worker, stop_all

pytestmark = [pytest.mark.process, pytest.mark.slow]


async def test_task_completes_after_the_worker_is_killed_mid_agent(tmp_path: Path) -> None:
    env = await start_dev_server()  # its own server: no other worker may pick up the retried activity
    var = tmp_path / "var"
    settings = Settings(var_dir=var, temporal_address=env.client.service_client.config.target_host)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    big = tmp_path / "big.csv"
    write_messy_csv(big, rows=300_000)
    first = spawn_worker(settings, [TASKS_QUEUE], tmp_path / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        async with sessions() as session:
            user, _ = await create_user(session, "durable", 100)
            await session.commit()
            blobs = LocalBlobStore(var / "blobs")
            task = await service.create_task(
                session,
                blobs,
                settings,
                user,
                tool_id="clean-my-data",
                agents=[],
                params={},
                files=[service.Upload("big.csv", io.BytesIO(big.read_bytes()))],
            )
            caller = Caller(user=user, session=session, client=env.client, blobs=blobs, settings=settings)
            started = await service.process_task(caller, task.task_id)
        handle = env.client.get_workflow_handle(started.workflow_id, result_type=AnalysisResult)

        async def in_second_agent() -> None:
            progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
            assert progress.stage in ("type-fixer", "duplicate-resolver"), progress  # the two longest agents
            pending = (await handle.describe()).raw_description.pending_activities
            running = [
                p
                for p in pending
                if p.activity_type.name == RUN_AGENT and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            ]
            assert running, "no agent is running on the worker yet"
            async with sessions() as session:
                row = await session.get(AnalysisTask, task.task_id)
            assert row is not None and (row.status, row.stage) == ("running", progress.stage), row

        await assert_eventually(in_second_agent, within_s=120, interval=0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(settings, [TASKS_QUEUE], tmp_path / "worker2.log")
        result = await asyncio.wait_for(handle.result(), timeout=180)
    finally:
        stop_all(first, second)
    assert result.status == "completed"
    assert result.agents_completed == [
        "null-handler",
        "type-fixer",
        "field-standardizer",
        "duplicate-resolver",
        "outlier-flagger",
        "email-validator",
    ]
    async with sessions() as session:
        row = await session.get(AnalysisTask, task.task_id)
        assert row is not None and row.status == "completed"
        assert (row.progress, row.current_agent, row.error_code) == (100.0, None, None)
        charges = await session.scalar(
            select(func.count()).select_from(CreditLedgerEntry).where(CreditLedgerEntry.kind == "charge")
        )
        owner = await session.get(User, row.user_id)
    assert charges == 1
    assert owner is not None and owner.credits == 100 - row.credits_cost
    history = await handle.fetch_history()
    assert max_activity_attempt(history) >= 2  # the interrupted agent really was retried on the new worker
    await engine.dispose()
    await env.shutdown()
