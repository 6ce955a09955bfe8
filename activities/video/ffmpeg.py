"""Run FFmpeg the way a heartbeating activity needs it: live progress, cancellation, no half-written output.

``run_ffmpeg`` starts FFmpeg with ``-progress pipe:1``, turns its ``key=value`` blocks into :class:`FfmpegProgress`
(percent of the output duration, fps, speed, ETA), writes to a ``.partial`` file that is renamed into place only
when FFmpeg succeeds, and on cancellation (a ``threading.Event``) terminates FFmpeg and removes the partial file.
``probe`` reads a file with ffprobe and refuses what is not a playable media file. Errors name the problem:
invalid input and impossible codec/container pairs are :class:`BadInput` (never retried), anything else is
retryable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.errors import BadInput, Cancelled, Retryable

#: Seconds FFmpeg gets to stop after SIGTERM before it is killed.
TERMINATE_GRACE_S = 3.0
#: What FFmpeg writes on stderr when the input is not media it can read, or the output cannot be made.
_BAD_INPUT_MARKERS = (
    "Invalid data found when processing input",
    "moov atom not found",
    "could not find codec parameters",
    "codec not currently supported in container",
    "Unknown encoder",
    "Could not write header",
    "does not contain any stream",
    "Invalid argument",
    "No such file or directory",
    "Error opening input",
)


@dataclass(frozen=True)
class FfmpegProgress:
    """Where an FFmpeg run is."""

    out_time_s: float
    percent: float
    fps: float = 0.0
    speed: float = 0.0
    frame: int = 0
    eta_s: float | None = None
    done: bool = False


@dataclass
class ProgressParser:
    """Turns ``-progress`` output (``key=value`` lines, a block ending in ``progress=…``) into updates."""

    duration_s: float
    _block: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> FfmpegProgress | None:
        """Take one line; returns an update when a block is complete."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key] = value.strip()
        if key != "progress":
            return None
        block, self._block = self._block, {}
        out_us = _number(block.get("out_time_us") or block.get("out_time_ms"))
        out_s = max(0.0, out_us / 1_000_000) if out_us is not None else 0.0
        speed = _number((block.get("speed") or "").rstrip("x")) or 0.0
        done = value.strip() == "end"
        percent = 100.0 if done else (min(99.9, 100.0 * out_s / self.duration_s) if self.duration_s > 0 else 0.0)
        remaining = max(0.0, self.duration_s - out_s)
        eta = remaining / speed if speed > 0 and self.duration_s > 0 else None
        return FfmpegProgress(
            out_time_s=out_s,
            percent=percent,
            fps=_number(block.get("fps")) or 0.0,
            speed=speed,
            frame=int(_number(block.get("frame")) or 0),
            eta_s=0.0 if done else eta,
            done=done,
        )


