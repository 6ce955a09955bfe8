"""What runs on each task queue: workflows and the activities built from shared resources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from activities.analysis.activities import AnalysisActivities, analysis_activities
from conveyor.settings import Settings
from conveyor.storage import BlobStore
from workflows.analysis import AnalysisWorkflow
from workflows.maintenance import PurgeAnalysisWorkWorkflow


@dataclass
class Resources:
    """Clients a worker process opens once and hands to activity classes."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore


@dataclass(frozen=True)
class QueueRegistration:
    """The workflows and activities served on one queue."""

    workflows: Sequence[type] = ()
    activities: Callable[[Resources], list[Callable[..., Any]]] = field(default=lambda _r: [])


def _analysis(res: Resources) -> list[Callable[..., Any]]:
    return analysis_activities(
        AnalysisActivities(res.sessions, res.blobs, max_upload_bytes=res.settings.max_upload_bytes)
    )


#: Queues that have something to run. Pipelines add their entries here.
REGISTRY: dict[str, QueueRegistration] = {
    "analysis": QueueRegistration(workflows=(AnalysisWorkflow, PurgeAnalysisWorkWorkflow), activities=_analysis),
}

#: Every workflow class Conveyor defines (for replay tests and the sandbox).
ALL_WORKFLOWS: tuple[type, ...] = tuple(w for reg in REGISTRY.values() for w in reg.workflows)
