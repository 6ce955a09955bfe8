"""Videos: upload, render a timeline, preview/caption/transcode, read, cancel. Shared by the HTTP API and the CLI.

Requests are checked before anything is queued, so bad input is a 4xx naming the problem: a file FFmpeg cannot
read, a timeline that does not validate, a clip key that is not one of the user's files, an overlay past the
end of the video (from the clips' probed lengths), an impossible codec/container pair.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.video.activities import resolve_timeline
from activities.video.ffmpeg import probe
from activities.video.models import FINISHED, JobKind, JobStatus, Video, VideoJob, VideoStatus
from activities.video.schemas import CaptionParams, PreviewParams, TranscodeJob, VideoJobInput
from activities.video.timeline import check_timeline, layout
from activities.video.transcode import TranscodeSpec, check_spec
from api.services.analysis import copy_limited, safe_filename
from api.services.workflows import abnormal_end
from conveyor.errors import BadInput, Conflict, ExternalServiceError, NotFound
from conveyor.models import User
from conveyor.settings import Settings
from conveyor.storage import BlobStore
from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR
from workflows.video import EXECUTION_TIMEOUT, TASK_QUEUE, VideoJobWorkflow, render_workflow_id, step_workflow_id

P = TypeVar("P", bound=BaseModel)

#: Most transcode variants one render request may ask for.
MAX_VARIANTS = 6


@dataclass
class Started:
    """A queued video workflow: the video, its jobs by id (kind as value) and the workflow id."""

    video: Video
    jobs: dict[str, str]
    workflow_id: str


def video_prefix(video_id: str) -> str:
    """Where a video's files live in the blob store."""
    return f"videos/{video_id}"


async def upload(
    session: AsyncSession,
    blobs: BlobStore,
    settings: Settings,
    user: User,
    *,
    filename: str,
    stream: BinaryIO,
    title: str = "",
) -> Video:
    """Store an uploaded media file (or an .srt) as a ``ready`` video; BadInput when FFmpeg cannot read it."""
    name = safe_filename(filename)
    video_id = str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="conveyor-video-") as tmp:
        local = Path(tmp) / name
        size = await asyncio.to_thread(copy_limited, stream, local, settings.max_upload_bytes, name)
        if size == 0:
            raise BadInput(f"file {name!r} is empty", code="EMPTY_FILE", details={"file": name})
        facts: dict[str, Any] = {}
        if local.suffix.lower() == ".srt":
            _check_srt(local, name)
        else:
            info = await asyncio.to_thread(lambda: probe(local, name=name, verify=True))
            video = info.video
            audio = next((s for s in info.streams if s.kind == "audio"), None)
            facts = {
                "duration_s": round(info.duration_s, 3) if info.duration_s else None,
                "width": video.width if video else None,
                "height": video.height if video else None,
                "video_codec": video.codec if video else None,
                "audio_codec": audio.codec if audio else None,
            }
        key = f"{video_prefix(video_id)}/{name}"
        await asyncio.to_thread(blobs.move_file, key, local)
    row = Video(
        id=video_id,
        user_id=user.id,
        title=title or name,
        origin="upload",
        status=VideoStatus.READY.value,
        blob_key=key,
        filename=name,
        size_bytes=size,
        **facts,
    )
    session.add(row)
    await session.commit()
    return row


def _check_srt(path: Path, name: str) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadInput(f"{name} is not UTF-8 text", code="INVALID_SUBTITLES") from err
    if "-->" not in text:
        raise BadInput(f"{name} has no SRT cues (HH:MM:SS,mmm --> HH:MM:SS,mmm)", code="INVALID_SUBTITLES")


