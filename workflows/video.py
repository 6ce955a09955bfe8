"""VideoJobWorkflow: the seed 004 video tasks composed — render → preview and caption in parallel → transcodes.

One workflow per request: ``video-<video id>`` renders a timeline and then runs the follow-up steps; a preview,
caption or transcode asked for an existing video is its own ``video-<kind>-<job id>`` run of the same workflow
without the render. Each step is an activity on its seed queue with the seed's time limit (render 1 h, preview
5 min, transcode 30 min, caption 15 min) and priority (render first), heartbeating every second; a lost worker
is noticed within the heartbeat timeout and the step runs again from the start. With subtitles ``from_caption``
the caption step transcribes the timeline's speech track before the render, which burns those captions in.
A failed render fails the workflow with the render's error kind and code (the video is ``failed``); a failed
follow-up step is recorded on its job and the others still run. Cancelling stops FFmpeg (no partial files
remain) and marks unfinished jobs cancelled. ``VideoProbeWorkflow`` checks an upload on a worker.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.video import contract
    from activities.video.schemas import (
        CaptionRun,
        MonitorRequest,
        PreviewRun,
        ProbeRequest,
        ProbeResult,
        RenderRun,
        ResourceReport,
        StepOutcome,
        TranscodeRun,
        VideoCleanupRequest,
        VideoCleanupResult,
        VideoJobInput,
        VideoJobResult,
    )
    from conveyor import runs
    from conveyor.errors import failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress
    from conveyor.runs import RunError, RunStatus, RunUpdate
    from conveyor.steps import Step, retries

TASK_QUEUE = contract.RENDER_QUEUE
#: Steps heartbeat every second; a worker that stops answering is given up on after this.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
EXECUTION_TIMEOUT = contract.EXECUTION_TIMEOUT
STEP_RETRY = retries(3, first=timedelta(seconds=5), most=timedelta(minutes=1))


def _step(activity: str, queue: str, limit: timedelta, priority_key: int) -> Step:
    """A step on its seed queue with its seed time limit and priority, heartbeating; cancelling it waits until
    FFmpeg is stopped and its partial files are gone."""
    return Step(
        activity,
        limit,
        STEP_RETRY,
        heartbeat=HEARTBEAT_TIMEOUT,
        queue=queue,
        priority=Priority(priority_key=priority_key),
        cancellation=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


#: Seed 004 time limits (render 1 h, preview 5 min, transcode 30 min, caption 15 min) and queue priorities
#: (render 10 > transcode 7 > caption 6 > preview 5) as Temporal priority keys (1 first).
STEPS = {
    "render": _step(contract.RENDER, contract.RENDER_QUEUE, timedelta(hours=1), 1),
    "transcode": _step(contract.TRANSCODE, contract.TRANSCODE_QUEUE, timedelta(minutes=30), 2),
    "caption": _step(contract.CAPTION, contract.CAPTION_QUEUE, timedelta(minutes=15), 3),
    "preview": _step(contract.PREVIEW, contract.PREVIEW_QUEUE, timedelta(minutes=5), 4),
}
PROBE = Step(
    contract.PROBE_UPLOAD,
    contract.PROBE_TIMEOUT,
    STEP_RETRY,
    heartbeat=HEARTBEAT_TIMEOUT,
    queue=contract.PREVIEW_QUEUE,
    priority=STEPS["preview"].priority,
)


async def _record_job(job_id: str, status: RunStatus, error: RunError | None) -> None:
    """A job that ended without its activity recording it: failed, skipped or cancelled."""
    update = RunUpdate.of(contract.JOB_TABLE, job_id, status=status, error=error)
    await runs.record(update, legacy=contract.LEGACY_FINISH_JOB)


async def _record_video(video_id: str, status: RunStatus, error: RunError | None) -> None:
    """A rendered video that will not be ready: failed or cancelled."""
    update = RunUpdate.of(contract.VIDEO_TABLE, video_id, status=status, error=error)
    await runs.record(update, legacy=contract.LEGACY_FINISH_VIDEO)


render_workflow_id = contract.render_workflow_id
step_workflow_id = contract.step_workflow_id


@workflow.defn(name=contract.JOB_WORKFLOW)
class VideoJobWorkflow:
    """Runs a video's steps in the seed's order; answers ``progress`` with the steps done and running."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._state: dict[str, str] = {}
        self._outcomes: dict[str, StepOutcome] = {}
        self._errors: dict[str, str] = {}
        self._failures: dict[str, RunError] = {}
        self._cause: RunError | None = None
        """The first failure: skipped jobs and a render that never ran fail with its kind."""
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
            await self._wind_down(request)
            raise
        if request.render_job_id and request.render_job_id in self._errors:
            failure = self._failures.get(request.render_job_id) or self._cause
            kind, code = (failure.kind, failure.code) if failure else ("Internal", "RENDER_FAILED")
            message = f"render failed: {self._errors[request.render_job_id]}"
            raise ApplicationError(message, code, type=kind, non_retryable=True)
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
            if await self._step("render", request.render_job_id, run) is None:
                await self._skip_after_render_failure(request, "the render failed")
                return
        parallel = []
        if request.preview_job_id:
            preview = PreviewRun(job_id=request.preview_job_id, video_id=request.video_id, params=request.preview)
            parallel.append(self._step("preview", request.preview_job_id, preview))
        if request.caption_job_id and not request.caption_first:
            parallel.append(self._caption(request, timeline=None))
        await asyncio.gather(*parallel)
        await asyncio.gather(
            *(
                self._step("transcode", v.job_id, TranscodeRun(job_id=v.job_id, video_id=request.video_id, spec=v.spec))
                for v in request.transcodes
            )
        )

    async def _caption(self, request: VideoJobInput, *, timeline: dict[str, Any] | None) -> StepOutcome | None:
        job_id = request.caption_job_id or ""
        run = CaptionRun(job_id=job_id, video_id=request.video_id, params=request.caption, timeline=timeline)
        return await self._step("caption", job_id, run)

    async def _step(self, kind: str, job_id: str, arg: Any) -> StepOutcome | None:
        """Run one step on its queue; a failure is recorded on the job and returned as None."""
        self._set(job_id, "running")
        try:
            outcome = await STEPS[kind].run(arg, StepOutcome)
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            error = RunError.of(failure_info(err))
            self._errors[job_id] = f"{error.code}: {error.message}"
            self._failures[job_id] = error
            self._cause = self._cause or error
            self._set(job_id, "failed")
            await _record_job(job_id, RunStatus.FAILED, error)
            if kind == "render" or (kind == "caption" and arg.timeline is not None):
                await _record_video(arg.video_id, RunStatus.FAILED, error)
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
                cause = self._cause.kind if self._cause else "Internal"
                skipped = RunError(kind=cause, code="SKIPPED", message=f"{kind}: {reason}")
                await _record_job(job_id, RunStatus.FAILED, skipped)
        if request.render_job_id and request.render_job_id not in self._errors:
            self._errors[request.render_job_id] = reason

    async def _wind_down(self, request: VideoJobInput) -> None:
        """Cancel every unfinished job (and a render that never finished) so nothing stays ``running``."""
        for job_id in self._jobs:
            if self._state.get(job_id) in ("queued", "running"):
                self._set(job_id, "cancelled")
                await _record_job(job_id, RunStatus.CANCELLED, None)
        if request.render_job_id and request.render_job_id not in self._outcomes:
            await _record_video(request.video_id, RunStatus.CANCELLED, None)


