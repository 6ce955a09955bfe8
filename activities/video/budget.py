"""What a video job will cost, computed from its request before anything starts, and the limits it must fit.

A job's budget lists every file it will write (a render, each transcode, the captions' speech track, a preview)
with its length, frame size, frame rate and bitrate, and every input it will read with its probed length. The API
(and the CLI, through the same service) refuses a job over any limit with 400 ``BUDGET_EXCEEDED`` naming the limit
and the value, before a row is written or a workflow started. :attr:`JobBudget.output_seconds` is what pricing
charges per output second. Pure: no I/O, no FFmpeg; the facts come from the probe made when each file was stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activities.video.models import JobKind
from activities.video.timeline import Timeline, layout
from activities.video.transcode import TranscodeSpec
from conveyor.errors import BadInput
from conveyor.settings import Settings

CODE = "BUDGET_EXCEEDED"


@dataclass(frozen=True)
class VideoLimits:
    """The per-job video limits (the ``video_max_*`` settings)."""

    max_input_seconds: float
    max_output_seconds: float
    max_pixel_seconds: float
    max_clips: int
    max_frame_pixels: int
    max_fps: float
    max_bitrate_kbps: int

    @classmethod
    def of(cls, settings: Settings) -> VideoLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_input_seconds=settings.video_max_input_seconds,
            max_output_seconds=settings.video_max_output_seconds,
            max_pixel_seconds=settings.video_max_pixel_seconds,
            max_clips=settings.video_max_clips,
            max_frame_pixels=settings.video_max_frame_pixels,
            max_fps=settings.video_max_fps,
            max_bitrate_kbps=settings.video_max_bitrate_kbps,
        )


@dataclass(frozen=True)
class PlannedOutput:
    """One file a job will write: its step, length, frame size and rate (0 for sound only) and bitrate."""

    step: str
    seconds: float
    width: int = 0
    height: int = 0
    fps: float = 0.0
    bitrate_kbps: int | None = None

    @property
    def frame_pixels(self) -> int:
        """Pixels in one frame."""
        return self.width * self.height

    @property
    def pixel_seconds(self) -> float:
        """Seconds × width × height × fps: the encoding work this output asks for."""
        return self.seconds * self.frame_pixels * self.fps


@dataclass(frozen=True)
class JobBudget:
    """Every output a job will write and every input it will read (label, probed seconds)."""

    outputs: tuple[PlannedOutput, ...]
    inputs: tuple[tuple[str, float], ...] = ()
    clips: int = 0

    @property
    def output_seconds(self) -> float:
        """Seconds of media the job produces: render, transcodes and captions together (what pricing charges)."""
        return round(sum(o.seconds for o in self.outputs), 3)

    @property
    def pixel_seconds(self) -> float:
        """Output seconds × width × height × fps, summed over the job's outputs."""
        return sum(o.pixel_seconds for o in self.outputs)

    def check(self, limits: VideoLimits) -> None:
        """BadInput ``BUDGET_EXCEEDED`` naming the first limit the job is over, and by how much."""
        if self.clips > limits.max_clips:
            _over("video_max_clips", f"the timeline has {self.clips} clips", self.clips, limits.max_clips, "clips")
        for label, seconds in self.inputs:
            check_input_seconds(label, seconds, limits)
        for out in self.outputs:
            if out.frame_pixels > limits.max_frame_pixels:
                _over(
                    "video_max_frame_pixels",
                    f"{out.step} is {out.width}x{out.height} = {out.frame_pixels} pixels a frame",
                    out.frame_pixels,
                    limits.max_frame_pixels,
                )
            if out.fps > limits.max_fps:
                _over("video_max_fps", f"{out.step} runs at {out.fps:g} fps", out.fps, limits.max_fps)
            if out.bitrate_kbps is not None and out.bitrate_kbps > limits.max_bitrate_kbps:
                _over(
                    "video_max_bitrate_kbps",
                    f"{out.step} asks for {out.bitrate_kbps} kbps",
                    out.bitrate_kbps,
                    limits.max_bitrate_kbps,
                )
        if self.output_seconds > limits.max_output_seconds:
            _over(
                "video_max_output_seconds",
                f"the job would produce {self.output_seconds:g} s of media",
                self.output_seconds,
                limits.max_output_seconds,
            )
        if self.pixel_seconds > limits.max_pixel_seconds:
            _over(
                "video_max_pixel_seconds",
                f"the job would encode {self.pixel_seconds:.3g} pixel-seconds (seconds × width × height × fps)",
                self.pixel_seconds,
                limits.max_pixel_seconds,
            )


