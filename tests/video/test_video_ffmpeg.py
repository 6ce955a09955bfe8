"""The FFmpeg runner with real FFmpeg: progress, cancellation within seconds, clear errors, no partial files."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import ffmpeg
import pytest

from activities.video.encoders import choose_encoder, nvenc_works
from activities.video.ffmpeg import FfmpegProgress, ProgressParser, partial_path, probe, run_ffmpeg
from activities.video.formats import input_options
from conveyor.errors import BadInput, Cancelled


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s 640x360 test video with a sine tone (H.264 + AAC in MP4)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=6",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=6",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.mark.needs_ffmpeg
def test_probe_reads_duration_size_codecs(clip: Path) -> None:
    info = probe(clip)
    assert abs(info.duration_s - 6.0) < 0.2
    assert info.video is not None and (info.video.width, info.video.height, info.video.codec) == (640, 360, "h264")
    assert info.has_audio and "mp4" in info.format_name


@pytest.mark.needs_ffmpeg
def test_probe_refuses_a_truncated_mp4_and_a_text_file(clip: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    for bad in (truncated, text):
        with pytest.raises(BadInput) as err:
            probe(bad)
        assert err.value.code == "INVALID_MEDIA" and bad.name in err.value.message


@pytest.mark.needs_ffmpeg
def test_transcode_reports_progress_and_writes_a_valid_file(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    args = (
        ffmpeg.input(str(clip), **input_options(clip))
        .output(
            str(out), vcodec="libvpx-vp9", acodec="libopus", crf=40, **{"b:v": 0, "deadline": "realtime", "cpu-used": 8}
        )
        .get_args()
    )
    updates: list[FfmpegProgress] = []
    run_ffmpeg(args, output=out, duration_s=6.0, on_progress=updates.append)
    assert updates and updates[-1].done and updates[-1].percent == 100.0
    assert [u.out_time_s for u in updates] == sorted(u.out_time_s for u in updates)
    info = probe(out)
    assert info.video is not None and info.video.codec == "vp9" and "webm" in info.format_name
    assert abs(info.duration_s - 6.0) < 0.3
    assert not partial_path(out).exists()


@pytest.mark.needs_ffmpeg
def test_cancel_stops_ffmpeg_within_seconds_and_leaves_nothing(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "slow.mp4"
    # a slow encode (veryslow preset, stream looped 20 times) that would run far longer than the test
    args = (
        ffmpeg.input(str(clip), **input_options(clip), stream_loop=20)
        .output(str(out), vcodec="libx264", preset="veryslow", acodec="aac")
        .get_args()
    )
    cancel = threading.Event()
    seen: list[FfmpegProgress] = []
    timer = threading.Timer(1.5, cancel.set)
    timer.start()
    with pytest.raises(Cancelled):
        run_ffmpeg(args, output=out, duration_s=126.0, on_progress=seen.append, cancel=cancel)
    assert not any(u.done for u in seen)  # stopped mid-encode, not after it finished
    assert not out.exists() and not partial_path(out).exists()
    alive = subprocess.run(["pgrep", "-f", str(partial_path(out))], capture_output=True)
    assert alive.returncode == 1  # no FFmpeg left running on that file


@pytest.mark.needs_ffmpeg
def test_an_impossible_codec_container_pair_is_bad_input(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "h265.webm"
    args = ffmpeg.input(str(clip), **input_options(clip)).output(str(out), vcodec="libx265", t=1).get_args()
    with pytest.raises(BadInput) as err:
        run_ffmpeg(args, output=out, duration_s=1.0)
    assert err.value.code == "FFMPEG_BAD_INPUT" and not out.exists() and not partial_path(out).exists()


def test_progress_parser_reads_ffmpeg_blocks() -> None:
    parser = ProgressParser(duration_s=10.0)
    lines = ["frame=50", "fps=25.0", "out_time_us=2000000", "speed=2.0x", "progress=continue"]
    updates = [u for line in lines if (u := parser.feed(line))]
    assert len(updates) == 1
    u = updates[0]
    assert (u.out_time_s, u.percent, u.fps, u.speed, u.frame, u.eta_s) == (2.0, 20.0, 25.0, 2.0, 50, 4.0)
    end = [x for line in ["out_time_us=N/A", "progress=end"] if (x := parser.feed(line))][0]
    assert end.done and end.percent == 100.0


@pytest.mark.needs_ffmpeg
def test_without_a_gpu_nvenc_is_probed_and_software_is_chosen() -> None:
    ok, reason = nvenc_works("h264_nvenc")
    choice = choose_encoder("h264")
    if ok:  # a machine with a working NVIDIA GPU
        assert choice.encoder == "h264_nvenc" and choice.gpu
    else:
        assert choice.encoder == "libx264" and not choice.gpu and "unavailable" in choice.reason
        assert "h264_nvenc" in reason
    assert choose_encoder("vp9").encoder == "libvpx-vp9"
    with pytest.raises(BadInput):
        choose_encoder("mpeg1")
