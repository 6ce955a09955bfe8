"""Transcode settings: which codecs go in which containers, and the FFmpeg graph for one variant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ffmpeg
from pydantic import BaseModel, Field, model_validator

from activities.video.encoders import EncoderChoice, choose_encoder
from activities.video.formats import input_options
from conveyor.errors import BadInput

#: Containers each video codec can be stored in (FFmpeg 5.1's muxers).
CONTAINERS: dict[str, frozenset[str]] = {
    "h264": frozenset({"mp4", "mkv"}),
    "h265": frozenset({"mp4", "mkv"}),
    "vp9": frozenset({"webm", "mp4", "mkv"}),
    "av1": frozenset({"webm", "mp4", "mkv"}),
}
#: The audio codec that goes with a container.
AUDIO = {"mp4": "aac", "mkv": "aac", "webm": "libopus"}
#: Default quality per codec (CRF scales differ between encoders).
DEFAULT_CRF = {"h264": 23, "h265": 28, "vp9": 33, "av1": 35}


class TranscodeSpec(BaseModel):
    """One output variant: codec, container, CRF or bitrate, optional size."""

    codec: str = Field("h264", description="h264, h265, vp9 or av1")
    container: str = Field("mp4", description="mp4, webm or mkv")
    crf: int | None = Field(None, ge=0, le=63)
    bitrate_kbps: int | None = Field(None, ge=50, le=200_000)
    width: int | None = Field(None, ge=16, le=7680)
    height: int | None = Field(None, ge=16, le=4320)
    allow_gpu: bool = True

    @model_validator(mode="after")
    def _compatible(self) -> TranscodeSpec:
        check_format(self.codec, self.container, crf=self.crf, bitrate_kbps=self.bitrate_kbps)
        return self


def check_format(codec: str, container: str, *, crf: int | None, bitrate_kbps: int | None) -> None:
    """ValueError naming what is wrong with a codec, container and rate control combination (e.g. H.265 in WebM)."""
    if codec not in CONTAINERS:
        raise ValueError(f"codec must be one of {', '.join(CONTAINERS)}")
    if container not in AUDIO:
        raise ValueError(f"container must be one of {', '.join(AUDIO)}")
    if container not in CONTAINERS[codec]:
        raise ValueError(
            f"{codec.upper()} cannot go in {container.upper()}; use {' or '.join(sorted(CONTAINERS[codec]))}"
        )
    if crf is not None and bitrate_kbps is not None:
        raise ValueError("give crf or bitrate_kbps, not both")


def check_spec(raw: dict[str, object]) -> TranscodeSpec:
    """A validated spec, or BadInput naming what is wrong (e.g. H.265 in WebM) before FFmpeg is started."""
    from pydantic import ValidationError

    try:
        return TranscodeSpec.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise BadInput(message, code="BAD_TRANSCODE", details={"field": ".".join(map(str, first["loc"]))}) from err


@dataclass(frozen=True)
class TranscodePlan:
    """FFmpeg arguments for one variant and the encoder chosen for it."""

    args: list[str]
    output: Path
    encoder: EncoderChoice


def plan_transcode(source: Path, output: Path, spec: TranscodeSpec, *, has_audio: bool) -> TranscodePlan:
    """The FFmpeg graph: scale if asked (even sizes), the chosen encoder with CRF or bitrate, matching audio."""
    choice = choose_encoder(spec.codec, allow_gpu=spec.allow_gpu)
    stream = ffmpeg.input(str(source), **input_options(source))
    video = stream.video
    if spec.width or spec.height:
        video = video.filter("scale", spec.width or -2, spec.height or -2)
    options = encoder_options(choice, spec.container, crf=spec.crf, bitrate_kbps=spec.bitrate_kbps)
    streams = [video, stream.audio] if has_audio else [video]
    if has_audio:
        options["acodec"] = AUDIO[spec.container]
    args = ffmpeg.output(*streams, str(output), **options).get_args()
    return TranscodePlan(args, output, choice)


def encoder_options(
    choice: EncoderChoice, container: str, *, crf: int | None, bitrate_kbps: int | None
) -> dict[str, object]:
    """FFmpeg output options for the chosen video encoder: CRF (or NVENC CQ) or bitrate, yuv420p, container flags."""
    options: dict[str, object] = {"vcodec": choice.encoder, "pix_fmt": "yuv420p"}
    if bitrate_kbps is not None:
        options["b:v"] = f"{bitrate_kbps}k"
    else:
        quality = crf if crf is not None else DEFAULT_CRF[choice.codec]
        if choice.gpu:
            options.update({"rc": "vbr", "cq": quality, "b:v": 0})
        else:
            options["crf"] = quality
            if choice.codec == "vp9":
                options["b:v"] = 0  # constant quality for libvpx-vp9
    if choice.codec == "vp9":
        options.update({"deadline": "good", "cpu-used": 4, "row-mt": 1})
    if choice.codec == "av1":
        options["preset"] = 8
    if container == "mp4":
        options["movflags"] = "+faststart"
        if choice.codec == "h265":
            options["tag:v"] = "hvc1"  # plays in Apple players
    return options