def _over(limit: str, what: str, value: float, most: float, field: str | None = None) -> None:
    details: dict[str, Any] = {"limit": limit, "value": value, "max": most}
    if field is not None:
        details["field"] = field
    raise BadInput(f"{what}; the limit is {most:g} (CONVEYOR_{limit.upper()})", code=CODE, details=details)


def check_input_seconds(label: str, seconds: float, limits: VideoLimits) -> None:
    """BUDGET_EXCEEDED when an input (a clip, music, an upload) is longer than a job may read."""
    if seconds > limits.max_input_seconds:
        _over("video_max_input_seconds", f"{label} is {seconds:g} s long", seconds, limits.max_input_seconds)


def check_upload(label: str, duration_s: float | None, fps: float | None, limits: VideoLimits) -> None:
    """BUDGET_EXCEEDED for an upload longer than a job may read, or faster than an output may run."""
    check_input_seconds(label, duration_s or 0.0, limits)
    if fps is not None and fps > limits.max_fps:
        _over("video_max_fps", f"{label} runs at {fps:g} fps", fps, limits.max_fps)


def _variant(step: str, spec: TranscodeSpec, seconds: float, width: int, height: int, fps: float) -> PlannedOutput:
    """A transcode of a ``width``×``height`` source: the asked size, the other side kept in proportion."""
    if spec.width and spec.height:
        size = (spec.width, spec.height)
    elif spec.width:
        size = (spec.width, _even(spec.width * height / width) if width else spec.width)
    elif spec.height:
        size = (_even(spec.height * width / height) if height else spec.height, spec.height)
    else:
        size = (width, height)
    return PlannedOutput(step, seconds, size[0], size[1], fps, spec.bitrate_kbps)


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def render_budget(
    timeline: Timeline,
    inputs: Sequence[tuple[str, float]],
    *,
    caption: bool,
    preview: bool,
    transcodes: Sequence[TranscodeSpec] = (),
) -> JobBudget:
    """The budget of a render request: the render, its captions, preview and transcodes of the result.

    ``inputs`` are (label, probed seconds), the clips first and in timeline order, then any other file read (music).
    """
    durations = [seconds for _, seconds in inputs[: len(timeline.clips)]]
    _, total = layout(timeline, durations)
    out = timeline.output
    outputs = [PlannedOutput("the render", total, out.width, out.height, out.fps, out.bitrate_kbps)]
    if caption:
        outputs.append(PlannedOutput("the captions", total))
    if preview:
        outputs.append(PlannedOutput("the preview", 0.0))
    outputs += [
        _variant(f"transcode {i}", spec, total, out.width, out.height, out.fps)
        for i, spec in enumerate(transcodes, start=1)
    ]
    return JobBudget(tuple(outputs), tuple(inputs), clips=len(timeline.clips))


def step_budget(
    kind: JobKind, params: Any, *, label: str, duration_s: float, width: int, height: int, fps: float
) -> JobBudget:
    """The budget of one preview, caption or transcode of a stored video (its probed length, size and rate)."""
    inputs = ((label, duration_s),)
    if kind == JobKind.TRANSCODE and isinstance(params, TranscodeSpec):
        return JobBudget((_variant("the transcode", params, duration_s, width, height, fps),), inputs)
    if kind == JobKind.CAPTION:
        return JobBudget((PlannedOutput("the captions", duration_s),), inputs)
    return JobBudget((PlannedOutput("the preview", 0.0),), inputs)
