"""AnalysisWorkflow with its activities replaced by fakes registered under the same names."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from activities.analysis.schemas import (
    AgentOutcome,
    AgentRun,
    AnalysisRequest,
    CreditsRequest,
    DatasetRef,
    InputFile,
    OutputFile,
    PublishRequest,
    PublishResult,
    TaskPlan,
)
from conveyor.errors import BadInput, ErrorKind, InsufficientCredits
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.runs import RunStatus, RunUpdate
from tests.helpers import NewWorker, assert_eventually, record_run_fake, replayer
from workflows.analysis import AnalysisWorkflow


@dataclass
class Fakes:
    """Fake activities that record what the workflow asked for."""

    agents: list[str] = field(default_factory=lambda: ["unified-profiler", "score-risk"])
    hold_error: Exception | None = None
    agent_error: dict[str, Exception] = field(default_factory=dict)
    agent_delay: float = 0.0
    charge_failures: int = 0
    calls: list[str] = field(default_factory=list)
    updates: list[RunUpdate] = field(default_factory=list)
    published: list[PublishRequest] = field(default_factory=list)
    runs: list[AgentRun] = field(default_factory=list)
    charges: int = 0

    def activities(self) -> list[object]:
        fakes = self

        @activity.defn(name="analysis.load_task")
        async def load_task(req: AnalysisRequest) -> TaskPlan:
            fakes.calls.append("load_task")
            return TaskPlan(
                task_id=req.task_id,
                user_id=req.user_id,
                tool_id="profile-my-data",
                agents=fakes.agents,
                files=[InputFile(name="a.csv", key="k/a.csv", size=10)],
                cost=3,
            )

        @activity.defn(name="analysis.prepare_inputs")
        async def prepare_inputs(plan: TaskPlan) -> list[DatasetRef]:
            fakes.calls.append("prepare_inputs")
            return [DatasetRef(name="a.csv", key="k/a.parquet", rows=3, columns=["x"])]

        @activity.defn(name="analysis.hold_credits")
        async def hold_credits(req: CreditsRequest) -> int:
            fakes.calls.append("hold_credits")
            if fakes.hold_error is not None:
                raise fakes.hold_error
            return req.amount

        @activity.defn(name="analysis.run_agent")
        async def run_agent(run: AgentRun) -> AgentOutcome:
            fakes.calls.append(f"run_agent:{run.agent_id}")
            fakes.runs.append(run)
            if run.agent_id in fakes.agent_error:
                raise fakes.agent_error[run.agent_id]
            deadline = asyncio.get_running_loop().time() + fakes.agent_delay
            while asyncio.get_running_loop().time() < deadline:
                activity.heartbeat()
                await asyncio.sleep(0.1)
            return AgentOutcome(
                agent_id=run.agent_id,
                summary_key=f"k/{run.agent_id}.json",
                current=[DatasetRef(name="a.csv", key=f"k/{run.agent_id}.parquet", rows=3, columns=["x"])],
                files=[OutputFile(name=f"{run.agent_id}.json", key="k", size=1, content_type="application/json")],
            )

        @activity.defn(name="analysis.publish_outputs")
        async def publish_outputs(req: PublishRequest) -> PublishResult:
            fakes.calls.append("publish_outputs")
            fakes.published.append(req)
            return PublishResult(outputs=[f for o in req.outcomes for f in o.files])

        @activity.defn(name="analysis.charge_credits")
        async def charge_credits(req: CreditsRequest) -> int:
            fakes.calls.append("charge_credits")
            if activity.info().attempt <= fakes.charge_failures:
                raise ConnectionError("database connection reset")
            fakes.charges += 1
            return 3

        @activity.defn(name="analysis.release_credits")
        async def release_credits(req: CreditsRequest) -> bool:
            fakes.calls.append("release_credits")
            return True

        record_run = record_run_fake(fakes.updates.append)

        return [
            load_task,
            prepare_inputs,
            hold_credits,
            run_agent,
            publish_outputs,
            charge_credits,
            release_credits,
            record_run,
        ]


def _worker(new_worker: NewWorker, fakes: Fakes) -> Worker:
    return new_worker([AnalysisWorkflow], fakes.activities())


def _request(**kw: float) -> AnalysisRequest:
    return AnalysisRequest(task_id=str(uuid.uuid4()), user_id=1, **kw)


async def test_runs_agents_in_order_chaining_outputs_and_charges_once(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes(charge_failures=1)
    async with _worker(new_worker, fakes) as worker:
        result = await client.execute_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )
    assert result.status == "completed"
    assert result.agents_completed == ["unified-profiler", "score-risk"]
    assert [c for c in fakes.calls if c.startswith("run_agent")] == [
        "run_agent:unified-profiler",
        "run_agent:score-risk",
    ]
    # the second agent works on what the first produced, and sees its summary
    assert fakes.runs[1].current[0].key == "k/unified-profiler.parquet"
    assert fakes.runs[1].previous == {"unified-profiler": "k/unified-profiler.json"}
    # credits were held at admission; the completed record settles them (the workflow charges nothing itself)
    assert fakes.charges == 0 and result.credits_charged == 3
    assert not {"hold_credits", "charge_credits", "release_credits"} & set(fakes.calls)
    assert {(u.table, u.id) for u in fakes.updates} == {("analysis_tasks", fakes.runs[0].task_id)}
    agent_updates = [u for u in fakes.updates if u.progress is not None and u.fields.get("current_agent")]
    assert [u.progress for u in agent_updates] == [20, 55]  # 20 + 70*i/n
    assert [(u.stage, u.fields["current_agent"]) for u in agent_updates] == [
        ("unified-profiler", "unified-profiler"),
        ("score-risk", "score-risk"),
    ]
    # completing the run (the row's progress then reads 100) clears the current agent
    assert fakes.updates[-1].status == RunStatus.COMPLETED and fakes.updates[-1].error is None
    assert fakes.updates[-1].fields == {"current_agent": None}


async def test_progress_query_reports_current_agent(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes(agent_delay=1.5)
    async with _worker(new_worker, fakes) as worker:
        handle = await client.start_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )

        async def in_first_agent() -> Progress:
            p: Progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
            assert p.stage == "unified-profiler"
            return p

        p = await assert_eventually(in_first_agent)
        assert p.percent == 20 and p.total == 2 and p.done == 0
        await handle.result()
        final = await handle.query(PROGRESS_QUERY, result_type=Progress)
        assert final.stage == "completed" and final.percent == 100


async def test_credits_are_left_to_admission_and_the_end_record(client: Client, new_worker: NewWorker) -> None:
    """The hold is taken by the API's admission before any conversion, so the workflow holds nothing itself."""
    fakes = Fakes(hold_error=InsufficientCredits("costs 3, 1 available").to_application_error())
    async with _worker(new_worker, fakes) as worker:
        await client.execute_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )
    assert not {"hold_credits", "charge_credits", "release_credits"} & set(fakes.calls)
    assert fakes.updates[-1].status == RunStatus.COMPLETED


