"""AnalysisWorkflow: the routed data-analysis run of seed 003 (Agensium), one workflow per task.

load task/user → route by tool → convert files to Parquet (and load params) → run the tool's agents in order,
chaining each one's output into the next → publish the response and outputs → record the end. The credits were
held when the task was admitted (before any conversion); recording the end settles them in the kernel: a
completed run pays its cost, a failed, timed-out or cancelled one keeps the outputs of finished agents and pays
for those agents only (partial capture), the rest is given back. Runs started before admission held credits
(no :data:`BILLING_PATCH` marker) hold, charge and release through their own activities as they did.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.analysis import contract
    from activities.analysis.schemas import (
        AgentOutcome,
        AgentRun,
        AnalysisRequest,
        AnalysisResult,
        CreditsRequest,
        DatasetRef,
        OutputFile,
        PublishRequest,
        PublishResult,
        PurgeRequest,
        PurgeResult,
        TaskPlan,
    )
    from conveyor import runs
    from conveyor.errors import ErrorKind
    from conveyor.progress import PROGRESS_QUERY, Progress
    from conveyor.runs import BOOKKEEPING_TIMEOUT, RunEnd, RunError, RunStatus, RunUpdate
    from conveyor.steps import Step, retries

TASK_QUEUE = contract.TASKS_QUEUE
TASK = contract.TASK_TABLE

#: Seed: task_soft_time_limit=1500 s, task_time_limit=1800 s (defaults of AnalysisRequest).
PREPARE_TIMEOUT = timedelta(minutes=10)
PUBLISH_TIMEOUT = timedelta(minutes=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
#: Seed: autoretry_for=(ConnectionError, TimeoutError), max_retries=3, retry_backoff, retry_backoff_max=300.
RETRY_POLICY = retries(4, first=timedelta(seconds=2), most=timedelta(seconds=300))
LOAD = Step(contract.LOAD_TASK, BOOKKEEPING_TIMEOUT, RETRY_POLICY)
PREPARE = Step(contract.PREPARE_INPUTS, PREPARE_TIMEOUT, RETRY_POLICY, heartbeat=HEARTBEAT_TIMEOUT)
HOLD = Step(contract.HOLD_CREDITS, BOOKKEEPING_TIMEOUT, RETRY_POLICY)
CHARGE = Step(contract.CHARGE_CREDITS, BOOKKEEPING_TIMEOUT, RETRY_POLICY)
RELEASE = Step(contract.RELEASE_CREDITS, BOOKKEEPING_TIMEOUT, RETRY_POLICY)
#: An agent may use what is left of the hard limit (its timeout is set per call).
AGENT = Step(contract.RUN_AGENT, BOOKKEEPING_TIMEOUT, RETRY_POLICY, heartbeat=HEARTBEAT_TIMEOUT)
PUBLISH = Step(contract.PUBLISH_OUTPUTS, PUBLISH_TIMEOUT, RETRY_POLICY, heartbeat=HEARTBEAT_TIMEOUT)
#: Progress bands of the seed's transformers: agents run between 20% and 90%.
AGENTS_START_PERCENT = 20
AGENTS_SPAN_PERCENT = 70
#: Credits are held at admission and settled by the end-of-run record (not by the workflow's own activities).
BILLING_PATCH = "conveyor-admission-billing"


workflow_id_for = contract.workflow_id_for


@workflow.defn(name="AnalysisWorkflow")
class AnalysisWorkflow:
    """Runs one analysis task; answers ``progress``; cancellation keeps finished outputs."""

    def __init__(self) -> None:
        self._progress = Progress(stage="queued")
        self._outcomes: list[AgentOutcome] = []
        self._current: list[DatasetRef] = []
        """The chained datasets: inputs, then each transforming agent's output."""
        self._plan: TaskPlan | None = None

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Where the run is."""
        return self._progress

    def _report(self, **changes: object) -> None:
        self._progress = self._progress.advance(workflow.now(), **changes)

    async def _record(self, update: RunUpdate) -> None:
        await runs.record(update, legacy=contract.LEGACY_UPDATE_TASK)

    @workflow.run
    async def run(self, request: AnalysisRequest) -> AnalysisResult:
        """Run the task's tool and record the outcome on the task."""
        self._report(stage="loading", percent=2, message="loading task")
        return await runs.guarded(self._run(request), lambda end: self._wind_down(request, end))

    async def _run(self, request: AnalysisRequest) -> AnalysisResult:
        plan = self._plan = await LOAD.run(request, TaskPlan)
        self._report(stage="preparing", percent=5, total=len(plan.agents), message="converting input files")
        inputs: list[DatasetRef] = await PREPARE.run(plan, list[DatasetRef])
        self._current = inputs
        if not workflow.patched(BILLING_PATCH):
            self._report(stage="billing", percent=15, message=f"holding {plan.cost} credits")
            await HOLD.run(CreditsRequest(task_id=plan.task_id, user_id=plan.user_id, amount=plan.cost), int)
        if await self._run_agents(request, plan, inputs):
            message = f"time limit reached after {len(self._outcomes)} of {len(plan.agents)} agents"
            error = RunError(kind=ErrorKind.TIMEOUT.value, code="TIMEOUT", message=message)
            await self._wind_down(request, RunEnd(status=RunStatus.FAILED, error=error))
            raise ApplicationError(message, "TIMEOUT", type=ErrorKind.TIMEOUT.value, non_retryable=True)
        self._report(stage="publishing", percent=92, message="publishing outputs")
        published = await self._publish(plan, "completed")
        if workflow.patched(BILLING_PATCH):
            charged = plan.cost  # the completed record below charges the admission's hold in full
        else:
            charged = await CHARGE.run(CreditsRequest(task_id=plan.task_id, user_id=plan.user_id), int)
        await self._record(RunUpdate.of(TASK, plan.task_id, status=RunStatus.COMPLETED, current_agent=None))
        self._report(stage="completed", percent=100, done=len(self._outcomes), message="done")
        return AnalysisResult(
            task_id=plan.task_id,
            status="completed",
            agents_completed=[o.agent_id for o in self._outcomes],
            outputs=published,
            credits_charged=charged,
        )

    async def _run_agents(self, request: AnalysisRequest, plan: TaskPlan, inputs: list[DatasetRef]) -> bool:
        """Run the plan's agents in order, chaining datasets; returns True if the soft time limit stopped it."""
        started = workflow.info().start_time
        summaries: dict[str, str] = {}
        n = len(plan.agents)
        for i, agent_id in enumerate(plan.agents):
            elapsed = (workflow.now() - started).total_seconds()
            if elapsed >= request.soft_limit_s:
                return True
            percent = int(AGENTS_START_PERCENT + AGENTS_SPAN_PERCENT * i / n)
            self._report(stage=agent_id, percent=percent, done=i, message=f"running {agent_id} ({i + 1}/{n})")
            update = RunUpdate.of(TASK, plan.task_id, stage=agent_id, progress=percent, current_agent=agent_id)
            await self._record(update)
            step = replace(AGENT, timeout=timedelta(seconds=max(1.0, request.hard_limit_s - elapsed)))
            outcome = await step.run(
                AgentRun(
                    task_id=plan.task_id,
                    tool_id=plan.tool_id,
                    agent_id=agent_id,
                    inputs=inputs,
                    current=self._current,
                    params=_agent_params(plan.params, agent_id),
                    previous=dict(summaries),
                ),
                AgentOutcome,
            )
            self._outcomes.append(outcome)
            summaries[agent_id] = outcome.summary_key
            if outcome.current is not None:
                self._current = outcome.current
        self._report(done=n, percent=AGENTS_START_PERCENT + AGENTS_SPAN_PERCENT)
        return False

    async def _publish(
        self, plan: TaskPlan, status: str, code: str | None = None, message: str | None = None
    ) -> list[OutputFile]:
        """Publish the response and every output of the agents that finished."""
        result = await PUBLISH.run(
            PublishRequest(
                task_id=plan.task_id,
                tool_id=plan.tool_id,
                agents=plan.agents,
                outcomes=self._outcomes,
                current=self._current,
                status=status,
                error_code=code,
                error_message=message,
            ),
            PublishResult,
        )
        return result.outputs

    async def _wind_down(self, request: AnalysisRequest, end: RunEnd) -> None:
        """Keep finished outputs and record the final status (which settles the credits: finished agents pay)."""
        plan = self._plan
        status = end.status.value
        code = end.error.code if end.error is not None else None
        if plan is not None:
            if self._outcomes:
                await self._publish(plan, status, code, end.error.message if end.error else end.message)
            if not workflow.patched(BILLING_PATCH):
                await RELEASE.run(CreditsRequest(task_id=plan.task_id, user_id=plan.user_id), bool)
        if code != "TASK_NOT_FOUND":
            update = RunUpdate.of(TASK, request.task_id, status=end.status, error=end.error, current_agent=None)
            await self._record(update)
        self._report(stage=status, message=end.message)


def _agent_params(params: dict[str, object], agent_id: str) -> dict[str, object]:
    """The parameters addressed to one agent (``params[agent_id]``)."""
    value = params.get(agent_id, {})
    return dict(value) if isinstance(value, dict) else {}


PURGE = Step(
    contract.PURGE_WORK,
    timedelta(minutes=30),
    retries(3),
    heartbeat=timedelta(seconds=60),
)


@workflow.defn(name=contract.PURGE_WORKFLOW)
class PurgeAnalysisWorkWorkflow:
    """Deletes intermediate Parquet files of finished analysis tasks; published outputs stay (a schedule)."""

    @workflow.run
    async def run(self, request: PurgeRequest) -> PurgeResult:
        """Purge and report what was removed."""
        return await PURGE.run(request, PurgeResult)
