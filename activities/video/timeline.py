"""The render timeline: clips with trims, transitions, text, a logo, subtitles and music, checked before FFmpeg runs.

:func:`check_timeline` turns a request body into a :class:`Timeline` or a :class:`BadInput` naming the first
problem; :func:`layout` places each clip on the output timeline once the sources' lengths are known, and refuses
trims, transitions and overlays that do not fit them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from activities.video.transcode import check_format
from conveyor.errors import BadInput

#: Where a text overlay or the logo can sit.
POSITIONS = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")
#: Transition names FFmpeg 5.1's ``xfade`` filter knows.
TRANSITIONS = frozenset(
    {
        "fade", "wipeleft", "wiperight", "wipeup", "wipedown", "slideleft", "slideright", "slideup", "slidedown",
        "circlecrop", "rectcrop", "distance", "fadeblack", "fadewhite", "radial", "smoothleft", "smoothright",
        "smoothup", "smoothdown", "circleopen", "circleclose", "vertopen", "vertclose", "horzopen", "horzclose",
        "dissolve", "pixelize", "diagtl", "diagtr", "diagbl", "diagbr", "hlslice", "hrslice", "vuslice", "vdslice",
        "hblur", "fadegrays", "wipetl", "wipetr", "wipebl", "wipebr", "squeezeh", "squeezev",
    }
)  # fmt: skip
#: Whisper models captions can be made with.
CAPTION_MODELS = ("auto", "tiny.en", "base")
#: How far a trim may reach past the source's probed length (container durations are rounded).
TRIM_SLACK_S = 0.05
#: FFmpeg colour syntax: a name or hex value, optionally ``@alpha``.
_COLOR = re.compile(r"^(#|0x)?[A-Za-z0-9]{1,32}(@[0-9.]{1,5})?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_position(value: str) -> str:
    if value not in POSITIONS:
        raise ValueError(f"must be one of {', '.join(POSITIONS)} (got {value!r})")
    return value


class ClipRef(_Model):
    """One clip of the timeline: a stored media file or video, optionally trimmed."""

    key: str | None = Field(None, min_length=1, description="blob-store key of a media file")
    video_id: str | None = Field(None, min_length=1, description="or the id of an uploaded or rendered video")
    trim_start: float = Field(0.0, ge=0, description="seconds into the source")
    trim_end: float | None = Field(None, gt=0, description="seconds into the source; None = to its end")

    @field_validator("trim_end")
    @classmethod
    def _after_start(cls, value: float | None, info: ValidationInfo) -> float | None:
        start = info.data.get("trim_start")
        if value is not None and isinstance(start, int | float) and value <= start:
            raise ValueError(f"must be after trim_start ({start:g} s), got {value:g} s")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ClipRef:
        if (self.key is None) == (self.video_id is None):
            raise ValueError("give exactly one of key or video_id")
        return self


class Transition(_Model):
    """An ``xfade`` transition between two clips."""

    kind: str = "fade"
    duration: float = Field(0.5, gt=0, le=5)

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TRANSITIONS:
            raise ValueError(f"unknown transition {value!r}; use one of FFmpeg's xfade names such as fade or wipeleft")
        return value


class TextOverlay(_Model):
    """Text drawn over the video between two times."""

    text: str = Field(min_length=1, max_length=500)
    start: float = Field(0.0, ge=0)
    end: float | None = Field(None, description="None = to the end of the video")
    position: str = "bottom"
    font_size: int = Field(36, ge=8, le=200)
    color: str = "white"
    box: bool = Field(True, description="a dark box behind the text")

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: float | None, info: ValidationInfo) -> float | None:
        start = info.data.get("start")
        if value is not None and isinstance(start, int | float) and value <= start:
            raise ValueError(f"must be after start ({start:g} s), got {value:g} s")
        return value

    @field_validator("position")
    @classmethod
    def _position(cls, value: str) -> str:
        return _check_position(value)

    @field_validator("color")
    @classmethod
    def _color(cls, value: str) -> str:
        if not _COLOR.match(value):
            raise ValueError(f"must be a colour name or hex value such as white or #ffcc00 (got {value!r})")
        return value


class ImageOverlay(_Model):
    """A logo (PNG or JPEG) over the whole video."""

    key: str = Field(min_length=1, description="blob key of a PNG or JPEG")
    position: str = "top-right"
    opacity: float = Field(1.0, ge=0, le=1)
    width: int | None = Field(None, ge=8, le=4096, description="scale the logo to this width")
    margin: int = Field(16, ge=0, le=500)

    @field_validator("position")
    @classmethod
    def _position(cls, value: str) -> str:
        return _check_position(value)


class Subtitles(_Model):
    """Subtitles burned into the video: SRT text, a stored .srt, or captions made from the timeline's speech."""

    srt: str | None = Field(None, min_length=1, max_length=500_000)
    key: str | None = Field(None, min_length=1)
    from_caption: bool = False
    model_size: str = Field("auto", description="Whisper model for from_caption: auto, tiny.en or base")
    font_size: int = Field(24, ge=8, le=120)

    @field_validator("model_size")
    @classmethod
    def _model(cls, value: str) -> str:
        if value not in CAPTION_MODELS:
            raise ValueError(f"must be one of {', '.join(CAPTION_MODELS)} (got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Subtitles:
        if sum((self.srt is not None, self.key is not None, self.from_caption)) != 1:
            raise ValueError("give exactly one of srt, key or from_caption")
        return self


class BackgroundAudio(_Model):
    """Music under the video, looped to its length and ducked under speech."""

    key: str = Field(min_length=1)
    volume: float = Field(0.3, ge=0, le=2)
    duck: bool = Field(True, description="lower the music under the clips' speech")
    loop: bool = Field(True, description="loop the music to the video's length")


class OutputSpec(_Model):
    """Size, frame rate and encoding of the rendered video."""

    width: int = Field(1280, ge=16, le=7680)
    height: int = Field(720, ge=16, le=4320)
    fps: float = Field(30, gt=0, le=120)
    codec: str = Field("h264", description="h264, h265, vp9 or av1")
    container: str = Field("mp4", description="mp4, webm or mkv")
    crf: int | None = Field(None, ge=0, le=63)
    bitrate_kbps: int | None = Field(None, ge=50, le=200_000)
    allow_gpu: bool = True

    @model_validator(mode="after")
    def _valid(self) -> OutputSpec:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"width and height must be even (got {self.width}x{self.height})")
        check_format(self.codec, self.container, crf=self.crf, bitrate_kbps=self.bitrate_kbps)
        return self


