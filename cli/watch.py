"""Live rich progress bars fed by workflows' ``progress`` queries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from temporalio.client import Client

from cli.output import console
from conveyor.client import WorkflowStatus, describe
from conveyor.progress import Progress as WorkflowProgress

POLL_S = 0.3


@dataclass
class Watched:
    """A workflow to follow and the label of its bar."""

    workflow_id: str
    label: str


async def watch(client: Client, items: list[Watched], *, show: bool = True) -> dict[str, WorkflowStatus]:
    """Follow workflows until all have closed; returns their final status by workflow id."""
    final: dict[str, WorkflowStatus] = {}
    columns = (
        TextColumn("{task.fields[label]:<28}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, disable=not show, transient=False) as bars:
        ids = {
            w.workflow_id: bars.add_task(w.label, total=100, label=w.label, stage="queued", detail="") for w in items
        }
        while len(final) < len(items):
            for w in items:
                if w.workflow_id in final:
                    continue
                status = await describe(client, w.workflow_id)
                p = status.progress
                percent = p.percent if p is not None else 0.0
                stage = p.stage if p is not None else status.status
                if status.closed:
                    final[w.workflow_id] = status
                    stage = status.status
                    if status.status == "completed":
                        percent = 100.0
                bars.update(ids[w.workflow_id], completed=percent, stage=stage, detail=_detail(p))
            if len(final) < len(items):
                await asyncio.sleep(POLL_S)
    return final


def _detail(progress: WorkflowProgress | None) -> str:
    """``done/total · message`` of a progress answer, kept short enough for one terminal line."""
    if progress is None:
        return ""
    parts = [f"{progress.done}/{progress.total}"] if progress.total else []
    if progress.message:
        parts.append(progress.message)
    return " · ".join(parts)[:90]
