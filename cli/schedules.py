"""Create or update every Temporal Schedule Conveyor defines, and list them."""

from __future__ import annotations

from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from conveyor.pipeline import Pipeline
from conveyor.pipeline import Schedule as ConveyorSchedule
from conveyor.temporal import PIPELINE_ATTR
from workers.pipelines import PIPELINES


def _schedule(pipeline: Pipeline, spec: ConveyorSchedule) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            spec.workflow,
            args=[spec.arg],
            id=f"{spec.id}-run",
            task_queue=spec.queue,
            execution_timeout=spec.execution_timeout,
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(PIPELINE_ATTR, pipeline.name)]),
        ),
        spec=ScheduleSpec(cron_expressions=[spec.cron]),
        policy=SchedulePolicy(overlap=spec.overlap),
        state=ScheduleState(note=spec.description),
    )


async def sync_schedules(client: Client) -> list[dict[str, str]]:
    """Create missing schedules and update existing ones to match the code; returns what was done."""
    done = []
    for pipeline, spec in ((p, s) for p in PIPELINES for s in p.schedules):
        schedule = _schedule(pipeline, spec)
        try:
            await client.create_schedule(spec.id, schedule)
            done.append({"id": spec.id, "action": "created", "cron": spec.cron})
        except ScheduleAlreadyRunningError:

            def replace(_input: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(spec.id).update(replace)
            done.append({"id": spec.id, "action": "updated", "cron": spec.cron})
    return done


async def list_schedules(client: Client) -> list[dict[str, Any]]:
    """Every schedule on the server with its next run times."""
    rows = []
    async for entry in await client.list_schedules():
        info = entry.info
        rows.append(
            {
                "id": entry.id,
                "workflow": getattr(entry.schedule.action, "workflow", None) if entry.schedule else None,
                "next_runs": [t.isoformat() for t in (info.next_action_times[:3] if info else [])],
                "recent_runs": len(info.recent_actions) if info else 0,
                "paused": entry.schedule.state.paused if entry.schedule else None,
                "note": entry.schedule.state.note if entry.schedule else None,
            }
        )
    return rows
