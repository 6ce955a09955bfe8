"""Video jobs end to end through the HTTP API: real dev server, video workers, FFmpeg, Whisper, SQLite, blobs.

Uploads are checked in two places: the API reads the file's first bytes only, and a worker reads every packet
(``VideoProbeWorkflow``); the API process never runs FFmpeg.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus

from activities.video import contract
from activities.video.ffmpeg import probe
from activities.video.models import Video
from activities.video.schemas import ProbeRequest, ProbeResult
from api.caller import Caller
from api.services import video as service
from conveyor.auth import create_user
from conveyor.errors import BadInput
from conveyor.settings import Settings
from conveyor.storage import LocalBlobStore
from tests.helpers import NewWorker, assert_eventually
from tests.helpers.stack import Stack
from workflows.video import VideoProbeWorkflow

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "video"
#: What the two sample clips say (samples/video/make_samples.sh).
SPOKEN = "welcome to the conveyor bakery fresh bread every morning thank you for watching see you tomorrow"
CUE_END = re.compile(r"--> (\d\d):(\d\d):(\d\d,\d\d\d)")


async def _upload(http: httpx.AsyncClient, path: Path, name: str | None = None) -> dict[str, Any]:
    data = await asyncio.to_thread(path.read_bytes)
    sent = await http.post("/api/videos/upload", files={"file": (name or path.name, data)})
    assert sent.status_code == 201, sent.text
    body: dict[str, Any] = sent.json()
    return body


async def _sample_timeline(http: httpx.AsyncClient) -> dict[str, Any]:
    """The bundled demo timeline with its files uploaded by this user."""
    timeline: dict[str, Any] = json.loads((SAMPLES / "timeline.json").read_text())
    keys: dict[str, str] = {}
    for ref in [*timeline["clips"], timeline["logo"], timeline["audio"]]:
        name = Path(ref["key"]).name
        if name not in keys:
            keys[name] = (await _upload(http, SAMPLES / name))["key"]
        ref["key"] = keys[name]
    return timeline


async def _finished(stack: Stack, http: httpx.AsyncClient, video_id: str, workflow_id: str) -> dict[str, Any]:
    """The video once its workflow has ended (its result or failure is not needed here)."""
    handle = stack.client.get_workflow_handle(workflow_id)
    try:
        await asyncio.wait_for(handle.result(), timeout=300)
    except TimeoutError:
        raise
    except Exception:  # noqa: BLE001 - the job rows carry the outcome asserted on
        pass
    got = await http.get(f"/api/videos/{video_id}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def _ffprobe_file(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


@pytest.mark.needs_ffmpeg
async def test_render_with_captions_from_speech_then_preview_caption_and_webm(stack: Stack, tmp_path: Path) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        timeline = await _sample_timeline(http)
        body = {
            "timeline": timeline,
            "title": "bakery",
            "preview": {"frames": 4, "width": 160},
            "transcodes": [{"codec": "vp9", "container": "webm", "width": 320}],
        }
        started = await http.post("/api/videos/render", json=body)
        assert started.status_code == 202, started.text
        video_id, workflow_id = started.json()["video_id"], started.json()["workflow_id"]
        assert sorted(started.json()["jobs"].values()) == ["caption", "preview", "render", "transcode"]
        video = await _finished(stack, http, video_id, workflow_id)
        jobs = {j["kind"]: j for j in video["jobs"]}
        assert {k: j["status"] for k, j in jobs.items()} == dict.fromkeys(jobs, "completed"), video
        assert (video["status"], video["stage"], video["progress"]) == ("completed", "rendered", 100)
        assert all(j["progress"] == 100 for j in jobs.values())

        render = jobs["render"]["outputs"]
        assert (render["width"], render["height"], render["video_codec"]) == (640, 360, "h264")
        assert jobs["render"]["encoder"] in ("libx264", "h264_nvenc") and jobs["render"]["encoder_reason"]
        downloaded = await http.get(video["download_url"])
        assert downloaded.status_code == 200
        local = tmp_path / "render.mp4"
        local.write_bytes(downloaded.content)
        info = probe(local)
        assert info.has_audio and abs(info.duration_s - render["duration_s"]) < 0.1
        expected = probe(SAMPLES / "intro.mp4").duration_s + probe(SAMPLES / "outro.mp4").duration_s - 0.8
        assert abs(info.duration_s - expected) < 0.15, (info.duration_s, expected)

        caption = jobs["caption"]["outputs"]
        assert caption["language"] == "en"
        srt = (await http.get(jobs["caption"]["downloads"]["srt"])).text
        words = set(re.findall(r"[a-z]+", srt.lower()))
        spoken = set(SPOKEN.split())
        assert len(spoken & words) >= 0.8 * len(spoken), srt
        ends = [float(h) * 3600 + float(m) * 60 + float(sec.replace(",", ".")) for h, m, sec in CUE_END.findall(srt)]
        assert len(ends) >= 2 and max(ends) <= info.duration_s + 0.5, srt  # a cue per sentence at least
        assert render["subtitles"] == caption["srt"]  # the render burned in the caption step's SRT

        preview = jobs["preview"]
        assert len(preview["outputs"]["frames"]) == 4
        sheet = await http.get(preview["downloads"]["sheet"])
        assert sheet.status_code == 200 and sheet.content[:2] == b"\xff\xd8"

        variant = jobs["transcode"]
        webm = tmp_path / "variant.webm"
        webm.write_bytes((await http.get(variant["downloads"]["file"])).content)
        data = _ffprobe_file(webm)
        vstream = next(s for s in data["streams"] if s["codec_type"] == "video")
        assert vstream["codec_name"] == "vp9" and vstream["width"] == 320
        assert "webm" in data["format"]["format_name"]
        assert variant["encoder"] == "libvpx-vp9"

        progress = await http.get(f"/api/workflows/{workflow_id}/progress")
        assert progress.json()["progress"]["done"] == 4


async def _probe_runs(stack: Stack, user_id: int) -> dict[str, WorkflowExecutionStatus | None]:
    """The user's upload checks on the workers (``VideoProbeWorkflow`` runs) by workflow id, with their status."""
    query = f"WorkflowType = '{contract.PROBE_WORKFLOW}' AND ConveyorOwner = '{user_id}'"
    return {w.id: w.status async for w in stack.client.list_workflows(query)}


