"""Maintenance workflows run by Temporal Schedules (the seeds' Celery Beat entries)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.analysis.activities import AnalysisActivities
    from activities.analysis.schemas import PurgeRequest, PurgeResult
    from activities.crawl.activities import CrawlActivities
    from activities.crawl.schemas import CleanupRequest, CleanupResult
    from activities.video.maintenance import (
        MonitorRequest,
        ResourceReport,
        VideoCleanupRequest,
        VideoCleanupResult,
        VideoMaintenanceActivities,
    )
    from conveyor.errors import NON_RETRYABLE_ERROR_TYPES

PURGE_TIMEOUT = timedelta(minutes=30)
PURGE_HEARTBEAT = timedelta(seconds=60)
PURGE_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)


class PurgeInput(BaseModel):
    """How old a finished task's intermediate files must be to go (seed 003: results expire after 24 h)."""

    retention_hours: float = 24.0


@workflow.defn(name="PurgeAnalysisWorkWorkflow")
class PurgeAnalysisWorkWorkflow:
    """Deletes intermediate Parquet files of finished analysis tasks; published outputs stay."""

    @workflow.run
    async def run(self, request: PurgeInput) -> PurgeResult:
        """Purge and report what was removed."""
        return await workflow.execute_activity_method(
            AnalysisActivities.purge_work,
            PurgeRequest(retention_hours=request.retention_hours),
            start_to_close_timeout=PURGE_TIMEOUT,
            heartbeat_timeout=PURGE_HEARTBEAT,
            retry_policy=PURGE_RETRY,
        )


CLEANUP_TIMEOUT = timedelta(minutes=30)


@workflow.defn(name="CleanupCrawlSessionsWorkflow")
class CleanupCrawlSessionsWorkflow:
    """Seed 000 ``cleanup_old_sessions``: deletes old crawl sessions, their bugs, tickets and screenshots."""

    @workflow.run
    async def run(self, request: CleanupRequest) -> CleanupResult:
        """Clean up and report the counts removed."""
        return await workflow.execute_activity_method(
            CrawlActivities.cleanup_old_sessions,
            request,
            start_to_close_timeout=CLEANUP_TIMEOUT,
            heartbeat_timeout=PURGE_HEARTBEAT,
            retry_policy=PURGE_RETRY,
        )


#: Seed 004 ``cleanup_task``: a pass over a large working folder may take a while; it heartbeats.
VIDEO_CLEANUP_TIMEOUT = timedelta(minutes=30)
VIDEO_CLEANUP_HEARTBEAT = timedelta(seconds=60)
VIDEO_CLEANUP_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)


@workflow.defn(name="VideoCleanupWorkflow")
class VideoCleanupWorkflow:
    """Seed 004 ``cleanup_task``: old temporary files, the MAX_TEMP_SIZE_GB cap, and empty folders."""

    @workflow.run
    async def run(self, request: VideoCleanupRequest) -> VideoCleanupResult:
        """Clean the video working folder and report what was removed."""
        return await workflow.execute_activity_method(
            VideoMaintenanceActivities.cleanup_temp,
            request,
            start_to_close_timeout=VIDEO_CLEANUP_TIMEOUT,
            heartbeat_timeout=VIDEO_CLEANUP_HEARTBEAT,
            retry_policy=VIDEO_CLEANUP_RETRY,
        )


#: Seed 004 ``monitor_resources_task`` runs every minute: a sample must finish well inside it.
MONITOR_TIMEOUT = timedelta(seconds=50)
MONITOR_RETRY = RetryPolicy(maximum_attempts=2, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)


@workflow.defn(name="MonitorResourcesWorkflow")
class MonitorResourcesWorkflow:
    """Seed 004 ``monitor_resources_task``: one CPU, memory, disk and GPU sample, stored, with warnings."""

    @workflow.run
    async def run(self, request: MonitorRequest) -> ResourceReport:
        """Take and store one sample."""
        return await workflow.execute_activity_method(
            VideoMaintenanceActivities.monitor_resources,
            request,
            start_to_close_timeout=MONITOR_TIMEOUT,
            retry_policy=MONITOR_RETRY,
        )
