"""The video pipeline's worker side: Whisper loaded once per process, one set of activities, split by queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.video.activities import VideoActivities, video_activities
from activities.video.captions import AnyCaptioner, make_captioner
from activities.video.contract import MAINTENANCE_QUEUE
from activities.video.maintenance import VideoMaintenanceActivities, video_maintenance_activities
from conveyor.resources import WorkerResources


def activities(resources: WorkerResources, queue: str) -> list[Callable[..., Any]]:
    """The video activities served on ``queue``."""
    s = resources.settings
    if queue == MAINTENANCE_QUEUE:
        return video_maintenance_activities(VideoMaintenanceActivities(resources.sessions, s))

    def captioner() -> AnyCaptioner:
        return resources.shared(
            "video.captioner", lambda: make_captioner(s.whisper_cache_dir_resolved, s.whisper_checkpoint)
        )

    acts = resources.shared(
        "video.activities", lambda: VideoActivities(resources.sessions, resources.blobs, s, captioner)
    )
    return video_activities(acts, queue)
