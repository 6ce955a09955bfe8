"""The video pipeline's light contract (seed 004, GeminiVideo): queues, workflow ids, activity names, manifest."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import WorkflowIDReusePolicy

from activities.video.schemas import MonitorRequest, VideoCleanupRequest
from conveyor.pipeline import Launch, Pipeline, Price, Queue, Schedule

NAME = "video"
#: The seed's queues with their worker concurrency (render 2, preview 4, transcode 2, caption 1).
RENDER_QUEUE = "video.render"
PREVIEW_QUEUE = "video.preview"
TRANSCODE_QUEUE = "video.transcode"
CAPTION_QUEUE = "video.caption"
MAINTENANCE_QUEUE = "video.maintenance"

JOB_WORKFLOW = "VideoJobWorkflow"
PROBE_WORKFLOW = "VideoProbeWorkflow"
CLEANUP_WORKFLOW = "VideoCleanupWorkflow"
MONITOR_WORKFLOW = "MonitorResourcesWorkflow"
#: The whole job workflow: a render plus every follow-up at their limits.
EXECUTION_TIMEOUT = timedelta(hours=3)
#: An upload's check on a worker: FFmpeg reads every packet of the file.
PROBE_TIMEOUT = timedelta(minutes=5)
#: A render and its follow-ups, or one step; an id is never reused (each job has its own).
JOB_START = Launch(JOB_WORKFLOW, RENDER_QUEUE, EXECUTION_TIMEOUT, WorkflowIDReusePolicy.REJECT_DUPLICATE)
PROBE_START = Launch(PROBE_WORKFLOW, RENDER_QUEUE, PROBE_TIMEOUT)

RENDER = "video.render"
PREVIEW = "video.preview"
CAPTION = "video.caption"
TRANSCODE = "video.transcode"
PROBE_UPLOAD = "video.probe_upload"
CLEANUP_TEMP = "video.cleanup_temp"
MONITOR_RESOURCES = "video.monitor_resources"
#: The jobs' and video's bookkeeping before the kernel's ``conveyor.record_run``.
LEGACY_FINISH_JOB = "video.finish_job"
LEGACY_FINISH_VIDEO = "video.finish_video"

#: Run tables: the video (an upload, or a render's result) and one job per step.
VIDEO_TABLE = "videos"
JOB_TABLE = "video_jobs"


def render_workflow_id(video_id: str) -> str:
    """The workflow id of a video's render pipeline."""
    return f"video-{video_id}"


def step_workflow_id(kind: str, job_id: str) -> str:
    """The workflow id of one step asked for an existing video."""
    return f"video-{kind}-{job_id}"


def video_prefix(video_id: str) -> str:
    """Where a video's files live in the blob store."""
    return f"videos/{video_id}"


#: A job pays per second of media it outputs (render, transcode) or transcribes (caption), when it completes. A preview
#: writes still frames, no seconds of media (``budget.py`` plans it at 0 s): it is free, though it takes a slot.
SECOND_PRICE = Price(
    "output second",
    1,
    "one second of the video a job renders, transcodes or captions (rounded up per job); previews (still frames) "
    "are free",
)


PIPELINE = Pipeline(
    name=NAME,
    description="timeline renders, previews, captions and transcodes with FFmpeg and Whisper (seed 004)",
    queues=(
        Queue(
            RENDER_QUEUE,
            2,
            "video renders (and the video workflows)",
            workflows=("VideoJobWorkflow", "VideoProbeWorkflow"),
            legacy=("render",),
        ),
        Queue(PREVIEW_QUEUE, 4, "preview frames, contact sheets and upload checks", legacy=("preview",)),
        Queue(TRANSCODE_QUEUE, 2, "transcodes", legacy=("transcode",)),
        Queue(CAPTION_QUEUE, 1, "speech to captions", legacy=("caption",)),
        Queue(
            MAINTENANCE_QUEUE,
            1,
            "working-folder cleanup and resource monitoring",
            workflows=("VideoCleanupWorkflow", "MonitorResourcesWorkflow"),
            legacy=("maintenance",),
        ),
    ),
    schedules=(
        Schedule(
            id="video-cleanup",
            workflow=CLEANUP_WORKFLOW,
            arg=VideoCleanupRequest(),
            queue=MAINTENANCE_QUEUE,
            cron="0 2 * * *",
            description="delete old video temp files, keep the folder under its size cap (seed 004 cleanup_task)",
            # three 30-minute attempts fit inside
            execution_timeout=timedelta(hours=2),
        ),
        Schedule(
            id="video-monitor-resources",
            workflow=MONITOR_WORKFLOW,
            arg=MonitorRequest(),
            queue=MAINTENANCE_QUEUE,
            cron="* * * * *",
            description="sample CPU, memory, disk and GPU use, warn above the threshold (seed 004 monitor_resources)",
            execution_timeout=timedelta(minutes=2),
        ),
    ),
    legacy_bookkeeping=(LEGACY_FINISH_JOB, LEGACY_FINISH_VIDEO),
    prices=(SECOND_PRICE,),
    max_running=2,
)
