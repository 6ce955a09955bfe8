"""Run FFmpeg the way a heartbeating activity needs it: live progress, cancellation, no half-written output.

``run_ffmpeg`` starts FFmpeg with ``-progress pipe:1``, turns its ``key=value`` blocks into :class:`FfmpegProgress`
(percent of the output duration, fps, speed, ETA), writes to a ``.partial`` file that is renamed into place only
when FFmpeg succeeds, and on cancellation (a ``threading.Event``) terminates FFmpeg and removes the partial file.
``probe`` reads a file with ffprobe and refuses what is not a playable media file. Every input is opened with
its whitelisted demuxer forced and the ``file`` protocol only (:mod:`activities.video.formats`), and every output
is capped with ``-fs``: an output that reaches the cap is :class:`TooLarge` (never retried). Errors name the
problem, never FFmpeg's stderr or a server path (those are logged): invalid input and impossible codec/container
pairs are :class:`BadInput` (never retried), anything else is retryable.
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

from activities.video.formats import PROTOCOLS, container_of
from conveyor.errors import BadInput, Cancelled, Retryable, TooLarge
from conveyor.logging import get_logger
from conveyor.settings import Settings

log = get_logger(__name__)

#: Seconds FFmpeg gets to stop after SIGTERM before it is killed.
TERMINATE_GRACE_S = 3.0
#: What FFmpeg writes on stderr when the input is not media it can read, or the output cannot be made, and the
#: problem each means (the stderr line itself names server paths: it is logged, never shown).
_BAD_INPUT_MARKERS: tuple[tuple[str, str], ...] = (
    ("not on whitelist", "an input refers to another file or a URL, which is not allowed"),
    ("Invalid data found when processing input", "an input is not a readable media file"),
    ("moov atom not found", "an input is not a readable media file"),
    ("could not find codec parameters", "an input is not a readable media file"),
    ("does not contain any stream", "an input has no audio or video stream"),
    ("Error opening input", "an input could not be opened"),
    ("codec not currently supported in container", "the codec cannot be stored in this container"),
    ("Could not write header", "the codec cannot be stored in this container"),
    ("Unknown encoder", "the encoder is not available on this worker"),
    ("No such file or directory", "an input file is missing"),
    ("Invalid argument", "FFmpeg refused an option of the job"),
)
#: The output size cap when the caller gives none: the ``video_max_output_bytes`` setting's default.
DEFAULT_MAX_OUTPUT_BYTES: int = Settings.model_fields["video_max_output_bytes"].default


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

    The container is told from the file's header against the whitelist and forced (``-f``), with the ``file``
    protocol only, so a disguised playlist is refused and never followed. ``verify`` also reads every packet (no
    decoding), which catches a file cut short after a complete header.
    """
    label = name or path.name
    if not path.is_file():
        raise BadInput(f"{label}: file not found", code="MEDIA_NOT_FOUND")
    container = container_of(path, label)
    ffprobe = shutil.which("ffprobe") or "ffprobe"
    proc = subprocess.run(
        [ffprobe, "-v", "error", *_input_flags(container.demuxer), "-print_format", "json", "-show_format",
         "-show_streams", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        log.warning("ffprobe refused a file", file=label, path=str(path), stderr=proc.stderr[-2000:])
        raise BadInput(f"{label} is not a readable {container.name} file", code="INVALID_MEDIA")
    data = json.loads(proc.stdout or "{}")
    streams = tuple(_stream(s) for s in data.get("streams", []) if s.get("codec_type") in ("video", "audio"))
    if not streams:
        raise BadInput(f"{label} has no audio or video stream", code="INVALID_MEDIA")
    duration = _number(str(data.get("format", {}).get("duration", ""))) or 0.0
    info = MediaInfo(
        duration_s=duration, format_name=str(data.get("format", {}).get("format_name", "")), streams=streams
    )
    if info.format_name != container.format_name:
        log.warning("ffprobe read another format than forced", file=label, format_name=info.format_name)
        raise BadInput(f"{label}: unsupported container {info.format_name or 'unknown'}", code="INVALID_MEDIA")
    if verify:
        _verify_packets(ffprobe, path, label, info, container.demuxer)
    return info


def _input_flags(demuxer: str) -> list[str]:
    """ffprobe/FFmpeg flags opening the next input with ``demuxer`` forced and local files only."""
    return ["-f", demuxer, "-protocol_whitelist", PROTOCOLS]


#: Share of a video's frames that must be readable for the file to count as whole.
MIN_READABLE = 0.9


def _verify_packets(ffprobe: str, path: Path, label: str, info: MediaInfo, demuxer: str) -> None:
    """BadInput when the file ends before its header says it does (a cut-off upload)."""
    proc = subprocess.run(
        [ffprobe, "-v", "error", *_input_flags(demuxer), "-count_packets", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", "-i", str(path)],
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


def partial_path(output: Path) -> Path:
    """Where FFmpeg writes until it succeeds (same extension, so the muxer is chosen the same way)."""
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def ffmpeg_command(args: Sequence[str], partial: Path, *, max_bytes: int) -> list[str]:
    """The whole FFmpeg command line writing ``args`` to ``partial``, capped at ``max_bytes`` (``-fs``).

    ValueError when an input of ``args`` is opened without a forced demuxer (``-f``) and ``-protocol_whitelist``:
    FFmpeg would sniff it and could follow what a disguised playlist names.
    """
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    _check_inputs(args[:-1])
    return [
        ffmpeg_path(),
        "-hide_banner",
        "-nostdin",
        "-y",
        "-progress",
        "pipe:1",
        "-nostats",
        *args[:-1],
        "-fs",
        str(max_bytes),
        str(partial),
    ]


def _check_inputs(args: Sequence[str]) -> None:
    """ValueError naming the first ``-i`` whose options do not force a demuxer and the protocol whitelist."""
    group_start = 0
    for at, arg in enumerate(args):
        if arg != "-i":
            continue
        options = args[group_start:at]
        for flag in ("-f", "-protocol_whitelist"):
            if flag not in options:
                raise ValueError(f"ffmpeg input {at // 2} is opened without {flag}")
        if options[options.index("-protocol_whitelist") + 1] != PROTOCOLS:
            raise ValueError(f"ffmpeg input {at // 2} may use protocols other than {PROTOCOLS}")
        group_start = at + 2


def run_ffmpeg(
    args: Sequence[str],
    *,
    output: Path,
    duration_s: float,
    max_bytes: int | None = None,
    on_progress: Callable[[FfmpegProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Run ``ffmpeg ARGS… -fs MAX_BYTES PARTIAL`` and rename the result to ``output``; the last argument of
    ``args`` must be ``output`` (as ffmpeg-python's ``get_args()`` gives it). Cancelled or failed runs leave no file
    behind; an output that reaches ``max_bytes`` (default: the setting's default) is :class:`TooLarge`."""
    if not args or Path(args[-1]) != output:
        raise ValueError("the last ffmpeg argument must be the output path")
    limit = DEFAULT_MAX_OUTPUT_BYTES if max_bytes is None else max_bytes
    partial = partial_path(output)
    command = ffmpeg_command(args, partial, max_bytes=limit)
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
        if partial.stat().st_size >= limit:
            # FFmpeg stops at -fs and exits 0 with a cut-off file: that output can never fit, so it is not retried
            raise TooLarge(
                f"the output {output.name} reached the {limit} byte limit on one output "
                "(CONVEYOR_VIDEO_MAX_OUTPUT_BYTES): ask for a lower bitrate, size or length",
                code="OUTPUT_TOO_LARGE",
                details={"limit": "video_max_output_bytes", "max": limit},
            )
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
    """The error of a failed run, naming the problem; FFmpeg's own words (with server paths) go to the log."""
    text = "\n".join(stderr)
    log.warning("ffmpeg failed", exit_code=code, stderr=text[-4000:])
    for line in reversed(stderr):
        problem = next((meaning for marker, meaning in _BAD_INPUT_MARKERS if marker in line), None)
        if problem is not None:
            return BadInput(f"FFmpeg refused the job: {problem}", code="FFMPEG_BAD_INPUT")
    return Retryable(f"FFmpeg exited with {code}", code="FFMPEG_FAILED")