async def _probe_count(stack: Stack, user_id: int, count: int) -> dict[str, WorkflowExecutionStatus | None]:
    """The user's probe runs once ``count`` of them have closed (visibility catches up a moment later)."""
    runs = await _probe_runs(stack, user_id)
    assert len(runs) == count and WorkflowExecutionStatus.RUNNING not in runs.values(), runs
    return runs


@pytest.mark.needs_ffmpeg
async def test_bad_input_is_refused_with_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    user_id, key = await stack.new_user()
    intro = SAMPLES / "intro.mp4"
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(intro.read_bytes()[: intro.stat().st_size // 3])
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    async with stack.http(key) as http:
        for path in (truncated, text):
            sent = await http.post("/api/videos/upload", files={"file": (path.name, path.read_bytes())})
            assert sent.status_code == 400, sent.text
            assert sent.json()["error"]["code"] == "INVALID_MEDIA"
            assert path.name in sent.json()["error"]["message"]
            reason = "is truncated: the file ends before its last frame" if path == truncated else "not a video"
            assert reason in sent.json()["error"]["message"], sent.text
        # the text file was refused by its header, in the API; the truncated MP4 (a valid header) by a worker
        # reading every packet of it, so its check is one failed probe workflow
        probes = await assert_eventually(lambda: _probe_count(stack, user_id, 1))
        ((refused_probe, refused_status),) = probes.items()
        assert refused_status == WorkflowExecutionStatus.FAILED
        refused_id = refused_probe.removeprefix("video-probe-")
        assert await asyncio.to_thread(lambda: list(stack.blobs.list(f"videos/{refused_id}/"))) == []  # not kept

        clip = await _upload(http, intro)
        probes = await assert_eventually(lambda: _probe_count(stack, user_id, 2))
        assert probes == {
            refused_probe: WorkflowExecutionStatus.FAILED,
            f"video-probe-{clip['video_id']}": WorkflowExecutionStatus.COMPLETED,
        }
        assert (clip["duration_s"], clip["width"], clip["video_codec"]) == (pytest.approx(5.5, abs=0.1), 640, "h264")
        missing = {"timeline": {"clips": [{"key": clip["key"]}, {"key": "videos/nope/clip.mp4"}]}}
        refused = await http.post("/api/videos/render", json=missing)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "CLIP_NOT_FOUND", refused.text
        assert "clip 2" in refused.json()["error"]["message"]

        late = {"timeline": {"clips": [{"key": clip["key"]}], "text": [{"text": "hi", "start": 1, "end": 30}]}}
        refused = await http.post("/api/videos/render", json=late)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "OVERLAY_PAST_END", refused.text

        webm_h265 = {"timeline": {"clips": [{"key": clip["key"]}], "output": {"codec": "h265", "container": "webm"}}}
        refused = await http.post("/api/videos/render", json=webm_h265)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BAD_TIMELINE", refused.text

        refused = await http.post(
            f"/api/videos/{clip['video_id']}/transcode", json={"codec": "h265", "container": "webm"}
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "BAD_TRANSCODE", refused.text
        assert "WebM" in refused.json()["error"]["message"] or "WEBM" in refused.json()["error"]["message"]

        listed = await http.get(f"/api/videos/{clip['video_id']}")
        assert listed.json()["jobs"] == []  # nothing was queued for the refused requests

    _, other = await stack.new_user()
    async with stack.http(other) as http:
        assert (await http.get(f"/api/videos/{clip['video_id']}")).status_code == 404
        stolen = {"timeline": {"clips": [{"key": clip["key"]}]}}
        refused = await http.post("/api/videos/render", json=stolen)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "CLIP_NOT_FOUND"


@pytest.mark.needs_ffmpeg
async def test_captioning_a_silent_video_gives_an_empty_srt(stack: Stack, tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    await asyncio.to_thread(
        subprocess.run,
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
            "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
            "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(silent),
        ],
        check=True,
    )  # fmt: skip
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        video = await _upload(http, silent)
        started = await http.post(f"/api/videos/{video['video_id']}/caption", json={})
        assert started.status_code == 202, started.text
        assert started.json()["workflow_id"].startswith("video-caption-")
        done = await _finished(stack, http, video["video_id"], started.json()["workflow_id"])
        job = done["jobs"][0]
        assert job["status"] == "completed", job
        assert job["outputs"]["segments"] == 0
        assert (await http.get(job["downloads"]["srt"])).text == ""


# ------------------------------------------------------------------- the API side of an upload runs no FFmpeg


async def test_the_api_reads_only_the_header_and_a_worker_probes_the_upload(
    client: Client,
    new_worker: NewWorker,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    blobs = LocalBlobStore(tmp_path / "blobs")
    intro = SAMPLES / "intro.mp4"
    probed: list[ProbeRequest] = []

    @activity.defn(name=contract.PROBE_UPLOAD)
    async def probe_upload(request: ProbeRequest) -> ProbeResult:
        """The worker's probe, faked: what it was asked, and its verdict on a file cut short."""
        probed.append(request)
        assert blobs.exists(request.key), request  # the file is stored before a worker checks it
        if request.filename.startswith("truncated"):
            message = f"{request.filename} is not media FFmpeg can read: moov atom not found"
            raise BadInput(message, code="INVALID_MEDIA").to_application_error()
        return ProbeResult(duration_s=5.52, width=640, height=360, video_codec="h264", audio_codec="aac")

    # Nothing FFmpeg-like can run on the API side from here on: no ffmpeg or ffprobe on the PATH.
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    async with sessions() as session:
        user, _key = await create_user(session, "uploader", 0)
        await session.commit()

        caller = Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)

        async def upload(name: str, data: bytes) -> Video:
            return await service.upload(caller, filename=name, stream=io.BytesIO(data))

        async with (
            new_worker([VideoProbeWorkflow], task_queue=contract.RENDER_QUEUE),
            new_worker([], [probe_upload], task_queue=contract.PREVIEW_QUEUE),
        ):
            video = await upload("intro.mp4", intro.read_bytes())
            with pytest.raises(BadInput) as truncated:
                await upload("truncated.mp4", intro.read_bytes()[:4096])
            with pytest.raises(BadInput) as text:
                await upload("notes.mp4", b"this is not a video\n")

    assert [p.filename for p in probed] == ["intro.mp4", "truncated.mp4"]  # the text file never reached a worker
    assert (video.status, video.duration_s, video.width, video.video_codec) == ("completed", 5.52, 640, "h264")
    assert probed[0].key == video.blob_key and blobs.exists(video.blob_key)
    assert (truncated.value.code, truncated.value.http_status) == ("INVALID_MEDIA", 400)
    assert "truncated.mp4" in truncated.value.message and "moov atom" in truncated.value.message
    assert not blobs.exists(probed[1].key)  # a refused upload is not kept
    assert (text.value.code, text.value.http_status) == ("INVALID_MEDIA", 400) and "notes.mp4" in text.value.message
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Video)) == 1