async def start_render(
    session: AsyncSession,
    client: Client,
    user: User,
    *,
    timeline_raw: dict[str, Any],
    title: str = "",
    preview: PreviewParams | None = None,
    caption: CaptionParams | None = None,
    transcodes: list[dict[str, Any]] | None = None,
) -> Started:
    """Check the timeline against the user's files, record the video and its jobs, and start the workflow."""
    timeline = check_timeline(timeline_raw)
    sources = await resolve_timeline(session, user.id, timeline)
    durations = []
    for i, key in enumerate(sources.clips, start=1):
        info = sources.media.get(key)
        if info is None or info.video is None:
            raise BadInput(f"clip {i}: {Path(key).name} has no video stream", code="NO_VIDEO")
        durations.append(info.duration_s)
    layout(timeline, durations)
    variants = transcodes or []
    if len(variants) > MAX_VARIANTS:
        raise BadInput(f"at most {MAX_VARIANTS} transcode variants, got {len(variants)}", code="TOO_MANY_VARIANTS")
    specs = [check_spec(v) for v in variants]
    from_caption = bool(timeline.subtitles and timeline.subtitles.from_caption)
    if from_caption and caption is None and timeline.subtitles is not None:
        caption = CaptionParams(model_size=timeline.subtitles.model_size)
    video = Video(
        id=str(uuid.uuid4()),
        user_id=user.id,
        title=title or "render",
        origin="render",
        status=VideoStatus.QUEUED.value,
        timeline=timeline.model_dump(mode="json"),
    )
    workflow_id = render_workflow_id(video.id)
    video.workflow_id = workflow_id
    session.add(video)
    jobs: dict[str, str] = {}

    def job(kind: JobKind, params: dict[str, Any]) -> str:
        row = VideoJob(
            id=str(uuid.uuid4()), video_id=video.id, kind=kind.value, params=params, workflow_id=workflow_id, outputs={}
        )
        session.add(row)
        jobs[row.id] = kind.value
        return row.id

    render_job = job(JobKind.RENDER, {"output": timeline.output.model_dump(mode="json")})
    caption_job = job(JobKind.CAPTION, caption.model_dump(mode="json")) if caption is not None else None
    preview_job = job(JobKind.PREVIEW, preview.model_dump(mode="json")) if preview is not None else None
    variant_jobs = [TranscodeJob(job_id=job(JobKind.TRANSCODE, s.model_dump(mode="json")), spec=s) for s in specs]
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
    await _start(session, client, user, video, workflow_id, request)
    return Started(video, jobs, workflow_id)


async def start_step(
    session: AsyncSession, client: Client, user: User, video_id: str, kind: JobKind, params: dict[str, Any]
) -> Started:
    """Queue one preview, caption or transcode of a video that has its file, as its own workflow."""
    video = await get_video(session, user, video_id)
    if video.status != VideoStatus.READY or not video.blob_key:
        raise Conflict(f"video {video_id} has no file yet (status {video.status})", code="VIDEO_NOT_READY")
    if kind != JobKind.CAPTION and video.video_codec is None:
        raise BadInput(f"{video.filename} has no video stream", code="NO_VIDEO")
    request = VideoJobInput(video_id=video.id)
    job_id = str(uuid.uuid4())
    checked = check_step(kind, params)
    if isinstance(checked, PreviewParams):
        request.preview_job_id, request.preview = job_id, checked
    elif isinstance(checked, CaptionParams):
        request.caption_job_id, request.caption = job_id, checked
    else:
        request.transcodes = [TranscodeJob(job_id=job_id, spec=checked)]
    stored = checked.model_dump(mode="json")
    workflow_id = step_workflow_id(kind.value, job_id)
    session.add(
        VideoJob(id=job_id, video_id=video.id, kind=kind.value, params=stored, workflow_id=workflow_id, outputs={})
    )
    await session.commit()
    await _start(session, client, user, video, workflow_id, request)
    return Started(video, {job_id: kind.value}, workflow_id)


def check_step(kind: JobKind, params: dict[str, Any]) -> PreviewParams | CaptionParams | TranscodeSpec:
    """The parameters of a preview, caption or transcode, or BadInput naming what is wrong."""
    if kind == JobKind.PREVIEW:
        return _checked(PreviewParams, params, "BAD_PREVIEW")
    if kind == JobKind.CAPTION:
        return _checked(CaptionParams, params, "BAD_CAPTION")
    if kind == JobKind.TRANSCODE:
        return check_spec(params)
    raise BadInput(f"{kind.value} is not a step of an existing video", code="BAD_STEP")


def _checked(model: type[P], params: dict[str, Any], code: str) -> P:
    """``params`` as ``model``, or BadInput naming the first wrong field (the CLI passes raw values)."""
    try:
        return model.model_validate(params)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise BadInput(f"{where}: {first['msg']}", code=code, details={"field": where}) from err


