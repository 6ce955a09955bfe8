"""The video pipeline's scheduled activities (seed ``cleanup_task`` and ``monitor_resources_task``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.video.models import ResourceSample
from activities.video.schemas import (
    MonitorRequest,
    ResourceReport,
    ResourceSnapshot,
    VideoCleanupRequest,
    VideoCleanupResult,
)
from activities.video.system import CleanupReport, cleanup_temp, sample_resources
from conveyor.heartbeat import ProgressBox, run_blocking
from conveyor.logging import get_logger
from conveyor.settings import Settings

log = get_logger(__name__)

#: The seed's MAX_TEMP_SIZE_GB counts binary gigabytes.
BYTES_PER_GB = 1024**3
SECONDS_PER_DAY = 86_400
#: A result names at most this many failures (the rest are counted and logged).
MAX_REPORTED_ERRORS = 20


class VideoMaintenanceActivities:
    """Cleanup of the video working folder and resource sampling; the worker gives them DB sessions."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn(name="video.cleanup_temp")
    async def cleanup_temp(self, request: VideoCleanupRequest) -> VideoCleanupResult:
        """Delete old files, then the oldest until the folder fits its cap, then empty folders."""
        s = self._settings
        days = request.max_age_days if request.max_age_days is not None else s.video_cleanup_age_days
        gb = request.max_gb if request.max_gb is not None else s.video_max_temp_gb
        root = s.video_temp_dir_resolved
        box = ProgressBox({"files_removed": 0, "bytes_freed": 0})
        stop = threading.Event()
        report: CleanupReport = await run_blocking(
            lambda: cleanup_temp(
                root,
                max_age_s=days * SECONDS_PER_DAY,
                max_bytes=int(gb * BYTES_PER_GB),
                on_progress=box.set,
                stop=stop,
            ),
            progress=box,
            on_cancel=stop.set,
        )
        for error in report.errors[:MAX_REPORTED_ERRORS]:
            log.warning("video temp file not removed", error=error)
        result = VideoCleanupResult(
            root=str(root),
            max_age_days=days,
            max_gb=gb,
            files_removed=report.files_removed,
            bytes_freed=report.bytes_freed,
            dirs_removed=report.dirs_removed,
            bytes_remaining=report.bytes_remaining,
            files_remaining=report.files_remaining,
            error_count=len(report.errors),
            errors=report.errors[:MAX_REPORTED_ERRORS],
        )
        log.info(
            "video temp folder cleaned",
            freed=_human_bytes(report.bytes_freed),
            remaining=_human_bytes(report.bytes_remaining),
            **result.model_dump(exclude={"errors"}),
        )
        return result

    @activity.defn(name="video.monitor_resources")
    async def monitor_resources(self, request: MonitorRequest) -> ResourceReport:
        """Sample the machine, store the sample, delete expired ones, and log a warning per high measure."""
        s = self._settings
        warn = request.warn_percent if request.warn_percent is not None else s.resource_warn_percent
        hours = request.retention_hours if request.retention_hours is not None else s.resource_retention_hours
        snapshot = await asyncio.to_thread(sample_resources, s.video_temp_dir_resolved, warn_percent=warn)
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = ResourceSample(sampled_at=now, **_columns(snapshot))
            session.add(row)
            pruned = await session.execute(
                delete(ResourceSample).where(ResourceSample.sampled_at < now - timedelta(hours=hours))
            )
            await session.flush()
            sample_id = row.id
        for warning in snapshot.warnings:
            log.warning("high resource usage", host=snapshot.host, warning=warning, warn_percent=warn)
        return ResourceReport(
            sample_id=sample_id,
            sampled_at=now,
            snapshot=snapshot,
            warn_percent=warn,
            samples_pruned=_rowcount(pruned),
        )


def _columns(snapshot: ResourceSnapshot) -> dict[str, Any]:
    """The ``ResourceSample`` column values of a snapshot."""
    return asdict(snapshot)


def _rowcount(result: object) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def video_maintenance_activities(acts: VideoMaintenanceActivities) -> list[Callable[..., Any]]:
    """The bound activity methods the ``maintenance`` queue registers."""
    return [acts.cleanup_temp, acts.monitor_resources]
