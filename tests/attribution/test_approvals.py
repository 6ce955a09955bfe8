"""Fatigue approvals as workflows (time-skipping server, the real monitor activities over SQLite): approve by update
or signal runs the action once and audits who; reject or 24 h without a decision runs nothing; the fatigue run
starts one approval workflow per pending approval, however often it runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import select
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.attribution import contract
from activities.attribution.models import Approval
from activities.attribution.monitor import MonitorActivities, monitor_activities
from activities.attribution.schemas import (
    ApprovalClose,
    ApprovalOutcome,
    ApprovalRequest,
    Decision,
    FatigueReport,
    SignalDecision,
)
from conveyor.progress import PROGRESS_QUERY, Progress
from tests.attribution.test_monitor import (
    PRICEY,
    SATURATED,
    TIMEOUT,
    Series,
    Sessions,
    ad_row,
    add_ad,
    approvals,
    audit,
    monitor,
    new_user,
    run_monitor,
)
from tests.helpers import DATA_CONVERTER, NewWorker, register_search_attributes, test_server_path
from workflows.attribution import ApprovalWorkflow, FatigueMonitorWorkflow

ApprovalHandle = WorkflowHandle[Any, ApprovalOutcome]


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this file's own (``client`` and ``new_worker`` follow it).

    Skipping 24 hours fires every timer on a server: on the suite's shared one, a workflow another file left
    running would then wait for an activity no worker serves, and hold the skip forever.
    """
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path(), data_converter=DATA_CONVERTER
    )
    await register_search_attributes(environment.client)
    yield environment
    await environment.shutdown()


async def critical_ad(
    sessions: Sessions, acts: MonitorActivities, series: Series = PRICEY
) -> tuple[int, ApprovalRequest]:
    """A user with one critical ad ``ad-1`` and the approval the monitor opened for it."""
    owner = await new_user(sessions, f"user-{uuid.uuid4().hex[:8]}")
    await add_ad(sessions, owner, "ad-1", series)
    [request] = (await run_monitor(acts)).approvals
    return owner, request


async def start_approval(client: Client, request: ApprovalRequest, task_queue: str) -> ApprovalHandle:
    """An approval workflow for ``request`` (a fresh id: the test server outlives each test's database)."""
    return await client.start_workflow(
        ApprovalWorkflow.run,
        request,
        id=f"{contract.approval_workflow_id(request.approval_id)}-{uuid.uuid4()}",
        task_queue=task_queue,
    )


async def test_approve_by_update_pauses_the_ad_once_and_audits_who(
    sessions: Sessions, client: Client, new_worker: NewWorker
) -> None:
    acts = monitor(sessions)
    owner, request = await critical_ad(sessions, acts)
    worker = new_worker([ApprovalWorkflow], monitor_activities(acts))
    async with worker:
        handle = await start_approval(client, request, worker.task_queue)
        pending = await handle.query(contract.APPROVAL_QUERY, result_type=ApprovalOutcome)
        assert (pending.status, pending.action, pending.ad_id) == ("pending", "pause", "ad-1")

        answer = await handle.execute_update(
            contract.DECIDE_UPDATE, Decision(approve=True, by="ana", note="go"), result_type=ApprovalOutcome
        )
        result = await handle.result()

    assert (answer.status, answer.decided_by) == ("executed", "ana")
    assert answer.decided_at is not None
    assert answer == result
    assert (await ad_row(sessions, owner, "ad-1")).status == "paused"
    [entry] = await audit(sessions)
    assert (entry.action, entry.actor, entry.approval_id, entry.details["note"]) == (
        "pause",
        "ana",
        request.approval_id,
        "go",
    )
    [row] = await approvals(sessions)
    assert (row.status, row.decided_by, row.open_key) == ("executed", "ana", None)