async def _start(
    session: AsyncSession, client: Client, user: User, video: Video, workflow_id: str, request: VideoJobInput
) -> None:
    try:
        await client.start_workflow(
            VideoJobWorkflow.run,
            request,
            id=workflow_id,
            task_queue=TASK_QUEUE,
            execution_timeout=EXECUTION_TIMEOUT,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PIPELINE_ATTR, "video"), SearchAttributePair(OWNER_ATTR, str(user.id))]
            ),
        )
    except RPCError as err:
        message = f"could not start the workflow: {err.message}"
        for job in await _jobs_of_workflow(session, workflow_id):
            job.status, job.error_code, job.error_message = JobStatus.FAILED.value, "TEMPORAL_UNAVAILABLE", message
        if request.render_job_id:
            video.status, video.error_code, video.error_message = (
                VideoStatus.FAILED.value,
                "TEMPORAL_UNAVAILABLE",
                message,
            )
        await session.commit()
        raise ExternalServiceError(message, code="TEMPORAL_UNAVAILABLE") from err


async def _jobs_of_workflow(session: AsyncSession, workflow_id: str) -> list[VideoJob]:
    return list(await session.scalars(select(VideoJob).where(VideoJob.workflow_id == workflow_id)))


async def get_video(session: AsyncSession, user: User, video_id: str) -> Video:
    """The user's video (another user's is reported as not found)."""
    video = await session.get(Video, video_id)
    if video is None or video.user_id != user.id:
        raise NotFound(f"video {video_id} not found", code="VIDEO_NOT_FOUND")
    return video


async def list_videos(session: AsyncSession, user: User, *, limit: int, offset: int) -> tuple[list[Video], int]:
    """The user's videos, newest first, and how many there are."""
    where = Video.user_id == user.id
    total = await session.scalar(select(func.count()).select_from(Video).where(where)) or 0
    rows = await session.scalars(
        select(Video).where(where).order_by(Video.created_at.desc(), Video.id).limit(limit).offset(offset)
    )
    return list(rows), total


async def jobs_of(session: AsyncSession, client: Client, video: Video) -> list[VideoJob]:
    """Every job of a video, oldest first; jobs whose workflow Temporal ended itself are marked failed."""
    jobs = list(
        await session.scalars(
            select(VideoJob).where(VideoJob.video_id == video.id).order_by(VideoJob.created_at, VideoJob.id)
        )
    )
    changed = False
    for workflow_id in {j.workflow_id for j in jobs if j.status not in FINISHED and j.workflow_id}:
        end = await abnormal_end(client, workflow_id)
        if end is None:
            continue
        for job in jobs:
            if job.workflow_id == workflow_id and job.status not in FINISHED:
                job.status, job.error_code, job.error_message = JobStatus.FAILED.value, end.code, end.message
                job.completed_at = end.closed_at
                changed = True
        if workflow_id == video.workflow_id and video.status in (VideoStatus.QUEUED, VideoStatus.RENDERING):
            video.status, video.error_code, video.error_message = VideoStatus.FAILED.value, end.code, end.message
            changed = True
    if changed:
        await session.commit()
    return jobs


async def cancel(session: AsyncSession, client: Client, user: User, video_id: str) -> Video:
    """Cancel every workflow of the video that still has unfinished jobs (FFmpeg stops, partial files go)."""
    video = await get_video(session, user, video_id)
    jobs = await jobs_of(session, client, video)
    for workflow_id in {j.workflow_id for j in jobs if j.status not in FINISHED and j.workflow_id}:
        try:
            await client.get_workflow_handle(workflow_id).cancel()
        except RPCError as err:
            raise ExternalServiceError(
                f"could not cancel {workflow_id}: {err.message}", code="TEMPORAL_UNAVAILABLE"
            ) from err
    return video


def file_key(video: Video, key: str) -> str:
    """A blob key the video may serve: its file or one of its outputs (NotFound otherwise)."""
    if key == video.blob_key or key.startswith(f"{video_prefix(video.id)}/"):
        return key
    raise NotFound(f"video {video.id} has no file {key!r}", code="FILE_NOT_FOUND")
