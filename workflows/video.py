"""VideoJobWorkflow: the seed 004 video tasks composed — render → preview and caption in parallel → transcodes.

One workflow per request: ``video-<video id>`` renders a timeline and then runs the follow-up steps; a preview,
caption or transcode asked for an existing video is its own ``video-<kind>-<job id>`` run of the same workflow
without the render. Each step is an activity on its seed queue with the seed's time limit (render 1 h, preview
5 min, transcode 30 min, caption 15 min) and priority (render first), heartbeating every second; a lost worker
is noticed within the heartbeat timeout and the step runs again from the start. With subtitles ``from_caption``
the caption step transcribes the timeline's speech track before the render, which burns those captions in.
A failed render fails the workflow (the video is ``failed``); a failed follow-up step is recorded on its job and
the others still run. Cancelling stops FFmpeg (no partial files remain) and marks unfinished jobs cancelled.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.video.activities import VideoActivities
    from activities.video.schemas import (
        CaptionRun,
        JobEnd,
        PreviewRun,
        RenderRun,
        StepOutcome,
        TranscodeRun,
        VideoEnd,
        VideoJobInput,
        VideoJobResult,
    )
    from conveyor.errors import NON_RETRYABLE_ERROR_TYPES, failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress

TASK_QUEUE = "render"
WORKFLOW_ID_PREFIX = "video-"
#: Seed 004 time limits per task.
TIME_LIMITS = {
    "render": timedelta(hours=1),
    "preview": timedelta(minutes=5),
    "transcode": timedelta(minutes=30),
    "caption": timedelta(minutes=15),
}
#: Seed queue priorities (render 10 > transcode 7 > caption 6 > preview 5) as Temporal priority keys (1 first).
PRIORITIES = {
    "render": Priority(priority_key=1),
    "transcode": Priority(priority_key=2),
    "caption": Priority(priority_key=3),
    "preview": Priority(priority_key=4),
}
#: Steps heartbeat every second; a worker that stops answering is given up on after this.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
#: The whole workflow: a render plus every follow-up at their limits.
EXECUTION_TIMEOUT = timedelta(hours=3)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)


def render_workflow_id(video_id: str) -> str:
    """The workflow id of a video's render pipeline."""
    return f"{WORKFLOW_ID_PREFIX}{video_id}"


def step_workflow_id(kind: str, job_id: str) -> str:
    """The workflow id of one step asked for an existing video."""
    return f"{WORKFLOW_ID_PREFIX}{kind}-{job_id}"