class Timeline(_Model):
    """What to render: clips in order, the transitions between them, overlays, subtitles, music and output."""

    clips: list[ClipRef] = Field(min_length=1, max_length=50)
    transitions: list[Transition | None] = Field(
        default_factory=list, description="between clip i and i+1; empty = hard cuts; None = a cut"
    )
    text: list[TextOverlay] = Field(default_factory=list, max_length=50)
    logo: ImageOverlay | None = None
    subtitles: Subtitles | None = None
    audio: BackgroundAudio | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("transitions")
    @classmethod
    def _one_per_join(cls, value: list[Transition | None], info: ValidationInfo) -> list[Transition | None]:
        clips = info.data.get("clips")
        if value and isinstance(clips, list) and len(value) != len(clips) - 1:
            raise ValueError(
                f"must be empty (hard cuts) or have one entry per join: "
                f"{len(clips) - 1} for {len(clips)} clips, got {len(value)}"
            )
        return value


_LABELS = {"clips": "clip", "transitions": "transition", "text": "text overlay"}


def _label(loc: tuple[int | str, ...]) -> str:
    """A reader's name for an error location: ("clips", 1, "trim_end") -> "clip 2 trim_end"."""
    words: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and isinstance(loc[i - 1], str) and str(loc[i - 1]) in _LABELS:
            words[-1] = f"{_LABELS[str(loc[i - 1])]} {part + 1}"
        else:
            words.append(str(part))
    return " ".join(words)


def check_timeline(raw: dict[str, object]) -> Timeline:
    """A validated timeline, or BadInput (code BAD_TIMELINE) naming its first problem before anything is fetched."""
    try:
        return Timeline.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        where = _label(tuple(first["loc"]))
        raise BadInput(
            f"{where}: {message}" if where else message,
            code="BAD_TIMELINE",
            details={"field": ".".join(map(str, first["loc"]))},
        ) from err


