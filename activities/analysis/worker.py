"""The analysis pipeline's worker side: its activities, built from the worker's shared resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.analysis.activities import AnalysisActivities, analysis_activities
from activities.analysis.limits import AnalysisLimits
from conveyor.resources import WorkerResources


def activities(resources: WorkerResources, queue: str) -> list[Callable[..., Any]]:
    """Every analysis activity (the pipeline has one queue)."""
    settings = resources.settings
    acts = AnalysisActivities(
        resources.sessions,
        resources.blobs,
        max_upload_bytes=settings.max_upload_bytes,
        limits=AnalysisLimits.from_settings(settings),
    )
    return analysis_activities(acts)
