"""AnalysisWorkflow: the routed data-analysis run of seed 003 (Agensium), one workflow per task.

load task/user → route by tool → convert files to Parquet (and load params) → hold credits → run the
tool's agents in order, chaining each one's output into the next → publish the response and outputs →
charge the held credits exactly once. Failures, the soft time limit and cancellation all keep the outputs
of finished agents and release the hold, so nothing is charged for work that did not complete.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.analysis.activities import AnalysisActivities
    from activities.analysis.schemas import (
        AgentOutcome,
        AgentRun,
        AnalysisRequest,
        AnalysisResult,
        CreditsRequest,
        DatasetRef,
        OutputFile,
        PublishRequest,
        TaskPlan,
        TaskUpdate,
    )
    from conveyor.errors import NON_RETRYABLE_ERROR_TYPES, ErrorKind, failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress

TASK_QUEUE = "analysis"
WORKFLOW_ID_PREFIX = "analysis-"

#: Seed: task_soft_time_limit=1500 s, task_time_limit=1800 s (defaults of AnalysisRequest).
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
PREPARE_TIMEOUT = timedelta(minutes=10)
PUBLISH_TIMEOUT = timedelta(minutes=10)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
#: Seed: autoretry_for=(ConnectionError, TimeoutError), max_retries=3, retry_backoff, retry_backoff_max=300.
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=300),
    maximum_attempts=4,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
#: Progress bands of the seed's transformers: agents run between 20% and 90%.
AGENTS_START_PERCENT = 20
AGENTS_SPAN_PERCENT = 70


def workflow_id_for(task_id: str) -> str:
    """The workflow id of a task's run (deterministic, so a second start is refused)."""
    return f"{WORKFLOW_ID_PREFIX}{task_id}"


@workflow.defn(name="AnalysisWorkflow")
class AnalysisWorkflow:
    """Runs one analysis task; answers ``progress``; cancellation keeps finished outputs."""

    def __init__(self) -> None:
        self._progress = Progress(stage="queued")
        self._outcomes: list[AgentOutcome] = []
        self._current: list[DatasetRef] = []
        """The chained datasets: inputs, then each transforming agent's output."""

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Where the run is."""
        return self._progress

    def _report(self, **changes: object) -> None:
        self._progress = self._progress.advance(workflow.now(), **changes)

    async def _bookkeeping(self, update: TaskUpdate) -> None:
        await workflow.execute_local_activity_method(
            AnalysisActivities.update_task,
            update,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )

    @workflow.run
    async def run(self, request: AnalysisRequest) -> AnalysisResult:
        """Run the task's tool and record the outcome on the task."""
        self._report(stage="loading", percent=2, message="loading task")
        plan: TaskPlan | None = None
        try:
            plan = await workflow.execute_activity_method(
                AnalysisActivities.load_task,
                request,
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
            self._report(stage="preparing", percent=5, total=len(plan.agents), message="converting input files")
            inputs: list[DatasetRef] = await workflow.execute_activity_method(
                AnalysisActivities.prepare_inputs,
                plan,
                start_to_close_timeout=PREPARE_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
            self._current = inputs
            self._report(stage="billing", percent=15, message=f"holding {plan.cost} credits")
            await workflow.execute_activity_method(
                AnalysisActivities.hold_credits,
                CreditsRequest(task_id=plan.task_id, user_id=plan.user_id, amount=plan.cost),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
            if await self._run_agents(request, plan, inputs):
                message = f"time limit reached after {len(self._outcomes)} of {len(plan.agents)} agents"
                await self._wind_down(request, plan, "failed", "TIMEOUT", message)
                raise ApplicationError(message, "TIMEOUT", type=ErrorKind.TIMEOUT.value, non_retryable=True)
            self._report(stage="publishing", percent=92, message="publishing outputs")
            published = await self._publish(plan, "completed")
            charged = await workflow.execute_activity_method(
                AnalysisActivities.charge_credits,
                CreditsRequest(task_id=plan.task_id, user_id=plan.user_id),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
            await self._bookkeeping(
                TaskUpdate(task_id=plan.task_id, status="completed", progress=100, clear_current_agent=True)
            )
            self._report(stage="completed", percent=100, done=len(self._outcomes), message="done")
            return AnalysisResult(
                task_id=plan.task_id,
                status="completed",
                agents_completed=[o.agent_id for o in self._outcomes],
                outputs=published,
                credits_charged=charged,
            )
        except (asyncio.CancelledError, ActivityError) as err:
            if is_cancelled_exception(err):
                await self._wind_down(request, plan, "cancelled", "CANCELLED", "cancelled by request")
                raise
            info = failure_info(err)
            code = "TIMEOUT" if info.kind == ErrorKind.TIMEOUT else info.code
            await self._wind_down(request, plan, "failed", code, info.message)
            raise ApplicationError(info.message, code, type=info.kind.value, non_retryable=True) from err

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
            await self._bookkeeping(TaskUpdate(task_id=plan.task_id, progress=percent, current_agent=agent_id))
            outcome: AgentOutcome = await workflow.execute_activity_method(
                AnalysisActivities.run_agent,
                AgentRun(
                    task_id=plan.task_id,
                    tool_id=plan.tool_id,
                    agent_id=agent_id,
                    inputs=inputs,
                    current=self._current,
                    params=_agent_params(plan.params, agent_id),
                    previous=dict(summaries),
                ),
                start_to_close_timeout=timedelta(seconds=max(1.0, request.hard_limit_s - elapsed)),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRY_POLICY,
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
        result = await workflow.execute_activity_method(
            AnalysisActivities.publish_outputs,
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
            start_to_close_timeout=PUBLISH_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RETRY_POLICY,
        )
        return result.outputs

    async def _wind_down(
        self, request: AnalysisRequest, plan: TaskPlan | None, status: str, code: str, message: str
    ) -> None:
        """Keep finished outputs, give back held credits and record the final status."""
        if plan is not None:
            if self._outcomes:
                await self._publish(plan, status, code, message)
            await workflow.execute_activity_method(
                AnalysisActivities.release_credits,
                CreditsRequest(task_id=plan.task_id, user_id=plan.user_id),
                start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        if code != "TASK_NOT_FOUND":
            await self._bookkeeping(
                TaskUpdate(
                    task_id=request.task_id,
                    status=status,
                    error_code=None if status == "cancelled" else code,
                    error_message=None if status == "cancelled" else message,
                    clear_current_agent=True,
                )
            )
        self._report(stage=status, message=message)


def _agent_params(params: dict[str, object], agent_id: str) -> dict[str, object]:
    """The parameters addressed to one agent (``params[agent_id]``)."""
    value = params.get(agent_id, {})
    return dict(value) if isinstance(value, dict) else {}
