"""Videos: upload, render a timeline, preview/caption/transcode, read, cancel. Shared by the HTTP API and the CLI.

Requests are checked before anything is queued, so bad input is a 4xx naming the problem: a file FFmpeg cannot
read or in a container off the whitelist, a timeline that does not validate, a clip key that is not one of the
user's files, an overlay past the end of the video (from the clips' probed lengths), an impossible codec/container
pair, a job over its budget (:mod:`activities.video.budget`), a title longer than its column.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.video import contract
from activities.video.budget import JobBudget, VideoLimits, check_upload, render_budget, step_budget
from activities.video.checks import check_step, resolve_timeline
from activities.video.contract import video_prefix
from activities.video.formats import WHITELIST, read_header, sniff
from activities.video.models import JobKind, Video, VideoJob
from activities.video.schemas import (
    CaptionParams,
    PreviewParams,
    ProbeRequest,
    ProbeResult,
    TranscodeJob,
    VideoJobInput,
)
from activities.video.timeline import check_timeline, layout
from activities.video.transcode import check_spec
from api.caller import Caller
from api.runs import owned_run
from api.services.analysis import copy_limited, safe_filename
from conveyor.client import execute_workflow, start_workflow
from conveyor.errors import BadInput, Conflict, ConveyorError, NotFound
from conveyor.quotas import RunCharge, admit
from conveyor.reconcile import cancel_run, reconcile
from conveyor.runs import RunError, RunStatus
from conveyor.settings import Settings

#: Most transcode variants one render request may ask for.
MAX_VARIANTS = 6


def _column_length(column: Any) -> int:
    """The length of a ``String(n)`` column."""
    kind = column.type
    assert isinstance(kind, String) and kind.length is not None
    return int(kind.length)


#: The longest title a video row holds (longer ones are a 400 naming the field, never a database error).
TITLE_MAX = _column_length(Video.__table__.c.title)


@dataclass
class Started:
    """A queued video workflow: the video, its jobs by id (kind as value) and the workflow id."""

    video: Video
    jobs: dict[str, str]
    workflow_id: str


async def upload(caller: Caller, *, filename: str, stream: BinaryIO, title: str = "") -> Video:
    """Store an uploaded media file (or an .srt) as a completed video; BadInput when it is not one FFmpeg reads.

    The API checks the file's header; a worker reads every packet of it (``VideoProbeWorkflow``), so a truncated
    or disguised file is refused here and not at render time.
    """
    blobs, user = caller.blobs, caller.user
    name = safe_filename(filename)
    title = checked_title(title, default=name)
    video_id = str(uuid.uuid4())
    key = f"{video_prefix(video_id)}/{name}"
    with tempfile.TemporaryDirectory(prefix="conveyor-video-") as tmp:
        local = Path(tmp) / name
        size = await asyncio.to_thread(copy_limited, stream, local, caller.settings.max_upload_bytes, name)
        if size == 0:
            raise BadInput(f"file {name!r} is empty", code="EMPTY_FILE", details={"file": name})
        is_srt = local.suffix.lower() == ".srt"
        if is_srt:
            _check_srt(local, name)
        elif sniff(await asyncio.to_thread(read_header, local)) is None:
            supported = ", ".join(c.name for c in WHITELIST)
            raise BadInput(
                f"{name} is not a video, audio or image file Conveyor reads: unsupported container "
                f"(supported: {supported}, and .srt subtitles)",
                code="INVALID_MEDIA",
                details={"file": name},
            )
        await asyncio.to_thread(blobs.move_file, key, local)
    facts = ProbeResult()
    if not is_srt:
        try:
            probe = ProbeRequest(key=key, filename=name)
            probe_id = f"video-probe-{video_id}"
            facts = await execute_workflow(
                caller.client, contract.PROBE_START, probe, ProbeResult, id=probe_id, owner=user.id
            )
            check_upload(name, facts.duration_s, facts.fps, VideoLimits.of(caller.settings))
        except ConveyorError:
            await asyncio.to_thread(blobs.delete, key)
            raise
    row = Video(
        id=video_id,
        user_id=user.id,
        title=title,
        origin="upload",
        status=RunStatus.COMPLETED.value,
        stage="uploaded",
        progress=100.0,
        blob_key=key,
        filename=name,
        size_bytes=size,
        **facts.model_dump(exclude={"fps"}),
    )
    caller.session.add(row)
    await caller.session.commit()
    return row


def _check_srt(path: Path, name: str) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadInput(f"{name} is not UTF-8 text", code="INVALID_SUBTITLES") from err
    if "-->" not in text:
        raise BadInput(f"{name} has no SRT cues (HH:MM:SS,mmm --> HH:MM:SS,mmm)", code="INVALID_SUBTITLES")


async def start_render(
    caller: Caller,
    *,
    timeline_raw: dict[str, Any],
    title: str = "",
    preview: PreviewParams | None = None,
    caption: CaptionParams | None = None,
    transcodes: list[dict[str, Any]] | None = None,
) -> Started:
    """Check the timeline against the caller's files, record the video and its jobs, and start the workflow."""
    session, user = caller.session, caller.user
    title = checked_title(title, default="render")
    timeline = check_timeline(timeline_raw)
    sources = await resolve_timeline(session, user.id, timeline)
    inputs: list[tuple[str, float]] = []
    for i, key in enumerate(sources.clips, start=1):
        info = sources.media.get(key)
        if info is None or info.video is None:
            raise BadInput(f"clip {i}: {Path(key).name} has no video stream", code="NO_VIDEO")
        inputs.append((f"clip {i}", info.duration_s))
    music = sources.media.get(sources.music) if sources.music else None
    if music is not None:
        inputs.append(("the background audio", music.duration_s))
    layout(timeline, [seconds for _, seconds in inputs[: len(sources.clips)]])
    variants = transcodes or []
    if len(variants) > MAX_VARIANTS:
        raise BadInput(f"at most {MAX_VARIANTS} transcode variants, got {len(variants)}", code="TOO_MANY_VARIANTS")
    specs = [check_spec(v) for v in variants]
    from_caption = bool(timeline.subtitles and timeline.subtitles.from_caption)
    if from_caption and caption is None and timeline.subtitles is not None:
        caption = CaptionParams(model_size=timeline.subtitles.model_size)
    budget = render_budget(timeline, inputs, caption=caption is not None, preview=preview is not None, transcodes=specs)
    budget.check(VideoLimits.of(caller.settings))
    video = Video(
        id=str(uuid.uuid4()),
        user_id=user.id,
        title=title,
        origin="render",
        status=RunStatus.QUEUED.value,
        stage="queued",
        timeline=timeline.model_dump(mode="json"),
    )
    workflow_id = contract.render_workflow_id(video.id)
    video.workflow_id = workflow_id
    session.add(video)
    jobs: dict[str, str] = {}

    def job(kind: JobKind, params: dict[str, Any]) -> str:
        job_id = _queue_job(session, video, kind, params, workflow_id)
        jobs[job_id] = kind.value
        return job_id

    render_job = job(JobKind.RENDER, {"output": timeline.output.model_dump(mode="json")})
    caption_job = job(JobKind.CAPTION, caption.model_dump(mode="json")) if caption is not None else None
    preview_job = job(JobKind.PREVIEW, preview.model_dump(mode="json")) if preview is not None else None
    variant_jobs = [TranscodeJob(job_id=job(JobKind.TRANSCODE, s.model_dump(mode="json")), spec=s) for s in specs]
    # the budget lists outputs in the jobs' order: render, captions, preview, transcodes
    await _admit(caller, workflow_id, list(jobs), budget)
    await session.commit()
    request = VideoJobInput(
        video_id=video.id,
        render_job_id=render_job,
        timeline=timeline.model_dump(mode="json"),
        preview_job_id=preview_job,
        preview=preview or PreviewParams(),
        caption_job_id=caption_job,
        caption=caption or CaptionParams(),
        caption_first=from_caption,
        transcodes=variant_jobs,
    )
    await _start(caller, video, workflow_id, request)
    return Started(video, jobs, workflow_id)


