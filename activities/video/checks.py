"""The video pipeline's light checks, run by the API before anything is queued (and again by the workers).

Every reference of a timeline must be a file of the user's; a step's parameters must validate. Nothing here
runs FFmpeg: the facts about each file come from the probe made when it was stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.video.ffmpeg import MediaInfo, StreamInfo
from activities.video.models import JobKind, Video
from activities.video.schemas import CaptionParams, PreviewParams
from activities.video.timeline import Timeline
from activities.video.transcode import TranscodeSpec, check_spec
from conveyor.errors import BadInput

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class TimelineSources:
    """Blob keys a timeline uses, resolved: one per clip, and the logo, music and subtitle files if any."""

    clips: list[str]
    logo: str | None
    music: str | None
    subtitles: str | None
    media: dict[str, MediaInfo]
    """What was probed when each file was stored, by blob key (saves probing it again)."""


def stored_media(video: Video) -> MediaInfo | None:
    """The probe facts saved on a video's row (an upload or a finished render), or None when it has none."""
    if not video.duration_s or (video.video_codec is None and video.audio_codec is None):
        return None
    streams = tuple(
        StreamInfo(kind, codec, video.width or 0, video.height or 0)
        for kind, codec in (("video", video.video_codec), ("audio", video.audio_codec))
        if codec is not None
    )
    return MediaInfo(duration_s=video.duration_s, format_name="", streams=streams)


async def resolve_timeline(session: AsyncSession, user_id: int, timeline: Timeline) -> TimelineSources:
    """Map every reference of a timeline to a blob key of one of the user's videos or uploads.

    BadInput ``CLIP_NOT_FOUND`` names the first reference that is not a file of this user's.
    """

    media: dict[str, MediaInfo] = {}

    async def key_of(what: str, key: str | None, video_id: str | None) -> str:
        if video_id is not None:
            row = await session.get(Video, video_id)
            if row is None or row.user_id != user_id or not row.blob_key:
                raise BadInput(f"{what}: video {video_id} does not exist or has no file yet", code="CLIP_NOT_FOUND")
        else:
            row = await session.scalar(select(Video).where(Video.blob_key == key, Video.user_id == user_id).limit(1))
            if row is None or not row.blob_key:
                raise BadInput(f"{what}: blob key {key!r} does not exist (upload it first)", code="CLIP_NOT_FOUND")
        info = stored_media(row)
        if info is not None:
            media[row.blob_key] = info
        return row.blob_key

    clips = [await key_of(f"clip {i}", c.key, c.video_id) for i, c in enumerate(timeline.clips, start=1)]
    logo = await key_of("logo", timeline.logo.key, None) if timeline.logo else None
    music = await key_of("background audio", timeline.audio.key, None) if timeline.audio else None
    subtitles = None
    if timeline.subtitles is not None and timeline.subtitles.key:
        subtitles = await key_of("subtitles", timeline.subtitles.key, None)
    return TimelineSources(clips, logo, music, subtitles, media)


def check_step(kind: JobKind, params: dict[str, Any]) -> PreviewParams | CaptionParams | TranscodeSpec:
    """The parameters of a preview, caption or transcode, or BadInput naming what is wrong."""
    if kind == JobKind.PREVIEW:
        return checked(PreviewParams, params, "BAD_PREVIEW")
    if kind == JobKind.CAPTION:
        return checked(CaptionParams, params, "BAD_CAPTION")
    if kind == JobKind.TRANSCODE:
        return check_spec(params)
    raise BadInput(f"{kind.value} is not a step of an existing video", code="BAD_STEP")


def checked(model: type[P], params: dict[str, Any], code: str) -> P:
    """``params`` as ``model``, or BadInput naming the first wrong field (the CLI passes raw values)."""
    try:
        return model.model_validate(params)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise BadInput(f"{where}: {first['msg']}", code=code, details={"field": where}) from err
