"""Reconciling run rows against Temporal never overwrites an end the workflow recorded after the row was read."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionStatus

from activities.analysis.models import AnalysisTask
from conveyor.auth import create_user
from conveyor.reconcile import close_ended
from conveyor.runs import RunStatus


class _Temporal:
    """Answers ``describe`` of every workflow with ``status`` (closed now)."""

    def __init__(self, status: WorkflowExecutionStatus) -> None:
        self.status = status

    def get_workflow_handle(self, workflow_id: str) -> Any:
        status = self.status

        class Handle:
            async def describe(self) -> Any:
                return SimpleNamespace(status=status, close_time=datetime.now(UTC))

        return Handle()


async def _running_task(sessions: async_sessionmaker[AsyncSession], task_id: str) -> None:
    async with sessions() as session:
        user, _ = await create_user(session, f"owner-{task_id}", 10)
        task = AnalysisTask(task_id=task_id, user_id=user.id, tool_id="profile-my-data", workflow_id=f"wf-{task_id}")
        task.set_status(RunStatus.RUNNING)
        session.add(task)
        await session.commit()


async def _status(sessions: async_sessionmaker[AsyncSession], task_id: str) -> tuple[str, str | None]:
    async with sessions() as session:
        task = await session.get(AnalysisTask, task_id)
        assert task is not None
        return task.status, task.error_code


async def test_a_run_that_recorded_its_end_after_the_row_was_read_keeps_that_end(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _running_task(sessions, "t-race")
    async with sessions() as reader:
        [stale] = (await reader.scalars(select(AnalysisTask).where(AnalysisTask.task_id == "t-race"))).all()
        # meanwhile the workflow records its end, then closes
        async with sessions() as workflow:
            task = await workflow.get(AnalysisTask, "t-race")
            assert task is not None
            task.set_status(RunStatus.COMPLETED)
            await workflow.commit()
        changed = await close_ended(reader, _Temporal(WorkflowExecutionStatus.COMPLETED), [stale])  # type: ignore[arg-type]
        await reader.commit()

    assert not changed
    assert await _status(sessions, "t-race") == ("completed", None)


async def test_a_run_whose_workflow_closed_without_recording_is_failed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _running_task(sessions, "t-lost")
    async with sessions() as reader:
        [row] = (await reader.scalars(select(AnalysisTask).where(AnalysisTask.task_id == "t-lost"))).all()
        changed = await close_ended(reader, _Temporal(WorkflowExecutionStatus.COMPLETED), [row])  # type: ignore[arg-type]
        await reader.commit()

    assert changed
    assert await _status(sessions, "t-lost") == ("failed", "NOT_RECORDED")
