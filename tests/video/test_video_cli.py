"""`conveyor video render|transcode|preview|caption` (``python -m cli video``) against the real test stack and the
bundled samples."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from activities.video.ffmpeg import probe
from activities.video.models import Video
from tests.helpers.processes import cli_json as as_json
from tests.helpers.processes import run_cli
from tests.helpers.stack import Stack

#: Every test runs the CLI as a process of its own.
pytestmark = pytest.mark.process

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "video"
#: What intro.mp4 says (samples/video/make_samples.sh).
INTRO_WORDS = {"welcome", "conveyor", "bakery", "fresh", "bread", "every", "morning"}


async def conveyor(stack: Stack, *args: str, within_s: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI with the stack's settings."""
    return await run_cli(stack.settings, *args, within_s=within_s)


async def _video_count(stack: Stack) -> int:
    async with stack.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Video)) or 0)


def _jobs(video: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["kind"]: j for j in video["jobs"]}


@pytest.mark.needs_ffmpeg  # the stack's video workers run FFmpeg for it
async def test_render_the_sample_timeline_uploading_its_local_files(stack: Stack, tmp_path: Path) -> None:
    # a copy elsewhere, so the timeline's keys (samples/video/intro.mp4 …) resolve from the timeline's own folder
    # whatever the current folder is
    await asyncio.to_thread(shutil.copytree, SAMPLES, tmp_path / "video")
    timeline = tmp_path / "video" / "timeline.json"
    run = await conveyor(
        stack, "video", "render", str(timeline), "--json", "--transcode", "vp9:webm", "--frames", "3", within_s=240
    )
    assert run.returncode == 0, run.stderr
    video = as_json(run)
    assert (video["status"], video["stage"]) == ("completed", "rendered"), video
    jobs = _jobs(video)
    assert sorted(jobs) == ["caption", "preview", "render", "transcode"]
    assert {k: j["status"] for k, j in jobs.items()} == dict.fromkeys(jobs, "completed"), video
    render = jobs["render"]["outputs"]
    assert (render["width"], render["height"], render["video_codec"]) == (640, 360, "h264")
    assert render["subtitles"] == jobs["caption"]["outputs"]["srt"]  # from_caption: burned-in captions
    assert len(jobs["preview"]["outputs"]["frames"]) == 3
    assert jobs["transcode"]["outputs"]["video_codec"] == "vp9"
    webm = Path(jobs["transcode"]["local_outputs"]["file"])
    assert webm.is_file() and webm.suffix == ".webm"
    assert Path(jobs["render"]["local_outputs"]["file"]).name == "render.mp4"


@pytest.mark.needs_ffmpeg  # the stack's video workers run FFmpeg for it
async def test_transcode_to_webm_into_a_folder(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = await conveyor(
        stack,
        "video",
        "transcode",
        str(SAMPLES / "intro.mp4"),
        "--codec",
        "vp9",
        "--container",
        "webm",
        "--width",
        "320",
        "--json",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    job = as_json(run)["jobs"][0]
    assert job["kind"] == "transcode" and job["status"] == "completed", job
    assert job["encoder"] == "libvpx-vp9"
    (copied,) = out.iterdir()
    assert job["local_outputs"]["file"] == str(copied)
    info = await asyncio.to_thread(probe, copied)
    assert info.video is not None and (info.video.codec, info.video.width) == ("vp9", 320)
    assert "webm" in info.format_name and info.has_audio
    assert abs(info.duration_s - 5.5) < 0.1


@pytest.mark.needs_ffmpeg  # the stack's video workers run FFmpeg for it
async def test_preview_and_caption_of_a_file(stack: Stack) -> None:
    preview, caption = await asyncio.gather(
        conveyor(stack, "video", "preview", str(SAMPLES / "outro.mp4"), "--frames", "4", "--json"),
        conveyor(stack, "video", "caption", str(SAMPLES / "intro.mp4"), "--json"),
    )
    assert preview.returncode == 0, preview.stderr
    job = as_json(preview)["jobs"][0]
    assert job["status"] == "completed" and len(job["outputs"]["frames"]) == 4, job
    sheet = Path(job["local_outputs"]["sheet"])
    assert sheet.is_file() and sheet.read_bytes()[:2] == b"\xff\xd8"

    assert caption.returncode == 0, caption.stderr
    job = as_json(caption)["jobs"][0]
    assert job["status"] == "completed", job
    assert job["outputs"]["language"] == "en" and job["outputs"]["segments"] >= 1
    srt = Path(job["local_outputs"]["srt"]).read_text(encoding="utf-8")
    assert "-->" in srt
    words = set(re.findall(r"[a-z]+", srt.lower()))
    assert len(INTRO_WORDS & words) >= 5, srt


@pytest.mark.needs_ffmpeg  # the stack's video workers run FFmpeg for it
async def test_without_json_the_jobs_are_shown_in_a_table(stack: Stack) -> None:
    run = await conveyor(stack, "video", "preview", str(SAMPLES / "intro.mp4"), "--frames", "2", "--width", "160")
    assert run.returncode == 0, run.stderr
    video_line = next(line for line in run.stdout.splitlines() if line.startswith("video "))
    assert video_line.rstrip().endswith(": completed"), run.stdout  # the uploaded file's video
    header = next(line for line in run.stdout.splitlines() if "job" in line and "status" in line)
    assert "encoder" in header and "outputs / error" in header
    row = next(line for line in run.stdout.splitlines() if line.strip(" │|").startswith("preview"))
    assert "completed" in row, run.stdout
    assert "sheet:" in run.stdout and "sheet.jpg" in run.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ["transcode", str(SAMPLES / "intro.mp4"), "--codec", "h265", "--container", "webm"],
            "BAD_TRANSCODE",
            "h265 cannot go in webm",
        ),
        (["preview", "missing.mp4"], "MEDIA_NOT_FOUND", "missing.mp4"),
        (["caption", str(SAMPLES / "intro.mp4"), "--model", "large"], "BAD_CAPTION", "model_size"),
        (["caption", str(SAMPLES / "intro.mp4"), "--language", "English"], "BAD_CAPTION", "language"),
        (["render", str(SAMPLES / "README.md")], "BAD_TIMELINE", "not json"),
    ],
)
async def test_bad_input_is_one_readable_line_and_exit_2(stack: Stack, args: list[str], code: str, says: str) -> None:
    before = await _video_count(stack)
    run = await conveyor(stack, "video", *args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error {code}:"), run.stderr
    assert says in lines[0].lower(), lines[0]
    assert run.stdout == ""
    assert await _video_count(stack) == before  # refused before anything was uploaded or queued