@workflow.defn(name="VideoJobWorkflow")
class VideoJobWorkflow:
    """Runs a video's steps in the seed's order; answers ``progress`` with the steps done and running."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._state: dict[str, str] = {}
        self._outcomes: dict[str, StepOutcome] = {}
        self._errors: dict[str, str] = {}
        self._progress = Progress(stage="queued")

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Steps finished of all, which are running, and what failed."""
        return self._progress

    def _set(self, job_id: str, state: str) -> None:
        self._state[job_id] = state
        total = len(self._jobs)
        done = sum(1 for s in self._state.values() if s in ("completed", "failed", "cancelled"))
        running = [self._jobs[j] for j, s in self._state.items() if s == "running"]
        parts = [f"{self._jobs[j]} {s}" for j, s in self._state.items()]
        self._progress = self._progress.advance(
            workflow.now(),
            stage=", ".join(running) if running else ("done" if done == total else "queued"),
            done=done,
            total=total,
            percent=100.0 * done / total if total else 100.0,
            message=" · ".join(parts),
        )

    @workflow.run
    async def run(self, request: VideoJobInput) -> VideoJobResult:
        """Render (if asked), then preview and caption in parallel, then every transcode variant."""
        if request.render_job_id:
            self._jobs[request.render_job_id] = "render"
        if request.caption_job_id:
            self._jobs[request.caption_job_id] = "caption"
        if request.preview_job_id:
            self._jobs[request.preview_job_id] = "preview"
        for variant in request.transcodes:
            self._jobs[variant.job_id] = "transcode"
        for job_id in self._jobs:
            self._set(job_id, "queued")
        try:
            await self._steps(request)
        except asyncio.CancelledError:
            await self._wind_down(request, "CANCELLED", "the video job was cancelled", "cancelled")
            raise
        if request.render_job_id and request.render_job_id in self._errors:
            raise ApplicationError(
                f"render failed: {self._errors[request.render_job_id]}", "RENDER_FAILED", non_retryable=True
            )
        status = "completed" if not self._errors else "completed_with_errors"
        return VideoJobResult(video_id=request.video_id, status=status, outcomes=self._outcomes, errors=self._errors)

    async def _steps(self, request: VideoJobInput) -> None:
        subtitles_key: str | None = None
        if request.caption_first and request.caption_job_id:
            captions = await self._caption(request, timeline=request.timeline)
            if captions is None:
                await self._skip_after_render_failure(request, "captions for the render failed")
                return
            subtitles_key = str(captions.outputs["srt"])
        if request.render_job_id and request.timeline is not None:
            run = RenderRun(
                job_id=request.render_job_id,
                video_id=request.video_id,
                timeline=request.timeline,
                subtitles_key=subtitles_key,
            )
            if await self._step("render", request.render_job_id, VideoActivities.render, run) is None:
                await self._skip_after_render_failure(request, "the render failed")
                return
        parallel = []
        if request.preview_job_id:
            preview = PreviewRun(job_id=request.preview_job_id, video_id=request.video_id, params=request.preview)
            parallel.append(self._step("preview", request.preview_job_id, VideoActivities.preview, preview))
        if request.caption_job_id and not request.caption_first:
            parallel.append(self._caption(request, timeline=None))
        await asyncio.gather(*parallel)
        await asyncio.gather(
            *(
                self._step(
                    "transcode",
                    v.job_id,
                    VideoActivities.transcode,
                    TranscodeRun(job_id=v.job_id, video_id=request.video_id, spec=v.spec),
                )
                for v in request.transcodes
            )
        )

    async def _caption(self, request: VideoJobInput, *, timeline: dict[str, Any] | None) -> StepOutcome | None:
        job_id = request.caption_job_id or ""
        run = CaptionRun(job_id=job_id, video_id=request.video_id, params=request.caption, timeline=timeline)
        return await self._step("caption", job_id, VideoActivities.caption, run)

    async def _step(self, kind: str, job_id: str, method: Any, arg: Any) -> StepOutcome | None:
        """Run one step on its queue; a failure is recorded on the job and returned as None."""
        self._set(job_id, "running")
        try:
            outcome: StepOutcome = await workflow.execute_activity_method(
                method,
                arg,
                task_queue=kind,
                start_to_close_timeout=TIME_LIMITS[kind],
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=STEP_RETRY,
                priority=PRIORITIES[kind],
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            info = failure_info(err)
            self._errors[job_id] = f"{info.code}: {info.message}"
            self._set(job_id, "failed")
            await self._local(
                VideoActivities.finish_job,
                JobEnd(job_id=job_id, status="failed", error_code=info.code, error_message=info.message),
            )
            if kind == "render" or (kind == "caption" and arg.timeline is not None):
                await self._local(
                    VideoActivities.finish_video,
                    VideoEnd(video_id=arg.video_id, status="failed", error_code=info.code, error_message=info.message),
                )
            return None
        self._outcomes[job_id] = outcome
        self._set(job_id, "completed")
        return outcome

    async def _skip_after_render_failure(self, request: VideoJobInput, reason: str) -> None:
        """Jobs that need the rendered file fail with the reason; the render job too if it never ran."""
        for job_id, kind in self._jobs.items():
            if self._state.get(job_id) == "queued":
                self._errors.setdefault(job_id, f"SKIPPED: {reason}")
                self._set(job_id, "failed")
                await self._local(
                    VideoActivities.finish_job,
                    JobEnd(job_id=job_id, status="failed", error_code="SKIPPED", error_message=f"{kind}: {reason}"),
                )
        if request.render_job_id and request.render_job_id not in self._errors:
            self._errors[request.render_job_id] = reason

    async def _wind_down(self, request: VideoJobInput, code: str, message: str, status: str) -> None:
        """Mark every unfinished job (and a render that never finished) so nothing stays ``running``."""
        for job_id in self._jobs:
            if self._state.get(job_id) in ("queued", "running"):
                self._set(job_id, status)
                await self._local(
                    VideoActivities.finish_job,
                    JobEnd(job_id=job_id, status=status, error_code=code, error_message=message),
                )
        if request.render_job_id and request.render_job_id not in self._outcomes:
            await self._local(
                VideoActivities.finish_video,
                VideoEnd(video_id=request.video_id, status=status, error_code=code, error_message=message),
            )

    async def _local(self, method: Any, arg: Any) -> None:
        await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
        )