def blob_keys(timeline: Timeline) -> list[str]:
    """Every blob key the timeline uses (clips, logo, subtitles, music), in order, each once."""
    keys = [clip.key for clip in timeline.clips if clip.key is not None]
    if timeline.logo is not None:
        keys.append(timeline.logo.key)
    if timeline.subtitles is not None and timeline.subtitles.key is not None:
        keys.append(timeline.subtitles.key)
    if timeline.audio is not None:
        keys.append(timeline.audio.key)
    return list(dict.fromkeys(keys))


def video_ids(timeline: Timeline) -> list[str]:
    """The ids of the stored videos the timeline's clips use, in order, each once."""
    return list(dict.fromkeys(clip.video_id for clip in timeline.clips if clip.video_id is not None))


@dataclass(frozen=True)
class ClipSpan:
    """Where one clip comes from in its source and where it begins in the output."""

    index: int
    source_start: float
    duration: float
    starts_at: float


def layout(timeline: Timeline, durations: list[float]) -> tuple[list[ClipSpan], float]:
    """Each clip's span in the output and the output's length, given each source's length (in clip order)."""
    if len(durations) != len(timeline.clips):
        raise ValueError(f"{len(durations)} source durations for {len(timeline.clips)} clips")
    lengths = [
        _clip_length(i, clip, source) for i, (clip, source) in enumerate(zip(timeline.clips, durations, strict=True))
    ]
    joins = _joins(timeline)
    for i, overlap in enumerate(joins):
        shorter = min(lengths[i], lengths[i + 1])
        if overlap > shorter + 1e-9:
            raise BadInput(
                f"transition {i + 1} lasts {overlap:g} s but clip {i + 1 + (lengths[i + 1] < lengths[i])} "
                f"is only {shorter:.2f} s long",
                code="TRANSITION_TOO_LONG",
                details={"field": f"transitions.{i}.duration"},
            )
    for i in range(1, len(lengths) - 1):
        if joins[i - 1] + joins[i] > lengths[i] + 1e-9:
            raise BadInput(
                f"transitions {i} and {i + 1} together last {joins[i - 1] + joins[i]:g} s "
                f"but clip {i + 1} between them is only {lengths[i]:.2f} s long",
                code="TRANSITION_TOO_LONG",
                details={"field": f"transitions.{i}.duration"},
            )
    spans: list[ClipSpan] = []
    starts_at = 0.0
    for i, (clip, length) in enumerate(zip(timeline.clips, lengths, strict=True)):
        spans.append(ClipSpan(i, clip.trim_start, round(length, 6), round(starts_at, 6)))
        starts_at += length - (joins[i] if i < len(joins) else 0.0)
    total = round(spans[-1].starts_at + spans[-1].duration, 6)
    _check_overlays(timeline, total)
    return spans, total


def _clip_length(index: int, clip: ClipRef, source: float) -> float:
    """The seconds of the source the clip uses; BadInput when the trim reaches past the source's end."""
    if clip.trim_start >= source:
        raise BadInput(
            f"clip {index + 1} starts at {clip.trim_start:g} s but its source is only {source:.2f} s long",
            code="TRIM_PAST_END",
            details={"field": f"clips.{index}.trim_start"},
        )
    if clip.trim_end is not None and clip.trim_end > source + TRIM_SLACK_S:
        raise BadInput(
            f"clip {index + 1} ends at {clip.trim_end:g} s but its source is only {source:.2f} s long",
            code="TRIM_PAST_END",
            details={"field": f"clips.{index}.trim_end"},
        )
    end = source if clip.trim_end is None else min(clip.trim_end, source)
    return end - clip.trim_start


def _joins(timeline: Timeline) -> list[float]:
    """Seconds each join overlaps its two clips (0 for a cut)."""
    if not timeline.transitions:
        return [0.0] * (len(timeline.clips) - 1)
    return [t.duration if t is not None else 0.0 for t in timeline.transitions]


def _check_overlays(timeline: Timeline, total: float) -> None:
    for i, overlay in enumerate(timeline.text):
        if overlay.start >= total:
            raise BadInput(
                f"text overlay {i + 1} starts at {overlay.start:.1f} s but the video is {total:.1f} s long",
                code="OVERLAY_PAST_END",
                details={"field": f"text.{i}.start"},
            )
        if overlay.end is not None and overlay.end > total + TRIM_SLACK_S:
            raise BadInput(
                f"text overlay {i + 1} ends at {overlay.end:.1f} s but the video is {total:.1f} s long",
                code="OVERLAY_PAST_END",
                details={"field": f"text.{i}.end"},
            )
