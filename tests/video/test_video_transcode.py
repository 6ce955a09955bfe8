"""Transcode variants with real FFmpeg, every codec in the containers it fits, checked with ffprobe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from activities.video.ffmpeg import probe, run_ffmpeg
from activities.video.transcode import check_spec, plan_transcode
from conveyor.errors import BadInput

EXPECTED_CODEC = {"h264": "h264", "h265": "hevc", "vp9": "vp9", "av1": "av1"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("transcode") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("codec", "container", "extra"),
    [
        ("h264", "mp4", {"crf": 28}),
        ("h265", "mkv", {"bitrate_kbps": 400}),
        ("vp9", "webm", {"width": 320}),
        ("av1", "mkv", {"height": 180}),
    ],
)
@pytest.mark.needs_ffmpeg
def test_each_codec_lands_in_its_container_with_the_asked_size(
    clip: Path, tmp_path: Path, codec: str, container: str, extra: dict[str, int]
) -> None:
    spec = check_spec({"codec": codec, "container": container, **extra})
    out = tmp_path / f"out.{container}"
    plan = plan_transcode(clip, out, spec, has_audio=True)
    run_ffmpeg(plan.args, output=out, duration_s=2.0)
    info = probe(out)
    assert info.video is not None and info.video.codec == EXPECTED_CODEC[codec]
    expected_size = {"width": (320, 180), "height": (320, 180)}.get(next(iter(extra)), (640, 360))
    assert (info.video.width, info.video.height) == expected_size
    assert info.has_audio and abs(info.duration_s - 2.0) < 0.3
    assert {"mp4": "mp4", "mkv": "matroska", "webm": "webm"}[container] in info.format_name
    assert not plan.encoder.gpu or plan.encoder.encoder.endswith("nvenc")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"codec": "h265", "container": "webm"}, "H265 cannot go in WEBM"),
        ({"codec": "h264", "container": "webm"}, "H264 cannot go in WEBM"),
        ({"codec": "mpeg2", "container": "mp4"}, "codec must be one of"),
        ({"codec": "vp9", "container": "avi"}, "container must be one of"),
        ({"codec": "h264", "container": "mp4", "crf": 20, "bitrate_kbps": 900}, "not both"),
    ],
)
def test_impossible_specs_are_refused_before_ffmpeg_runs(raw: dict[str, object], field: str) -> None:
    with pytest.raises(BadInput) as err:
        check_spec(raw)
    assert err.value.code == "BAD_TRANSCODE" and field in err.value.message
