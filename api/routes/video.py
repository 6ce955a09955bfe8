"""Videos over HTTP (seed 004): upload, render a timeline, preview, caption, transcode, watch, download, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from activities.video.models import JobKind, Video, VideoJob
from activities.video.schemas import CaptionParams, PreviewParams
from api.deps import BlobDep, CurrentUser, SessionDep, SettingsDep, TemporalDep
from api.services import video as service
from conveyor.errors import NotFound
from conveyor.settings import Settings
from conveyor.storage import guess_content_type

router = APIRouter(prefix="/api/videos", tags=["video"])


class RenderIn(BaseModel):
    """A timeline to render and the follow-up steps on the result."""

    timeline: dict[str, Any] = Field(description="clips, transitions, text, logo, subtitles, audio, output")
    title: str = ""
    preview: PreviewParams | None = Field(default_factory=PreviewParams, description="null: no preview")
    caption: CaptionParams | None = Field(default_factory=CaptionParams, description="null: no captions")
    transcodes: list[dict[str, Any]] = Field(default_factory=list, description="variants: codec, container, …")


class JobOut(BaseModel):
    """One step of a video with its live progress and results."""

    job_id: str
    kind: str
    status: str
    progress: float
    fps: float | None
    eta_s: float | None
    attempt: int
    encoder: str | None
    encoder_reason: str | None
    params: dict[str, Any]
    outputs: dict[str, Any]
    downloads: dict[str, str]
    error_code: str | None
    error_message: str | None
    workflow_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class VideoOut(BaseModel):
    """A video: its file, what is known about it, and every job run on it."""

    video_id: str
    title: str
    origin: str
    status: str
    filename: str
    key: str | None
    size_bytes: int
    duration_s: float | None
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    download_url: str | None
    error_code: str | None
    error_message: str | None
    workflow_id: str | None
    workflow_url: str | None
    jobs: list[JobOut]
    created_at: datetime
    updated_at: datetime


class StartedOut(BaseModel):
    """Work queued: the video, the jobs (id → kind) and the workflow running them."""

    video_id: str
    workflow_id: str
    workflow_url: str
    jobs: dict[str, str]


class VideoList(BaseModel):
    """A page of videos."""

    items: list[VideoOut]
    total: int


def _file_url(video_id: str, key: str) -> str:
    return f"/api/videos/{video_id}/files/{key}"


def _downloads(video_id: str, outputs: dict[str, Any]) -> dict[str, str]:
    """Download links of a job's files (``file``, ``sheet``, ``srt``, ``frames``)."""
    links: dict[str, str] = {}
    prefix = f"{service.video_prefix(video_id)}/"
    for name, value in outputs.items():
        values = value if isinstance(value, list) else [value]
        keys = [v for v in values if isinstance(v, str) and v.startswith(prefix)]
        for i, key in enumerate(keys, start=1):
            links[name if len(keys) == 1 and not isinstance(value, list) else f"{name}-{i}"] = _file_url(video_id, key)
    return links


def job_out(job: VideoJob) -> JobOut:
    """The public form of a job."""
    return JobOut(
        job_id=job.id,
        kind=job.kind,
        status=job.status,
        progress=round(job.progress, 1),
        fps=job.fps,
        eta_s=job.eta_s,
        attempt=job.attempt,
        encoder=job.encoder,
        encoder_reason=job.encoder_reason,
        params=job.params,
        outputs=job.outputs,
        downloads=_downloads(job.video_id, job.outputs),
        error_code=job.error_code,
        error_message=job.error_message,
        workflow_id=job.workflow_id,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
    )


def video_out(video: Video, jobs: list[VideoJob], settings: Settings) -> VideoOut:
    """The public form of a video."""
    return VideoOut(
        video_id=video.id,
        title=video.title,
        origin=video.origin,
        status=video.status,
        filename=video.filename,
        key=video.blob_key,
        size_bytes=video.size_bytes,
        duration_s=video.duration_s,
        width=video.width,
        height=video.height,
        video_codec=video.video_codec,
        audio_codec=video.audio_codec,
        download_url=f"/api/videos/{video.id}/download" if video.blob_key else None,
        error_code=video.error_code,
        error_message=video.error_message,
        workflow_id=video.workflow_id,
        workflow_url=settings.workflow_ui_url(video.workflow_id) if video.workflow_id else None,
        jobs=[job_out(j) for j in jobs],
        created_at=video.created_at,
        updated_at=video.updated_at,
    )


def _started(started: service.Started, settings: Settings) -> StartedOut:
    return StartedOut(
        video_id=started.video.id,
        workflow_id=started.workflow_id,
        workflow_url=settings.workflow_ui_url(started.workflow_id),
        jobs=started.jobs,
    )