def _number(text: str | None) -> float | None:
    if text is None or text in ("", "N/A"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a media file."""

    kind: str
    codec: str
    width: int = 0
    height: int = 0
    fps: float = 0.0


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about a media file."""

    duration_s: float
    format_name: str
    streams: tuple[StreamInfo, ...]

    @property
    def video(self) -> StreamInfo | None:
        """The first video stream."""
        return next((s for s in self.streams if s.kind == "video"), None)

    @property
    def has_audio(self) -> bool:
        """Whether there is an audio stream."""
        return any(s.kind == "audio" for s in self.streams)


def ffmpeg_path() -> str:
    """The ffmpeg executable (Debian's), or a clear error when it is missing."""
    found = shutil.which("ffmpeg")
    if found is None:
        raise BadInput("ffmpeg is not installed (apt-get install ffmpeg)", code="FFMPEG_MISSING")
    return found


def probe(path: Path, *, name: str | None = None, verify: bool = False) -> MediaInfo:
    """ffprobe ``path``; BadInput naming the file when it is not media FFmpeg can read (truncated, not video).

    ``verify`` also reads every packet (no decoding), which catches a file cut short after a complete header.
    """
    label = name or path.name
    if not path.is_file():
        raise BadInput(f"{label}: file not found", code="MEDIA_NOT_FOUND")
    ffprobe = shutil.which("ffprobe") or "ffprobe"
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        reason = _last_line(proc.stderr) or "ffprobe could not read it"
        raise BadInput(f"{label} is not a readable media file: {reason}", code="INVALID_MEDIA")
    data = json.loads(proc.stdout or "{}")
    streams = tuple(_stream(s) for s in data.get("streams", []) if s.get("codec_type") in ("video", "audio"))
    if not streams:
        raise BadInput(f"{label} has no audio or video stream", code="INVALID_MEDIA")
    duration = _number(str(data.get("format", {}).get("duration", ""))) or 0.0
    info = MediaInfo(
        duration_s=duration, format_name=str(data.get("format", {}).get("format_name", "")), streams=streams
    )
    if verify:
        _verify_packets(ffprobe, path, label, info)
    return info


#: Share of a video's frames that must be readable for the file to count as whole.
MIN_READABLE = 0.9


def _verify_packets(ffprobe: str, path: Path, label: str, info: MediaInfo) -> None:
    """BadInput when the file ends before its header says it does (a cut-off upload)."""
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    if "partial file" in proc.stderr:
        raise BadInput(f"{label} is truncated: the file ends before its last frame", code="INVALID_MEDIA")
    video = info.video
    packets = _number(proc.stdout.strip().split(",")[0]) if proc.stdout.strip() else None
    if video is None or packets is None or video.fps <= 0 or info.duration_s < 1.0:
        return
    readable = packets / video.fps
    if readable < MIN_READABLE * info.duration_s:
        raise BadInput(
            f"{label} is truncated: {readable:.1f} s of its {info.duration_s:.1f} s can be read",
            code="INVALID_MEDIA",
        )


def _stream(raw: dict[str, object]) -> StreamInfo:
    fps = 0.0
    rate = str(raw.get("avg_frame_rate") or raw.get("r_frame_rate") or "0/1")
    num, _, den = rate.partition("/")
    if _number(num) and _number(den):
        fps = round(float(num) / float(den), 3)
    return StreamInfo(
        kind=str(raw.get("codec_type")),
        codec=str(raw.get("codec_name", "")),
        width=int(str(raw.get("width", 0) or 0)),
        height=int(str(raw.get("height", 0) or 0)),
        fps=fps,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def partial_path(output: Path) -> Path:
    """Where FFmpeg writes until it succeeds (same extension, so the muxer is chosen the same way)."""
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def run_ffmpeg(
    args: Sequence[str],
    *,
    output: Path,
    duration_s: float,
    on_progress: Callable[[FfmpegProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Run ``ffmpeg ARGS… PARTIAL`` and rename the result to ``output``; the last argument of ``args`` must be
    ``output`` (as ffmpeg-python's ``get_args()`` gives it). Cancelled or failed runs leave no file behind."""
    if not args or Path(args[-1]) != output:
        raise ValueError("the last ffmpeg argument must be the output path")
    partial = partial_path(output)
    command = [
        ffmpeg_path(),
        "-hide_banner",
        "-nostdin",
        "-y",
        "-progress",
        "pipe:1",
        "-nostats",
        *args[:-1],
        str(partial),
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    parser = ProgressParser(duration_s)
    stderr_tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout is not None and proc.stderr is not None
    drain = threading.Thread(target=stderr_tail.extend, args=(proc.stderr,), daemon=True)
    drain.start()
    finished = threading.Event()
    watcher = (
        threading.Thread(target=_stop_when_cancelled, args=(proc, cancel, finished), daemon=True) if cancel else None
    )
    if watcher is not None:
        watcher.start()
    try:
        for line in proc.stdout:
            update = parser.feed(line)
            if update is not None and on_progress is not None:
                on_progress(update)
        code = proc.wait()
        drain.join(timeout=5)
        if cancel is not None and cancel.is_set():
            raise Cancelled("FFmpeg stopped: the job was cancelled", code="CANCELLED")
        if code != 0:
            raise _failure(code, list(stderr_tail))
        os.replace(partial, output)
        return output
    except BaseException:
        if proc.poll() is None:
            _terminate(proc)
        partial.unlink(missing_ok=True)
        raise
    finally:
        finished.set()
        if watcher is not None:
            watcher.join(timeout=TERMINATE_GRACE_S + 2)


def _stop_when_cancelled(proc: subprocess.Popen[str], cancel: threading.Event, finished: threading.Event) -> None:
    """Kill FFmpeg as soon as ``cancel`` is set; return when the run is over either way.

    SIGKILL, not SIGTERM: on SIGTERM FFmpeg first flushes its encoder (seconds for x265/AV1 lookahead) into an
    output that a cancelled run deletes anyway.
    """
    while not finished.is_set():
        if cancel.wait(0.1):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            return


def _terminate(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _failure(code: int, stderr: list[str]) -> BadInput | Retryable:
    text = "\n".join(stderr)
    reason = next((line.strip() for line in reversed(stderr) if any(m in line for m in _BAD_INPUT_MARKERS)), "")
    if reason:
        return BadInput(f"FFmpeg refused the job: {reason[:300]}", code="FFMPEG_BAD_INPUT")
    return Retryable(f"FFmpeg exited with {code}: {_last_line(text) or 'no message'}", code="FFMPEG_FAILED")
