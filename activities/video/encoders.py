"""Encoder choice: NVENC when a working NVIDIA GPU is there (probed once per worker), software otherwise."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass

from activities.video.ffmpeg import ffmpeg_path
from conveyor.errors import BadInput

#: Software encoder per codec, and the NVENC one where FFmpeg has it.
SOFTWARE = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
NVENC = {"h264": "h264_nvenc", "h265": "hevc_nvenc"}
PROBE_TIMEOUT_S = 30


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder a job uses, and why (recorded on the job)."""

    codec: str
    encoder: str
    gpu: bool
    reason: str


@functools.cache
def nvenc_works(encoder: str = "h264_nvenc") -> tuple[bool, str]:
    """Whether ``encoder`` can really encode here: a few frames are encoded to nowhere (once per process)."""
    command = [
        ffmpeg_path(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=256x144:rate=25:duration=0.4",
        "-c:v",
        encoder,
        "-f",
        "null",
        "-",
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{encoder} probe failed: {err}"
    if proc.returncode == 0:
        return True, f"{encoder} encoded a test clip"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return False, f"{encoder} unavailable: {lines[-1][:200] if lines else 'exit ' + str(proc.returncode)}"


def choose_encoder(codec: str, *, allow_gpu: bool = True) -> EncoderChoice:
    """The encoder for ``codec``: NVENC when allowed and working, else the software encoder."""
    if codec not in SOFTWARE:
        raise BadInput(f"unknown codec {codec!r}; known: {', '.join(SOFTWARE)}", code="UNKNOWN_CODEC")
    if allow_gpu and codec in NVENC:
        ok, reason = nvenc_works(NVENC[codec])
        if ok:
            return EncoderChoice(codec, NVENC[codec], True, reason)
        return EncoderChoice(codec, SOFTWARE[codec], False, reason)
    return EncoderChoice(
        codec, SOFTWARE[codec], False, "software encoder requested" if codec in NVENC else "no GPU encoder"
    )
