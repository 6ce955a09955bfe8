"""What the video workflows and activities pass each other (pydantic, through the Temporal data converter)."""

from __future__ import annotations

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


class JobEnd(BaseModel):
    """How a job ended when its activity could not record it itself (failure or cancellation)."""

    job_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


class VideoEnd(BaseModel):
    """A rendered video's end when the render did not finish (failed or cancelled)."""

    video_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None


class VideoJobResult(BaseModel):
    """Every step's outcome and every failure, by job id."""

    video_id: str
    status: str
    outcomes: dict[str, StepOutcome] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