@workflow.defn(name=contract.PROBE_WORKFLOW)
class VideoProbeWorkflow:
    """An upload's check on a worker (the API never runs FFmpeg): every packet read, the facts returned."""

    @workflow.run
    async def run(self, request: ProbeRequest) -> ProbeResult:
        """Probe the uploaded file and return what it holds."""
        return await PROBE.run(request, ProbeResult)


#: Seed 004 ``cleanup_task``: a pass over a large working folder may take a while; it heartbeats.
CLEANUP = Step(
    contract.CLEANUP_TEMP,
    timedelta(minutes=30),
    retries(3),
    heartbeat=timedelta(seconds=60),
)
#: Seed 004 ``monitor_resources_task`` runs every minute: a sample must finish well inside it.
MONITOR = Step(
    contract.MONITOR_RESOURCES,
    timedelta(seconds=50),
    retries(2),
)


@workflow.defn(name=contract.CLEANUP_WORKFLOW)
class VideoCleanupWorkflow:
    """Seed 004 ``cleanup_task``: old temporary files, the MAX_TEMP_SIZE_GB cap, and empty folders."""

    @workflow.run
    async def run(self, request: VideoCleanupRequest) -> VideoCleanupResult:
        """Clean the video working folder and report what was removed."""
        return await CLEANUP.run(request, VideoCleanupResult)


@workflow.defn(name=contract.MONITOR_WORKFLOW)
class MonitorResourcesWorkflow:
    """Seed 004 ``monitor_resources_task``: one CPU, memory, disk and GPU sample, stored, with warnings."""

    @workflow.run
    async def run(self, request: MonitorRequest) -> ResourceReport:
        """Take and store one sample."""
        return await MONITOR.run(request, ResourceReport)
