"""Temporal Schedules Conveyor keeps in sync (the seeds' Celery Beat entries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import ScheduleOverlapPolicy

from activities.crawl.schemas import CleanupRequest
from activities.video.maintenance import MonitorRequest, VideoCleanupRequest
from workflows.maintenance import (
    CleanupCrawlSessionsWorkflow,
    MonitorResourcesWorkflow,
    PurgeAnalysisWorkWorkflow,
    PurgeInput,
    VideoCleanupWorkflow,
)


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule: which workflow with which input, when, on which queue, and what to do on overlap."""

    id: str
    workflow: str
    arg: BaseModel
    task_queue: str
    cron: str
    description: str
    overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP
    execution_timeout: timedelta = timedelta(hours=1)


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec(
        id="analysis-purge-work",
        workflow=PurgeAnalysisWorkWorkflow.__name__,
        arg=PurgeInput(retention_hours=24),
        task_queue="analysis",
        cron="30 3 * * *",
        description="delete intermediate files of analysis tasks finished over 24 h ago (seed 003 result_expires)",
    ),
    ScheduleSpec(
        id="crawl-cleanup",
        workflow=CleanupCrawlSessionsWorkflow.__name__,
        arg=CleanupRequest(),
        task_queue="default",
        cron="0 3 * * *",
        description="delete crawl sessions, bugs, tickets and screenshots past the retention (seed 000 cleanup)",
    ),
    ScheduleSpec(
        id="video-cleanup",
        workflow=VideoCleanupWorkflow.__name__,
        arg=VideoCleanupRequest(),
        task_queue="maintenance",
        cron="0 2 * * *",
        description="delete old video temp files, keep the folder under its size cap (seed 004 cleanup_task)",
        # three 30-minute attempts fit inside
        execution_timeout=timedelta(hours=2),
    ),
    ScheduleSpec(
        id="video-monitor-resources",
        workflow=MonitorResourcesWorkflow.__name__,
        arg=MonitorRequest(),
        task_queue="maintenance",
        cron="* * * * *",
        description="sample CPU, memory, disk and GPU use, warn above the threshold (seed 004 monitor_resources)",
        overlap=ScheduleOverlapPolicy.SKIP,
        execution_timeout=timedelta(minutes=2),
    ),
)
