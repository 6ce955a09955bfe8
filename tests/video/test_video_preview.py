"""Preview frames and contact sheets with real FFmpeg, checked with ffprobe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from activities.video.ffmpeg import probe
from activities.video.preview import frame_times, make_preview
from conveyor.errors import BadInput

pytestmark = pytest.mark.needs_ffmpeg


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("preview") / "clip.mp4"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=8",
            "-c:v", "libx264", "-preset", "ultrafast", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def test_frames_at_even_intervals_and_a_tiled_sheet(clip: Path, tmp_path: Path) -> None:
    percents: list[float] = []
    result = make_preview(clip, tmp_path / "out", count=6, width=320, on_progress=lambda p: percents.append(p.percent))
    assert result.times_s == [round(8 / 6 * (i + 0.5), 3) for i in range(6)]
    assert len(result.frames) == 6 and all(f.is_file() for f in result.frames)
    first = probe(result.frames[0]).video
    assert first is not None and (first.width, first.height) == (320, 180)
    sheet = probe(result.sheet).video
    assert (result.columns, result.rows) == (3, 2)
    assert sheet is not None and sheet.width == 3 * 320 + 2 * 4 + 2 * 4 and sheet.height == 2 * 180 + 4 + 2 * 4
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert not list((tmp_path / "out").glob("*.partial.*"))


def test_bad_counts_and_inputs_are_refused(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        frame_times(8.0, 0)
    with pytest.raises(BadInput):
        make_preview(clip, tmp_path, count=101)
    audio_only = tmp_path / "tone.m4a"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(audio_only)],
        check=True,
    )
    with pytest.raises(BadInput) as err:
        make_preview(audio_only, tmp_path / "x")
    assert err.value.code == "NO_VIDEO"
