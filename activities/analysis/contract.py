"""The analysis pipeline's light contract (seed 003, Agensium): queues, workflow ids, activity names, manifest.

The workflow, the API, the CLI and the activities all name things through this module; it imports nothing
heavy, so importing it (or the workflow) never loads DuckDB or Polars.
"""

from __future__ import annotations

from datetime import timedelta

from activities.analysis.catalog import TOOLS
from activities.analysis.schemas import PurgeRequest
from conveyor.pipeline import Launch, Pipeline, Price, Queue, Schedule

NAME = "analysis"
#: Seed: CELERY_WORKER_CONCURRENCY=4.
TASKS_QUEUE = "analysis.tasks"

ANALYSIS_WORKFLOW = "AnalysisWorkflow"
PURGE_WORKFLOW = "PurgeAnalysisWorkWorkflow"
#: Temporal's own backstop beyond the workflow's hard limit (seed: 30 min; the workflow enforces that itself).
EXECUTION_TIMEOUT = timedelta(minutes=40)
ANALYSIS_START = Launch(ANALYSIS_WORKFLOW, TASKS_QUEUE, EXECUTION_TIMEOUT)

LOAD_TASK = "analysis.load_task"
PREPARE_INPUTS = "analysis.prepare_inputs"
HOLD_CREDITS = "analysis.hold_credits"
CHARGE_CREDITS = "analysis.charge_credits"
RELEASE_CREDITS = "analysis.release_credits"
RUN_AGENT = "analysis.run_agent"
PUBLISH_OUTPUTS = "analysis.publish_outputs"
PURGE_WORK = "analysis.purge_work"
#: The task's bookkeeping before the kernel's ``conveyor.record_run`` (runs started then still use it).
LEGACY_UPDATE_TASK = "analysis.update_task"

#: The run table of a task.
TASK_TABLE = "analysis_tasks"


def workflow_id_for(task_id: str) -> str:
    """The workflow id of a task's run (deterministic, so a second start is refused)."""
    return f"analysis-{task_id}"


def credits_reference(task_id: str) -> str:
    """The credit hold of a task's run."""
    return f"analysis:{task_id}"


#: Seed 003's per-agent credits: a run pays for each agent that delivered its outputs.
PRICES = tuple(
    Price(f"{tool.id}/{agent.id}", agent.credits, f"one run of {tool.id}'s {agent.id} agent: {agent.description}")
    for tool in TOOLS.values()
    for agent in tool.agents
)


PIPELINE = Pipeline(
    name=NAME,
    description="routed data-analysis tasks: profile, clean and master my data (seed 003)",
    queues=(
        Queue(
            TASKS_QUEUE,
            4,
            "analysis tasks: file conversion and the tools' agents",
            workflows=("AnalysisWorkflow", "PurgeAnalysisWorkWorkflow"),
            legacy=("analysis",),
        ),
    ),
    schedules=(
        Schedule(
            id="analysis-purge-work",
            workflow=PURGE_WORKFLOW,
            arg=PurgeRequest(retention_hours=24),
            queue=TASKS_QUEUE,
            cron="30 3 * * *",
            description="delete intermediate files of analysis tasks finished over 24 h ago (seed 003 result_expires)",
        ),
    ),
    legacy_bookkeeping=(LEGACY_UPDATE_TASK,),
    prices=PRICES,
    max_running=5,
)