async def start_step(caller: Caller, video_id: str, kind: JobKind, params: dict[str, Any]) -> Started:
    """Queue one preview, caption or transcode of a video that has its file, as its own workflow."""
    video = await get_video(caller, video_id)
    if video.status != RunStatus.COMPLETED or not video.blob_key:
        raise Conflict(f"video {video_id} has no file yet (status {video.status})", code="VIDEO_NOT_READY")
    if kind != JobKind.CAPTION and video.video_codec is None:
        raise BadInput(f"{video.filename} has no video stream", code="NO_VIDEO")
    request = VideoJobInput(video_id=video.id)
    job_id = str(uuid.uuid4())
    checked = check_step(kind, params)
    budget = stored_video_budget(video, kind, checked, caller.settings)
    budget.check(VideoLimits.of(caller.settings))
    if isinstance(checked, PreviewParams):
        request.preview_job_id, request.preview = job_id, checked
    elif isinstance(checked, CaptionParams):
        request.caption_job_id, request.caption = job_id, checked
    else:
        request.transcodes = [TranscodeJob(job_id=job_id, spec=checked)]
    workflow_id = contract.step_workflow_id(kind.value, job_id)
    _queue_job(caller.session, video, kind, checked.model_dump(mode="json"), workflow_id, job_id=job_id)
    await _admit(caller, workflow_id, [job_id], budget)
    await caller.session.commit()
    await _start(caller, video, workflow_id, request)
    return Started(video, {job_id: kind.value}, workflow_id)