async def test_agent_bad_input_keeps_finished_outputs_and_releases_credits(
    client: Client, new_worker: NewWorker
) -> None:
    fakes = Fakes(agent_error={"score-risk": BadInput("bad param", code="BAD_PARAMS").to_application_error()})
    async with _worker(new_worker, fakes) as worker:
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
            )
    assert fakes.calls.count("run_agent:score-risk") == 1  # bad input is never retried
    assert fakes.published[-1].status == "failed"
    assert [o.agent_id for o in fakes.published[-1].outcomes] == ["unified-profiler"]
    # the tables published are the last finished agent's output, not the raw inputs
    assert [d.key for d in fakes.published[-1].current] == ["k/unified-profiler.parquet"]
    assert not {"release_credits", "charge_credits"} & set(fakes.calls)  # the end record settles
    last = fakes.updates[-1]
    assert last.status == RunStatus.FAILED and last.error is not None and last.error.code == "BAD_PARAMS"
    assert last.fields == {"current_agent": None}


async def test_connection_errors_are_retried_then_fail(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes(agent_error={"unified-profiler": ConnectionError("s3 reset")})
    async with _worker(new_worker, fakes) as worker:
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
            )
    assert fakes.calls.count("run_agent:unified-profiler") == 4  # first try + 3 retries (seed max_retries=3)
    assert "charge_credits" not in fakes.calls


async def test_soft_limit_stops_at_agent_boundary(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes(agent_delay=1.0)
    async with _worker(new_worker, fakes) as worker:
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(
                AnalysisWorkflow.run,
                _request(soft_limit_s=0.5, hard_limit_s=60),
                id=f"analysis-{uuid.uuid4()}",
                task_queue=worker.task_queue,
            )
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.details[0] == "TIMEOUT"
    assert [c for c in fakes.calls if c.startswith("run_agent")] == ["run_agent:unified-profiler"]
    assert [o.agent_id for o in fakes.published[-1].outcomes] == ["unified-profiler"]
    assert not {"release_credits", "charge_credits"} & set(fakes.calls)  # the end record settles
    last = fakes.updates[-1]
    assert last.status == RunStatus.FAILED and last.error is not None and last.error.code == "TIMEOUT"
    assert last.error.kind == ErrorKind.TIMEOUT.value


async def test_cancel_keeps_outputs_releases_credits_and_marks_cancelled(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes(agents=["unified-profiler", "score-risk", "drift-detector"], agent_delay=1.0)
    async with _worker(new_worker, fakes) as worker:
        handle = await client.start_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )

        async def second_agent_running() -> None:
            p = await handle.query(PROGRESS_QUERY, result_type=Progress)
            assert p.stage == "score-risk"

        await assert_eventually(second_agent_running)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    assert not {"release_credits", "charge_credits"} & set(fakes.calls)  # the end record settles
    assert fakes.published[-1].status == "cancelled"
    assert [o.agent_id for o in fakes.published[-1].outcomes] == ["unified-profiler"]
    assert fakes.updates[-1].status == RunStatus.CANCELLED and fakes.updates[-1].error is None


async def test_fresh_histories_replay(client: Client, new_worker: NewWorker) -> None:
    histories = []
    fakes = Fakes(agents=["unified-profiler", "score-risk", "drift-detector"], agent_delay=0.5)
    async with new_worker([AnalysisWorkflow], fakes.activities()) as worker:
        done = await client.start_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )
        await done.result()
        histories.append(await done.fetch_history())
        cancelled = await client.start_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )

        async def second_agent() -> None:
            assert (await cancelled.query(AnalysisWorkflow.progress)).stage == "score-risk"

        await assert_eventually(second_agent)
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        histories.append(await cancelled.fetch_history())
    for history in histories:
        result = await replayer().replay_workflow(history)
        assert result.replay_failure is None
