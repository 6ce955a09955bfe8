"""Cancelling video jobs through the API stops FFmpeg at once and leaves no partial file, work folder or output."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from temporalio.client import WorkflowExecutionStatus

from tests.helpers import assert_eventually
from tests.helpers.stack import Stack

pytestmark = pytest.mark.needs_ffmpeg

#: Length of the generated input: long enough that no encode below can finish before it is cancelled.
LONG_S = 30
#: How long a cancelled job may take to stop and clean up: a bound that a broken cancel fails (the encodes below
#: take minutes), loose enough that a machine busy with other work does not.
STOP_WITHIN_S = 20.0


def make_long_clip(path: Path, seconds: int = LONG_S) -> Path:
    """A 1280x720 test pattern with a tone, encoded fast and small enough for the stack's upload limit."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=1280x720:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "35",
            "-c:a", "aac", "-b:a", "48k", "-shortest", str(path),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
async def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The long clip, made once for this module (in a thread: the stack's workers share the event loop)."""
    folder = tmp_path_factory.mktemp("long-clip")
    return await asyncio.to_thread(make_long_clip, folder / "long.mp4")


async def _upload(http: httpx.AsyncClient, path: Path) -> dict[str, Any]:
    data = await asyncio.to_thread(path.read_bytes)
    sent = await http.post("/api/videos/upload", files={"file": (path.name, data)})
    assert sent.status_code == 201, sent.text
    body: dict[str, Any] = sent.json()
    return body


async def _video(http: httpx.AsyncClient, video_id: str) -> dict[str, Any]:
    got = await http.get(f"/api/videos/{video_id}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def _wait_running(http: httpx.AsyncClient, video_id: str, job_id: str) -> dict[str, Any]:
    """The job once its row shows it running with some progress (FFmpeg is encoding)."""

    async def running() -> dict[str, Any]:
        job: dict[str, Any] = next(j for j in (await _video(http, video_id))["jobs"] if j["job_id"] == job_id)
        if job["status"] in ("completed", "failed", "cancelled"):
            pytest.fail(f"the job ended before it could be cancelled: {job}")
        assert job["status"] == "running" and job["progress"] > 0, job
        return job

    return await assert_eventually(running, within_s=120, interval=0.3)


def _ffmpeg_using(folder: Path) -> list[str]:
    """Command lines of live FFmpeg processes that mention ``folder``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or not cmdline:
            continue
        if Path(cmdline[0]).name.startswith("ffmpeg") and any(str(folder) in arg for arg in cmdline):
            found.append(" ".join(cmdline))
    return found


def _leftovers(temp_dir: Path, job_ids: list[str]) -> list[str]:
    """Partial files anywhere in the video working folder, and the jobs' own work folders."""
    partial = [str(p) for p in temp_dir.rglob("*.partial.*")] if temp_dir.exists() else []
    return partial + [str(temp_dir / j) for j in job_ids if (temp_dir / j).exists()]


async def test_cancelling_a_transcode_stops_ffmpeg_and_leaves_nothing(stack: Stack, long_clip: Path) -> None:
    _, key = await stack.new_user()
    temp_dir = stack.settings.video_temp_dir_resolved
    async with stack.http(key) as http:
        video = await _upload(http, long_clip)
        video_id = video["video_id"]
        assert (video["width"], video["height"]) == (1280, 720)
        started = await http.post(
            f"/api/videos/{video_id}/transcode", json={"codec": "h265", "container": "mkv", "allow_gpu": False}
        )
        assert started.status_code == 202, started.text
        workflow_id = started.json()["workflow_id"]
        (job_id,) = started.json()["jobs"]
        await _wait_running(http, video_id, job_id)
        work_folder = temp_dir / job_id
        assert await asyncio.to_thread(_ffmpeg_using, work_folder), "FFmpeg is not encoding into the work folder"

        cancelled = await http.post(f"/api/videos/{video_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        handle = stack.client.get_workflow_handle(workflow_id)

        async def stopped_and_clean() -> None:
            assert await asyncio.to_thread(_ffmpeg_using, work_folder) == []
            job = (await _video(http, video_id))["jobs"][0]
            assert job["status"] == "cancelled", job
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            assert await asyncio.to_thread(_leftovers, temp_dir, [job_id]) == []
            outputs = await asyncio.to_thread(lambda: list(stack.blobs.list(f"videos/{video_id}/transcode/")))
            assert outputs == []

        await assert_eventually(stopped_and_clean, within_s=STOP_WITHIN_S, interval=0.2)
        after = await _video(http, video_id)
        assert after["status"] == "completed" and after["key"]  # the uploaded file itself is untouched
        job = after["jobs"][0]
        assert job["completed_at"] is not None  # ended as cancelled: neither failed nor still running
        assert (job["error_kind"], job["error_code"], job["error_message"]) == (None, None, None)


async def test_cancelling_a_render_cancels_every_job_of_the_video(stack: Stack, long_clip: Path) -> None:
    _, key = await stack.new_user()
    temp_dir = stack.settings.video_temp_dir_resolved
    async with stack.http(key) as http:
        clip = await _upload(http, long_clip)
        timeline = {
            # the same file twice (the second trimmed: see the report on identical clips in render.py)
            "clips": [{"key": clip["key"]}, {"key": clip["key"], "trim_start": 1.0}],
            "transitions": [{"kind": "fade", "duration": 1.0}],
            "output": {"width": 1280, "height": 720, "fps": 25, "codec": "h265", "allow_gpu": False},
        }
        body = {
            "timeline": timeline,
            "title": "too slow",
            "preview": {"frames": 3},
            "caption": {},
            "transcodes": [{"codec": "vp9", "container": "webm"}],
        }
        started = await http.post("/api/videos/render", json=body)
        assert started.status_code == 202, started.text
        video_id, workflow_id = started.json()["video_id"], started.json()["workflow_id"]
        jobs: dict[str, str] = started.json()["jobs"]
        assert sorted(jobs.values()) == ["caption", "preview", "render", "transcode"]
        render_job = next(j for j, kind in jobs.items() if kind == "render")
        await _wait_running(http, video_id, render_job)
        rendering = await _video(http, video_id)
        assert (rendering["status"], rendering["stage"]) == ("running", "rendering")

        cancelled = await http.post(f"/api/videos/{video_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        handle = stack.client.get_workflow_handle(workflow_id)

        async def all_cancelled() -> dict[str, Any]:
            assert await asyncio.to_thread(_ffmpeg_using, temp_dir / render_job) == []
            video = await _video(http, video_id)
            assert video["status"] == "cancelled", video
            assert {j["kind"]: j["status"] for j in video["jobs"]} == dict.fromkeys(jobs.values(), "cancelled")
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            assert await asyncio.to_thread(_leftovers, temp_dir, list(jobs)) == []
            return video

        video = await assert_eventually(all_cancelled, within_s=STOP_WITHIN_S, interval=0.2)
        assert video["key"] is None and video["download_url"] is None  # no rendered file was kept
        files = await asyncio.to_thread(lambda: [b.key for b in stack.blobs.list(f"videos/{video_id}/")])
        assert files == []
        progress = await http.get(f"/api/workflows/{workflow_id}/progress")
        assert progress.status_code == 200, progress.text
        assert "cancelled" in progress.json()["progress"]["message"]
