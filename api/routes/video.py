"""Videos over HTTP (seed 004): upload, render a timeline, preview, caption, transcode, watch, download, cancel."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select

from activities.video.models import JobKind, ResourceSample, Video, VideoJob
from activities.video.schemas import CaptionParams, PreviewParams
from api.blobs import serve_blob
from api.caller import Caller
from api.deps import AdminUser, CallerDep, SessionDep, SettingsDep
from api.runs import RunOut, add_listing, public
from api.services import video as service
from conveyor.errors import NotFound
from conveyor.settings import Settings

videos = APIRouter(prefix="/api/videos", tags=["video"])
resources_router = APIRouter(prefix="/api/system", tags=["video"])


class RenderIn(BaseModel):
    """A timeline to render and the follow-up steps on the result."""

    timeline: dict[str, Any] = Field(description="clips, transitions, text, logo, subtitles, audio, output")
    title: str = ""
    preview: PreviewParams | None = Field(default_factory=PreviewParams, description="null: no preview")
    caption: CaptionParams | None = Field(default_factory=CaptionParams, description="null: no captions")
    transcodes: list[dict[str, Any]] = Field(default_factory=list, description="variants: codec, container, …")


class JobOut(RunOut):
    """One step of a video with its live progress and results."""

    job_id: str = Field(validation_alias="id")
    kind: str
    fps: float | None
    eta_s: float | None
    attempt: int
    encoder: str | None
    encoder_reason: str | None
    params: dict[str, Any]
    outputs: dict[str, Any]
    downloads: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _links(self) -> JobOut:
        self.progress = round(self.progress, 1)
        self.downloads = _downloads(self.outputs)
        return self


class VideoOut(RunOut):
    """A video: its file, what is known about it, and every job run on it."""

    video_id: str = Field(validation_alias="id")
    title: str
    origin: str
    filename: str
    key: str | None = Field(validation_alias="blob_key")
    size_bytes: int
    duration_s: float | None
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    download_url: str | None = None
    jobs: list[JobOut] = Field(default_factory=list)

    @model_validator(mode="after")
    def _download(self) -> VideoOut:
        if self.key:
            self.download_url = f"/api/videos/{self.video_id}/download"
        return self


class StartedOut(BaseModel):
    """Work queued: the video, the jobs (id → kind) and the workflow running them."""

    video_id: str
    workflow_id: str
    workflow_url: str
    jobs: dict[str, str]


def _downloads(outputs: dict[str, Any]) -> dict[str, str]:
    """Download links of a job's files (``file``, ``sheet``, ``srt``, ``frames``)."""
    links: dict[str, str] = {}
    for name, value in outputs.items():
        values = value if isinstance(value, list) else [value]
        keys = [v for v in values if isinstance(v, str) and v.startswith("videos/")]
        for i, key in enumerate(keys, start=1):
            video_id = key.split("/", 2)[1]
            label = name if len(keys) == 1 and not isinstance(value, list) else f"{name}-{i}"
            links[label] = f"/api/videos/{video_id}/files/{key}"
    return links


def video_out(video: Video, settings: Settings, jobs: Sequence[VideoJob] = ()) -> VideoOut:
    """The public form of a video."""
    return public(VideoOut, video, settings, jobs=[public(JobOut, j, settings) for j in jobs])


add_listing(videos, "", Video, VideoOut, video_out, name="list_videos", description="Your videos, newest first.")


def _started(started: service.Started, settings: Settings) -> StartedOut:
    return StartedOut(
        video_id=started.video.id,
        workflow_id=started.workflow_id,
        workflow_url=settings.workflow_ui_url(started.workflow_id),
        jobs=started.jobs,
    )


@videos.post("/upload", response_model=VideoOut, status_code=201)
async def upload_video(
    file: Annotated[UploadFile, File(description="a video, audio, image or .srt file")],
    caller: CallerDep,
    title: Annotated[str, Form()] = "",
) -> VideoOut:
    """Store a file to render from or to process; its key can be used in timelines."""
    video = await service.upload(caller, filename=file.filename or "upload", stream=file.file, title=title)
    return video_out(video, caller.settings)


@videos.post("/render", response_model=StartedOut, status_code=202)
async def render(body: RenderIn, caller: CallerDep) -> StartedOut:
    """Render a timeline, then preview, caption and transcode the result (one workflow)."""
    started = await service.start_render(
        caller,
        timeline_raw=body.timeline,
        title=body.title,
        preview=body.preview,
        caption=body.caption,
        transcodes=body.transcodes,
    )
    return _started(started, caller.settings)


async def _step(caller: Caller, kind: JobKind, video_id: str, params: dict[str, Any]) -> StartedOut:
    return _started(await service.start_step(caller, video_id, kind, params), caller.settings)


#: The optional bodies of the preview and caption steps (their defaults are never mutated).
PreviewBody = Annotated[PreviewParams, Body()]
CaptionBody = Annotated[CaptionParams, Body()]


@videos.post("/{video_id}/preview", response_model=StartedOut, status_code=202)
async def preview(video_id: str, caller: CallerDep, body: PreviewBody = PreviewParams()) -> StartedOut:  # noqa: B008
    """N frames at even intervals and a contact sheet."""
    return await _step(caller, JobKind.PREVIEW, video_id, body.model_dump())