async def test_approve_by_signal_from_the_web_ui_runs_the_action(
    sessions: Sessions, client: Client, new_worker: NewWorker
) -> None:
    acts = monitor(sessions)
    owner, request = await critical_ad(sessions, acts, SATURATED)
    worker = new_worker([ApprovalWorkflow], monitor_activities(acts))
    async with worker:
        handle = await start_approval(client, request, worker.task_queue)
        await handle.signal(contract.APPROVE_SIGNAL, SignalDecision(by="web-ana"))
        await handle.signal(contract.REJECT_SIGNAL, SignalDecision(by="late-bo"))  # only the first decision counts
        result = await handle.result()
        progress = await handle.query(PROGRESS_QUERY, result_type=Progress)

    assert (result.status, result.action, result.decided_by) == ("executed", "rotate", "web-ana")
    assert (progress.stage, progress.percent) == ("executed", 100.0)
    assert (await ad_row(sessions, owner, "ad-1")).status == "rotated"
    assert [(e.action, e.actor) for e in await audit(sessions)] == [("rotate", "web-ana")]


async def test_reject_leaves_the_ad_untouched(sessions: Sessions, client: Client, new_worker: NewWorker) -> None:
    acts = monitor(sessions)
    owner, request = await critical_ad(sessions, acts)
    worker = new_worker([ApprovalWorkflow], monitor_activities(acts))
    async with worker:
        handle = await start_approval(client, request, worker.task_queue)
        answer = await handle.execute_update(
            contract.DECIDE_UPDATE, Decision(approve=False, by="bo", note="seasonal dip"), result_type=ApprovalOutcome
        )
        result = await handle.result()

    assert (answer.status, answer.decided_by) == ("rejected", "bo") == (result.status, result.decided_by)
    assert (await ad_row(sessions, owner, "ad-1")).status == "active"
    assert [(e.action, e.actor) for e in await audit(sessions)] == [("reject", "bo")]
    assert [r.status for r in await approvals(sessions)] == ["rejected"]


async def test_no_decision_within_24_hours_expires_and_runs_nothing(
    sessions: Sessions, env: WorkflowEnvironment, new_worker: NewWorker
) -> None:
    acts = monitor(sessions)
    owner, request = await critical_ad(sessions, acts)
    assert request.timeout_s == TIMEOUT.total_seconds()
    worker = new_worker([ApprovalWorkflow], monitor_activities(acts))
    async with worker:
        handle = await start_approval(env.client, request, worker.task_queue)
        before = await env.get_current_time()
        result = await handle.result()  # the time-skipping server jumps the 24 h
        waited = await env.get_current_time() - before

    assert waited >= TIMEOUT
    assert (result.status, result.decided_by) == ("expired", "timeout")
    assert (await ad_row(sessions, owner, "ad-1")).status == "active"
    assert [(e.action, e.actor) for e in await audit(sessions)] == [("expire", "timeout")]
    [row] = await approvals(sessions)
    assert (row.status, row.open_key, row.executed_at) == ("expired", None, None)


def gated(acts: MonitorActivities, gate: asyncio.Event, started: asyncio.Event) -> Callable[..., Any]:
    """The real ``execute_action``, held until ``gate`` is set (so decisions can arrive while it runs)."""

    @activity.defn(name=contract.EXECUTE_ACTION)
    async def execute_action(close: ApprovalClose) -> ApprovalOutcome:
        started.set()
        await gate.wait()
        return await acts.execute_action(close)

    return execute_action


async def test_a_contradicting_decision_while_the_action_runs_is_refused(
    sessions: Sessions, client: Client, new_worker: NewWorker
) -> None:
    acts = monitor(sessions)
    owner, request = await critical_ad(sessions, acts)
    gate, started = asyncio.Event(), asyncio.Event()
    worker = new_worker([ApprovalWorkflow], [gated(acts, gate, started), acts.close_approval])
    async with worker:
        handle = await start_approval(client, request, worker.task_queue)
        approving = await handle.start_update(
            contract.DECIDE_UPDATE,
            Decision(approve=True, by="ana"),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=ApprovalOutcome,
        )
        await asyncio.wait_for(started.wait(), 30)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(contract.DECIDE_UPDATE, Decision(approve=False, by="bo"))
        await handle.signal(contract.REJECT_SIGNAL, SignalDecision(by="bo"))  # ignored: ana decided first
        gate.set()
        answer = await approving.result()
        await handle.result()

    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "Conflict"
    assert "already approved by ana" in cause.message
    assert (answer.status, answer.decided_by) == ("executed", "ana")
    assert (await ad_row(sessions, owner, "ad-1")).status == "paused"
    assert [(e.action, e.actor) for e in await audit(sessions)] == [("pause", "ana")]


