"""Preview frames and a contact sheet: N frames at even intervals, and one image that tiles them."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from activities.video.ffmpeg import FfmpegProgress, probe, run_ffmpeg
from activities.video.formats import IMAGE_SEQUENCE, input_options
from conveyor.errors import BadInput

MAX_FRAMES = 100


@dataclass(frozen=True)
class PreviewResult:
    """The frames (in time order), the contact sheet, and the times the frames were taken at."""

    frames: list[Path]
    sheet: Path
    times_s: list[float]
    columns: int
    rows: int


def frame_times(duration_s: float, count: int) -> list[float]:
    """``count`` times spread evenly through the video, each in the middle of its slice (never 0 or the end)."""
    if count < 1 or count > MAX_FRAMES:
        raise BadInput(f"frames must be between 1 and {MAX_FRAMES}, got {count}", code="BAD_FRAME_COUNT")
    if duration_s <= 0:
        raise BadInput("the video has no duration", code="INVALID_MEDIA")
    step = duration_s / count
    return [round(step * (i + 0.5), 3) for i in range(count)]


def preview_commands(
    source: Path, out_dir: Path, times: list[float], *, width: int, columns: int, rows: int
) -> list[list[str]]:
    """FFmpeg arguments (each ending in its output path): one JPEG frame per time, then the sheet tiling them."""
    opened = input_options(source)
    commands = []
    for i, at in enumerate(times, start=1):
        frame = out_dir / f"frame-{i:03d}.jpg"
        # -ss before -i seeks to the key frame before ``at`` and decodes forward: exact and fast
        args = (
            ffmpeg.input(str(source), **opened, ss=at)
            .video.filter("scale", width, -2)
            .output(str(frame), frames=1, **{"q:v": 3})
            .get_args()
        )
        commands.append([str(a) for a in args])
    sheet = (
        ffmpeg.input(str(out_dir / "frame-%03d.jpg"), **IMAGE_SEQUENCE, framerate=1)
        .filter("tile", f"{columns}x{rows}", padding=4, margin=4, color="black")
        .output(str(out_dir / "sheet.jpg"), frames=1, **{"q:v": 3})
        .get_args()
    )
    commands.append([str(a) for a in sheet])
    return commands


def make_preview(
    source: Path,
    out_dir: Path,
    *,
    count: int = 6,
    width: int = 320,
    columns: int | None = None,
    max_bytes: int | None = None,
    on_progress: Callable[[FfmpegProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> PreviewResult:
    """Extract ``count`` JPEG frames ``width`` px wide and tile them into ``sheet.jpg``, each file under
    ``max_bytes``."""
    info = probe(source)
    if info.video is None:
        raise BadInput(f"{source.name} has no video stream to preview", code="NO_VIDEO")
    times = frame_times(info.duration_s, count)
    cols = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    out_dir.mkdir(parents=True, exist_ok=True)
    *frame_commands, sheet_command = preview_commands(source, out_dir, times, width=width, columns=cols, rows=rows)
    frames: list[Path] = []
    for i, (at, args) in enumerate(zip(times, frame_commands, strict=True), start=1):
        frame = Path(args[-1])
        run_ffmpeg(args, output=frame, duration_s=0.0, max_bytes=max_bytes, cancel=cancel)
        frames.append(frame)
        if on_progress is not None:
            on_progress(FfmpegProgress(out_time_s=at, percent=90.0 * i / count))
    sheet = Path(sheet_command[-1])
    run_ffmpeg(sheet_command, output=sheet, duration_s=0.0, max_bytes=max_bytes, cancel=cancel)
    if on_progress is not None:
        on_progress(FfmpegProgress(out_time_s=info.duration_s, percent=100.0, done=True))
    return PreviewResult(frames, sheet, times, cols, rows)