@videos.post("/{video_id}/caption", response_model=StartedOut, status_code=202)
async def caption(video_id: str, caller: CallerDep, body: CaptionBody = CaptionParams()) -> StartedOut:  # noqa: B008
    """SRT captions of the speech and the detected language."""
    return await _step(caller, JobKind.CAPTION, video_id, body.model_dump())


@videos.post("/{video_id}/transcode", response_model=StartedOut, status_code=202)
async def transcode(
    video_id: str,
    body: Annotated[dict[str, Any], Body(description="codec, container, crf or bitrate_kbps, width, height")],
    caller: CallerDep,
) -> StartedOut:
    """Another codec/container/size of the video (H.264, H.265, VP9, AV1 in MP4, WebM, MKV)."""
    return await _step(caller, JobKind.TRANSCODE, video_id, body)


async def _with_jobs(caller: Caller, video: Video) -> VideoOut:
    return video_out(video, caller.settings, await service.jobs_of(caller, video))


@videos.get("/{video_id}", response_model=VideoOut)
async def get_video(video_id: str, caller: CallerDep) -> VideoOut:
    """A video with every job: status, percent, fps, ETA, encoder, outputs and download links, errors."""
    return await _with_jobs(caller, await service.get_video(caller, video_id))


@videos.post("/{video_id}/cancel", response_model=VideoOut, status_code=202)
async def cancel(video_id: str, caller: CallerDep) -> VideoOut:
    """Cancel the video's unfinished jobs: FFmpeg is stopped and no partial file is kept."""
    return await _with_jobs(caller, await service.cancel(caller, video_id))


@videos.get("/{video_id}/download", response_class=Response)
async def download(video_id: str, caller: CallerDep) -> Response:
    """The video's file (the upload, or the rendered result)."""
    video = await service.get_video(caller, video_id)
    if not video.blob_key:
        raise NotFound(f"video {video_id} has no file yet (status {video.status})", code="FILE_NOT_FOUND")
    return serve_blob(caller.blobs, video.blob_key, filename=video.blob_key.rsplit("/", 1)[-1])


@videos.get("/{video_id}/files/{key:path}", response_class=Response)
async def file(video_id: str, key: str, caller: CallerDep) -> Response:
    """One of the video's outputs: a transcode, the contact sheet, a frame, the SRT."""
    video = await service.get_video(caller, video_id)
    key = service.file_key(video, key)
    return serve_blob(caller.blobs, key, filename=key.rsplit("/", 1)[-1])


#: The longest history one request returns (the samples are kept ``resource_retention_hours``).
MAX_HISTORY_MINUTES = 1440


class GpuOut(BaseModel):
    """One GPU in a sample."""

    index: int
    name: str
    utilization_percent: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    temperature_c: float | None


class SampleOut(BaseModel):
    """One stored look at a worker machine (read from its row)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    host: str
    sampled_at: datetime
    cpu_percent: float
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_path: str
    disk_percent: float
    disk_free_bytes: int
    load_1m: float | None
    gpus: list[GpuOut]
    warnings: list[str]


class Thresholds(BaseModel):
    """Use above ``warn_percent`` is logged as a warning and listed in the sample."""

    warn_percent: float


class ResourcesOut(BaseModel):
    """The newest sample of each host and every sample of the last ``minutes``, oldest first."""

    latest: list[SampleOut]
    history: list[SampleOut]
    thresholds: Thresholds


def sample_out(row: ResourceSample) -> SampleOut:
    """The public form of a stored sample (SQLite returns naive datetimes; they are UTC)."""
    sample = SampleOut.model_validate(row)
    if sample.sampled_at.tzinfo is None:
        sample.sampled_at = sample.sampled_at.replace(tzinfo=UTC)
    return sample


@resources_router.get("/resources", response_model=ResourcesOut)
async def resources(
    _admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    minutes: Annotated[int, Query(ge=1, le=MAX_HISTORY_MINUTES, description="How much history to return.")] = 60,
) -> ResourcesOut:
    """Operators only (admin role): the latest sample per host and the last ``minutes`` of samples."""
    newest = (
        select(ResourceSample.host, func.max(ResourceSample.sampled_at).label("at"))
        .group_by(ResourceSample.host)
        .subquery()
    )
    latest_rows = await session.scalars(
        select(ResourceSample)
        .join(newest, (ResourceSample.host == newest.c.host) & (ResourceSample.sampled_at == newest.c.at))
        .order_by(ResourceSample.host)
    )
    latest = list({row.host: sample_out(row) for row in latest_rows}.values())
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    history_rows = await session.scalars(
        select(ResourceSample)
        .where(ResourceSample.sampled_at >= since)
        .order_by(ResourceSample.sampled_at, ResourceSample.id)
    )
    history = [sample_out(row) for row in history_rows]
    return ResourcesOut(
        latest=latest, history=history, thresholds=Thresholds(warn_percent=settings.resource_warn_percent)
    )


#: The pipeline's routes: videos and the workers' resource samples.
router = APIRouter()
router.include_router(videos)
router.include_router(resources_router)
