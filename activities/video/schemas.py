"""What the video workflows and activities pass each other (pydantic, through the Temporal data converter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from activities.video.transcode import TranscodeSpec


class PreviewParams(BaseModel):
    """How many preview frames, how wide, and the contact sheet's columns."""

    frames: int = Field(6, ge=1, le=100)
    width: int = Field(320, ge=32, le=1920)
    columns: int | None = Field(None, ge=1, le=20)


class CaptionParams(BaseModel):
    """Whisper model (``auto`` = detect the language with base, English with tiny.en) and an optional language."""

    model_size: Literal["auto", "tiny.en", "base"] = Field("auto", description="auto, tiny.en or base")
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$", description="ISO 639 code; skips detection")


class TranscodeJob(BaseModel):
    """A transcode variant and the job that records it."""

    job_id: str
    spec: TranscodeSpec


class VideoJobInput(BaseModel):
    """What ``VideoJobWorkflow`` does for one video: an optional render, then preview, caption, transcodes.

    ``caption_first``: the caption job transcribes the timeline's speech before the render, and the render
    burns those captions in (timeline subtitles ``from_caption``).
    """

    video_id: str
    render_job_id: str | None = None
    timeline: dict[str, Any] | None = None
    preview_job_id: str | None = None
    preview: PreviewParams = PreviewParams()
    caption_job_id: str | None = None
    caption: CaptionParams = CaptionParams()
    caption_first: bool = False
    transcodes: list[TranscodeJob] = Field(default_factory=list)


class RenderRun(BaseModel):
    """One render: the timeline and, when captions are burned in from the caption step, the SRT's blob key."""

    job_id: str
    video_id: str
    timeline: dict[str, Any]
    subtitles_key: str | None = None


class PreviewRun(BaseModel):
    """One preview of a video."""

    job_id: str
    video_id: str
    params: PreviewParams


class CaptionRun(BaseModel):
    """One caption job: of the video's file, or (``timeline`` given) of a timeline's speech before it is rendered."""

    job_id: str
    video_id: str
    params: CaptionParams
    timeline: dict[str, Any] | None = None


class TranscodeRun(BaseModel):
    """One transcode variant of a video."""

    job_id: str
    video_id: str
    spec: TranscodeSpec


class StepOutcome(BaseModel):
    """What a finished step produced: blob keys and facts (shown on the job and in the workflow result)."""

    job_id: str
    kind: str
    outputs: dict[str, Any] = Field(default_factory=dict)
    encoder: str | None = None
    seconds: float = 0.0


class ProbeRequest(BaseModel):
    """Check an uploaded file on a worker: FFmpeg reads every packet of it."""

    key: str
    filename: str


class ProbeResult(BaseModel):
    """What FFmpeg found in an upload (None: the file has no such stream)."""

    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    fps: float | None = None
    """Frames per second of the video stream (checked against the budget; not stored on the video)."""


class VideoJobResult(BaseModel):
    """Every step's outcome and every failure, by job id."""

    video_id: str
    status: str
    outcomes: dict[str, StepOutcome] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)


class VideoCleanupRequest(BaseModel):
    """One pass over the video working folder; unset fields take the configured defaults."""

    max_age_days: float | None = Field(None, gt=0)
    """None: ``video_cleanup_age_days`` (seed CLEANUP_AGE_DAYS)."""
    max_gb: float | None = Field(None, ge=0)
    """None: ``video_max_temp_gb`` (seed MAX_TEMP_SIZE_GB)."""


class MonitorRequest(BaseModel):
    """One resource sample; unset fields take the configured defaults."""

    warn_percent: float | None = Field(None, gt=0, le=100)
    """None: ``resource_warn_percent``."""
    retention_hours: float | None = Field(None, gt=0)
    """None: ``resource_retention_hours``."""


@dataclass(frozen=True)
class GpuStat:
    """One GPU as ``nvidia-smi`` reports it; a value the card does not report is None."""

    index: int
    name: str
    utilization_percent: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    temperature_c: float | None

    @property
    def memory_percent(self) -> float | None:
        """Share of the card's memory in use."""
        if self.memory_used_mb is None or not self.memory_total_mb:
            return None
        return 100.0 * self.memory_used_mb / self.memory_total_mb


@dataclass(frozen=True)
class ResourceSnapshot:
    """One look at the machine: CPU, memory, the disk holding the working folder, GPUs, and warnings."""

    host: str
    cpu_percent: float
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_path: str
    disk_percent: float
    disk_free_bytes: int
    load_1m: float | None = None
    gpus: list[GpuStat] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class VideoCleanupResult(BaseModel):
    """What the cleanup removed from the working folder and what it left there."""

    root: str
    max_age_days: float
    max_gb: float
    files_removed: int = 0
    bytes_freed: int = 0
    dirs_removed: int = 0
    bytes_remaining: int = 0
    files_remaining: int = 0
    error_count: int = 0
    errors: list[str] = Field(default_factory=list)
    """The first :data:`MAX_REPORTED_ERRORS` failures."""


class ResourceReport(BaseModel):
    """The stored sample (with its warnings) and how many expired samples were deleted."""

    sample_id: int
    sampled_at: datetime
    snapshot: ResourceSnapshot
    warn_percent: float
    samples_pruned: int = 0

    @property
    def warnings(self) -> list[str]:
        """Measures above the threshold."""
        return self.snapshot.warnings