async def test_a_pending_approval_survives_a_worker_restart(
    sessions: Sessions, client: Client, new_worker: NewWorker
) -> None:
    acts = monitor(sessions)
    owner, request = await critical_ad(sessions, acts)
    first = new_worker([ApprovalWorkflow], monitor_activities(acts), max_cached_workflows=0)
    async with first:
        handle = await start_approval(client, request, first.task_queue)
        assert (await handle.query(contract.APPROVAL_QUERY, result_type=ApprovalOutcome)).status == "pending"

    # a new worker process (fresh activities over the same database) picks the waiting approval up
    second = new_worker([ApprovalWorkflow], monitor_activities(monitor(sessions)), task_queue=first.task_queue)
    async with second:
        answer = await handle.execute_update(
            contract.DECIDE_UPDATE, Decision(approve=True, by="ana"), result_type=ApprovalOutcome
        )

    assert answer.status == "executed"
    assert (await ad_row(sessions, owner, "ad-1")).status == "paused"


async def test_the_fatigue_run_starts_one_approval_workflow_per_critical_ad(
    sessions: Sessions, env: WorkflowEnvironment, new_worker: NewWorker
) -> None:
    acts = monitor(sessions)
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "ad-1", SATURATED)
    client = env.client
    worker = new_worker(
        [FatigueMonitorWorkflow, ApprovalWorkflow], monitor_activities(acts), task_queue=contract.FATIGUE_QUEUE
    )
    async with worker:

        async def fatigue_run() -> FatigueReport:
            handle = await client.start_workflow(
                FatigueMonitorWorkflow.run,
                contract.ScheduledRun(),
                id=f"{contract.FATIGUE_SCHEDULE.id}-{uuid.uuid4()}",
                task_queue=contract.FATIGUE_QUEUE,
            )
            with env.auto_time_skipping_disabled():  # the approval's 24 h timer must not be skipped meanwhile
                return await handle.result()

        first = await fatigue_run()
        [request] = first.approvals
        child: ApprovalHandle = client.get_workflow_handle(
            contract.approval_workflow_id(request.approval_id), result_type=ApprovalOutcome
        )
        started = await child.describe()
        second = await fatigue_run()
        again = await child.describe()
        pending = await child.query(contract.APPROVAL_QUERY, result_type=ApprovalOutcome)

        answer = await child.execute_update(
            contract.DECIDE_UPDATE, Decision(approve=True, by="ana"), result_type=ApprovalOutcome
        )
        with env.auto_time_skipping_disabled():
            await child.result()

    assert (first.assessed, first.critical) == (1, 1)
    assert (request.ad_id, request.action, request.user_id) == ("ad-1", "rotate", owner)
    assert started.status == WorkflowExecutionStatus.RUNNING  # the approval outlives the fatigue run
    assert [r.approval_id for r in second.approvals] == [request.approval_id]
    assert again.run_id == started.run_id  # the second run started no second approval workflow
    assert pending.status == "pending"
    assert len(await approvals(sessions)) == 1
    assert answer.status == "executed"
    assert (await ad_row(sessions, owner, "ad-1")).status == "rotated"


async def test_the_fatigue_run_with_nothing_critical_starts_nothing(
    sessions: Sessions, client: Client, new_worker: NewWorker
) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "ad-1")
    worker = new_worker([FatigueMonitorWorkflow, ApprovalWorkflow], monitor_activities(monitor(sessions)))
    async with worker:
        handle = await client.start_workflow(
            FatigueMonitorWorkflow.run,
            contract.ScheduledRun(),
            id=f"fatigue-{uuid.uuid4()}",
            task_queue=worker.task_queue,
        )
        report = await handle.result()
        progress = await handle.query(PROGRESS_QUERY, result_type=Progress)

    assert (report.assessed, report.critical, report.approvals) == (1, 0, [])
    assert progress.stage == "done" and "1 ads assessed" in progress.message
    async with sessions() as session:
        assert (await session.scalars(select(Approval))).all() == []