async def _admit(caller: Caller, workflow_id: str, job_ids: list[str], budget: JobBudget) -> None:
    """The kernel's admission (429 past the cap, 402 without credits), rolled back with the rows if refused.

    Each job holds its output seconds (rounded up) and pays them when it completes; a failed or cancelled job
    delivered no file and pays nothing. ``job_ids`` are in the order of ``budget.outputs``.
    """
    seconds = [math.ceil(o.seconds) for o in budget.outputs]
    if len(job_ids) == 1:
        seconds = [math.ceil(budget.output_seconds)]
    charges = [
        RunCharge(contract.JOB_TABLE, job_id, contract.SECOND_PRICE.cost(s), {"output_seconds": s})
        for job_id, s in zip(job_ids, seconds, strict=True)
    ]
    user_id = caller.user.id
    await admit(
        caller.session,
        caller.settings,
        user_id,
        contract.PIPELINE,
        group=workflow_id,
        charges=charges,
        client=caller.client,
    )


def _queue_job(
    session: AsyncSession,
    video: Video,
    kind: JobKind,
    params: dict[str, Any],
    workflow_id: str,
    *,
    job_id: str | None = None,
) -> str:
    """Add a queued job of ``kind`` for ``video``, run by ``workflow_id``; its id."""
    row = VideoJob(
        id=job_id or str(uuid.uuid4()),
        video_id=video.id,
        kind=kind.value,
        params=params,
        workflow_id=workflow_id,
        outputs={},
        status=RunStatus.QUEUED.value,
    )
    session.add(row)
    return row.id


async def _start(caller: Caller, video: Video, workflow_id: str, request: VideoJobInput) -> None:
    session = caller.session
    try:
        await start_workflow(caller.client, contract.JOB_START, request, id=workflow_id, owner=caller.user.id)
    except ConveyorError as err:
        error = RunError(kind=err.kind.value, code=err.code, message=err.message)
        for job in await session.scalars(select(VideoJob).where(VideoJob.workflow_id == workflow_id)):
            job.set_status(RunStatus.FAILED, error=error)
        if request.render_job_id:
            video.set_status(RunStatus.FAILED, error=error)
        await session.commit()
        raise


async def get_video(caller: Caller, video_id: str) -> Video:
    """The caller's video, reconciled with Temporal (another user's is reported as not found)."""
    return await owned_run(caller, Video, video_id, what="video", code="VIDEO_NOT_FOUND")


async def jobs_of(caller: Caller, video: Video) -> list[VideoJob]:
    """Every job of a video, oldest first, reconciled with Temporal."""
    query = select(VideoJob).where(VideoJob.video_id == video.id).order_by(VideoJob.created_at, VideoJob.id)
    jobs = list(await caller.session.scalars(query))
    await reconcile(caller.session, caller.client, jobs)
    return jobs


async def cancel(caller: Caller, video_id: str) -> Video:
    """Cancel every workflow of the video that still has unfinished jobs (FFmpeg stops, partial files go)."""
    video = await get_video(caller, video_id)
    cancelled: set[str | None] = set()
    for job in await jobs_of(caller, video):
        if not job.finished and job.workflow_id not in cancelled:
            cancelled.add(job.workflow_id)
            await cancel_run(
                caller.session, caller.client, job, what=f"video job {job.id}", finished_code="JOB_FINISHED"
            )
    return video


def file_key(video: Video, key: str) -> str:
    """A blob key the video may serve: its file or one of its outputs (NotFound otherwise)."""
    if key == video.blob_key or key.startswith(f"{video_prefix(video.id)}/"):
        return key
    raise NotFound(f"video {video.id} has no file {key!r}", code="FILE_NOT_FOUND")


def checked_title(title: str, *, default: str) -> str:
    """The title to store: the one given (BadInput naming the field when it does not fit its column), or the
    default cut to fit."""
    if len(title) > TITLE_MAX:
        raise BadInput(
            f"title: at most {TITLE_MAX} characters, got {len(title)}",
            code="TITLE_TOO_LONG",
            details={"field": "title", "max_length": TITLE_MAX},
        )
    return title or default[:TITLE_MAX]


def stored_video_budget(video: Video, kind: JobKind, params: Any, settings: Settings) -> JobBudget:
    """The budget of a step on a stored video, from the facts probed when it was stored.

    An upload's frame rate is not stored: it is bounded by ``video_max_fps`` (faster uploads are refused).
    """
    output = (video.timeline or {}).get("output") or {}
    fps = float(output.get("fps") or settings.video_max_fps)
    return step_budget(
        kind,
        params,
        label=video.filename or "the video",
        duration_s=video.duration_s or 0.0,
        width=video.width or 0,
        height=video.height or 0,
        fps=fps,
    )
