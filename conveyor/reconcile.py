"""Run rows read back against Temporal: reconcile runs Temporal ended itself, and cancel runs, one way for all.

A workflow records its own end (:func:`conveyor.runs.guarded`), but a run Temporal ended itself — terminated,
timed out at its execution timeout, or gone — never ran that bookkeeping. Every read of run rows goes through
:func:`reconcile`, so such a run is shown failed with the reason, never as running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from conveyor.client import describe_execution, temporal_errors
from conveyor.errors import Conflict, ConveyorError, ErrorKind, NotFound
from conveyor.records import RunColumns
from conveyor.runs import ACTIVE, RunError, RunStatus

#: A run whose workflow Temporal does not know is only declared lost after this long (its start may be in flight).
LOST_AFTER = timedelta(minutes=2)

_ENDED_BY_TEMPORAL: dict[WorkflowExecutionStatus, RunError] = {
    WorkflowExecutionStatus.TERMINATED: RunError(
        kind=ErrorKind.INTERNAL.value, code="TERMINATED", message="the run was terminated"
    ),
    WorkflowExecutionStatus.TIMED_OUT: RunError(
        kind=ErrorKind.TIMEOUT.value, code="TIMEOUT", message="the run exceeded its time limit"
    ),
    WorkflowExecutionStatus.FAILED: RunError(
        kind=ErrorKind.INTERNAL.value, code="WORKFLOW_FAILED", message="the run's workflow failed before recording it"
    ),
    WorkflowExecutionStatus.COMPLETED: RunError(
        kind=ErrorKind.INTERNAL.value, code="NOT_RECORDED", message="the run's workflow ended without recording it"
    ),
}
_LOST = RunError(kind=ErrorKind.NOT_FOUND.value, code="WORKFLOW_NOT_FOUND", message="Temporal has no record of the run")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _verdict(row: RunColumns, desc: WorkflowExecutionDescription | None) -> tuple[RunStatus, RunError | None] | None:
    """What an active row should become given its workflow's state, or None when it is right as it is."""
    if desc is None:
        if datetime.now(UTC) - _aware(row.updated_at or row.created_at) < LOST_AFTER:
            return None
        return RunStatus.FAILED, _LOST
    if desc.status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW, None):
        return None
    if desc.status == WorkflowExecutionStatus.CANCELED:
        return RunStatus.CANCELLED, None
    return RunStatus.FAILED, _ENDED_BY_TEMPORAL[desc.status]


async def reconcile(session: AsyncSession, client: Client, rows: Sequence[RunColumns]) -> bool:
    """Mark active rows whose workflow Temporal closed (or lost) as their end; True if any changed (committed)."""
    changed = await close_ended(session, client, rows)
    if changed:
        await session.commit()
    return changed


async def close_ended(session: AsyncSession, client: Client, rows: Sequence[RunColumns]) -> bool:
    """:func:`reconcile` without the commit: the ended rows are set and flushed (settling their credits) in the
    caller's transaction; True if any changed. Temporal unreachable: nothing changes."""
    active = [r for r in rows if r.status in ACTIVE and r.workflow_id]
    ids = sorted({r.workflow_id for r in active if r.workflow_id})
    if not ids:
        return False
    try:
        found = await asyncio.gather(*(describe_execution(client, i) for i in ids))
    except ConveyorError:  # Temporal unreachable: show the rows as recorded
        return False
    described = dict(zip(ids, found, strict=True))
    changed = False
    for row in active:
        desc = described[row.workflow_id or ""]
        verdict = _verdict(row, desc)
        if verdict is None or not await _still_active(session, row):
            continue
        status, error = verdict
        row.set_status(status, error=error, at=desc.close_time if desc is not None else None)
        changed = True
    if changed:
        await session.flush()
    return changed


async def _still_active(session: AsyncSession, row: RunColumns) -> bool:
    """Whether the row is still active as committed now.

    The caller read it before Temporal was asked, and a workflow records its own end just before it closes: in
    between, the row read says running while Temporal says completed. A fresh read (another connection: on SQLite the
    caller's transaction keeps its older snapshot) tells a run that recorded its end from one that never did.
    """
    identity = inspect(row).identity
    if identity is None or session.bind is None:
        return True
    async with AsyncSession(bind=session.bind) as fresh:
        current = await fresh.get(type(row), identity)
        return current is not None and current.status in ACTIVE


async def cancel_run(session: AsyncSession, client: Client, row: RunColumns, *, what: str, finished_code: str) -> None:
    """Cancel a run: through its workflow when one runs, at once when none does (never started, or gone).

    A finished run is a Conflict ``finished_code``; the workflow records ``cancelled`` itself as it winds down.
    """
    if row.finished:
        raise Conflict(f"{what} is already {row.status}", code=finished_code)
    if row.workflow_id is not None and row.status != RunStatus.CREATED:
        try:
            with temporal_errors(f"could not cancel {what}"):
                await client.get_workflow_handle(row.workflow_id).cancel()
            return
        except NotFound:
            pass
    row.set_status(RunStatus.CANCELLED)
    await session.commit()