@router.post("/upload", response_model=VideoOut, status_code=201)
async def upload_video(
    file: Annotated[UploadFile, File(description="a video, audio, image or .srt file")],
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobDep,
    settings: SettingsDep,
    title: Annotated[str, Form()] = "",
) -> VideoOut:
    """Store a file to render from or to process; its key can be used in timelines."""
    video = await service.upload(
        session, blobs, settings, user, filename=file.filename or "upload", stream=file.file, title=title
    )
    return video_out(video, [], settings)


@router.post("/render", response_model=StartedOut, status_code=202)
async def render(
    body: RenderIn, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> StartedOut:
    """Render a timeline, then preview, caption and transcode the result (one workflow)."""
    started = await service.start_render(
        session,
        client,
        user,
        timeline_raw=body.timeline,
        title=body.title,
        preview=body.preview,
        caption=body.caption,
        transcodes=body.transcodes,
    )
    return _started(started, settings)


async def _step(
    kind: JobKind,
    video_id: str,
    params: dict[str, Any],
    user: CurrentUser,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> StartedOut:
    return _started(await service.start_step(session, client, user, video_id, kind, params), settings)


@router.post("/{video_id}/preview", response_model=StartedOut, status_code=202)
async def preview(
    video_id: str,
    user: CurrentUser,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    body: Annotated[PreviewParams, Body()] = PreviewParams(),  # noqa: B008 - a default body, never mutated
) -> StartedOut:
    """N frames at even intervals and a contact sheet."""
    return await _step(JobKind.PREVIEW, video_id, body.model_dump(), user, session, client, settings)


@router.post("/{video_id}/caption", response_model=StartedOut, status_code=202)
async def caption(
    video_id: str,
    user: CurrentUser,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    body: Annotated[CaptionParams, Body()] = CaptionParams(),  # noqa: B008 - a default body, never mutated
) -> StartedOut:
    """SRT captions of the speech and the detected language."""
    return await _step(JobKind.CAPTION, video_id, body.model_dump(), user, session, client, settings)


@router.post("/{video_id}/transcode", response_model=StartedOut, status_code=202)
async def transcode(
    video_id: str,
    body: Annotated[dict[str, Any], Body(description="codec, container, crf or bitrate_kbps, width, height")],
    user: CurrentUser,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> StartedOut:
    """Another codec/container/size of the video (H.264, H.265, VP9, AV1 in MP4, WebM, MKV)."""
    return await _step(JobKind.TRANSCODE, video_id, body, user, session, client, settings)


@router.get("", response_model=VideoList)
async def list_videos(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> VideoList:
    """Your videos, newest first (jobs are listed on each video's own page)."""
    rows, total = await service.list_videos(session, user, limit=limit, offset=offset)
    return VideoList(items=[video_out(v, [], settings) for v in rows], total=total)


@router.get("/{video_id}", response_model=VideoOut)
async def get_video(
    video_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> VideoOut:
    """A video with every job: status, percent, fps, ETA, encoder, outputs and download links, errors."""
    video = await service.get_video(session, user, video_id)
    return video_out(video, await service.jobs_of(session, client, video), settings)


@router.post("/{video_id}/cancel", response_model=VideoOut, status_code=202)
async def cancel(
    video_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> VideoOut:
    """Cancel the video's unfinished jobs: FFmpeg is stopped and no partial file is kept."""
    video = await service.cancel(session, client, user, video_id)
    return video_out(video, await service.jobs_of(session, client, video), settings)


def _serve(blobs: BlobDep, key: str) -> Response:
    local = blobs.local_path(key)
    media_type = guess_content_type(key)
    if local is not None:
        return FileResponse(local, media_type=media_type, filename=key.rsplit("/", 1)[-1])
    return StreamingResponse(blobs.iter_chunks(key), media_type=media_type)


@router.get("/{video_id}/download", response_class=Response)
async def download(video_id: str, user: CurrentUser, session: SessionDep, blobs: BlobDep) -> Response:
    """The video's file (the upload, or the rendered result)."""
    video = await service.get_video(session, user, video_id)
    if not video.blob_key:
        raise NotFound(f"video {video_id} has no file yet (status {video.status})", code="FILE_NOT_FOUND")
    return _serve(blobs, video.blob_key)


@router.get("/{video_id}/files/{key:path}", response_class=Response)
async def file(video_id: str, key: str, user: CurrentUser, session: SessionDep, blobs: BlobDep) -> Response:
    """One of the video's outputs: a transcode, the contact sheet, a frame, the SRT."""
    video = await service.get_video(session, user, video_id)
    return _serve(blobs, service.file_key(video, key))
