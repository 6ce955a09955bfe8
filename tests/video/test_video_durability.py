"""A render survives its worker being killed: kill -9 mid-FFmpeg, start another worker, the video is rendered once."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.video.contract import CAPTION_QUEUE, PREVIEW_QUEUE, RENDER_QUEUE, TRANSCODE_QUEUE
from activities.video.ffmpeg import probe
from activities.video.models import Video, VideoJob
from activities.video.schemas import VideoJobResult
from api.caller import Caller
from api.services import video as service
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.storage import LocalBlobStore
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.processes import max_activity_attempt, spawn_worker, stop_all

#: Workers in processes of their own, one killed with -9, rendering with FFmpeg.
pytestmark = [pytest.mark.process, pytest.mark.needs_ffmpeg, pytest.mark.slow]

VIDEO_QUEUES = (RENDER_QUEUE, PREVIEW_QUEUE, TRANSCODE_QUEUE, CAPTION_QUEUE)
#: Source length and output of the render: long enough to be caught mid-FFmpeg, short enough to redo quickly.
SOURCE_S = 16
OUTPUT = {"width": 960, "height": 540, "fps": 25, "codec": "h264", "container": "mp4", "allow_gpu": False}


def _make_clip(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={SOURCE_S}",
            "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={SOURCE_S}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


def _partial_files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*.partial.*")]


def _ffmpeg_using(folder: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or not cmdline:
            continue
        if Path(cmdline[0]).name.startswith("ffmpeg") and any(str(folder) in arg for arg in cmdline):
            found.append(" ".join(cmdline))
    return found


async def test_render_completes_after_the_worker_is_killed_mid_ffmpeg() -> None:
    env = await start_dev_server()  # its own server: no in-process worker may take the retried render
    var = Path(tempfile.mkdtemp(prefix="conveyor-video-durability-"))
    settings = Settings(var_dir=var, temporal_address=env.client.service_client.config.target_host)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    try:
        await _kill_mid_render_then_finish(env.client, settings, session_factory(engine))
    finally:
        await engine.dispose()
        await env.shutdown()
        await asyncio.to_thread(shutil.rmtree, var, True)


async def _kill_mid_render_then_finish(
    client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    var = settings.var_dir
    blobs = LocalBlobStore(Path(settings.blob_url_resolved))
    first = spawn_worker(settings, VIDEO_QUEUES, var / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        clip = await asyncio.to_thread(_make_clip, var / "source.mp4")
        async with sessions() as session:
            user, _ = await create_user(session, "video-durable", 10_000)
            await session.commit()
            caller = Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)
            stream = await asyncio.to_thread(clip.open, "rb")
            with stream:
                uploaded = await service.upload(caller, filename=clip.name, stream=stream)
            timeline = {
                "clips": [{"key": uploaded.blob_key}, {"key": uploaded.blob_key, "trim_start": 4.0}],
                "transitions": [{"kind": "wipeleft", "duration": 1.0}],
                "text": [{"text": "Durable", "start": 0.5, "end": 3.0, "position": "top"}],
                "output": OUTPUT,
            }
            started = await service.start_render(
                caller, timeline_raw=timeline, title="durable", preview=None, caption=None
            )
        (render_job,) = started.jobs
        handle = client.get_workflow_handle(started.workflow_id, result_type=VideoJobResult)

        async def mid_ffmpeg() -> None:
            async with sessions() as session:
                job = await session.get_one(VideoJob, render_job)
                assert job.status not in ("completed", "failed", "cancelled"), (job.status, job.error_message)
                assert job.status == "running" and 5.0 < job.progress < 80.0, (job.status, job.progress)

        await assert_eventually(mid_ffmpeg, within_s=60, interval=0.1)
        assert await asyncio.to_thread(_ffmpeg_using, settings.video_temp_dir_resolved / render_job)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        second = spawn_worker(settings, VIDEO_QUEUES, var / "worker2.log")
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        await asyncio.to_thread(stop_all, first, second)
    assert result.status == "completed", result
    async with sessions() as session:
        job = await session.get_one(VideoJob, render_job)
        video = await session.get_one(Video, started.video.id)
    assert job.status == "completed" and job.attempt == 2, (job.status, job.attempt)
    assert max_activity_attempt(await handle.fetch_history()) >= 2
    assert (video.status, video.stage) == ("completed", "rendered")
    assert video.blob_key == f"videos/{video.id}/render.mp4"

    expected_s = SOURCE_S + (SOURCE_S - 4.0) - 1.0
    info = await asyncio.to_thread(probe, blobs.local_path(video.blob_key), verify=True)
    assert abs(info.duration_s - expected_s) < 0.2, (info.duration_s, expected_s)
    assert info.video is not None and (info.video.codec, info.video.width, info.video.height) == ("h264", 960, 540)
    assert info.has_audio
    size = (await asyncio.to_thread(blobs.stat, video.blob_key)).size
    assert size == video.size_bytes == job.outputs["size_bytes"] > 10_000
    assert video.duration_s is not None and abs(video.duration_s - expected_s) < 0.2

    blob_root = Path(settings.blob_url_resolved)
    temp_dir = settings.video_temp_dir_resolved
    assert await asyncio.to_thread(_partial_files, blob_root, temp_dir) == []
    assert not (temp_dir / render_job).exists()  # the work folder went with the step
    assert await asyncio.to_thread(_ffmpeg_using, temp_dir / render_job) == []  # the killed worker's FFmpeg too
