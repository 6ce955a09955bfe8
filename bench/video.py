"""Benchmark: video render and transcode through Conveyor vs the same FFmpeg command run directly, and Whisper
caption speed, in one run.

1. Generates media: two ``--clip-seconds`` 1280x720 30 fps clips with a tone (``testsrc``, ``smptehdbars``), a
   ``--transcode-seconds`` clip like them to transcode, and about 25 s of espeak-ng speech (``-s 130 -v en-us``).
   The clips and the bundled logo are uploaded as the bench user's files (``api.services.video.upload``).
2. Render: a timeline of the two clips with a fade, a title and the logo at 70 %, out as 1280x720 H.264, as a
   ``VideoJobWorkflow`` with only the render job (``start_render``, no preview, caption or transcodes) on the
   real dev server with a ``conveyor worker -q video.render -q video.preview -q video.transcode`` process
   (``video.preview`` checks the uploads), timed from the start request to the workflow's result — vs the
   FFmpeg command ``plan_render`` builds for the same files, run directly with ``ffmpeg`` (the plan is built
   before the clock starts, so the direct side is FFmpeg alone).
3. Transcode: the long clip to H.264 480p as one transcode step (``start_step``) vs ``plan_transcode``'s command
   run directly. For both, direct and Conveyor runs alternate ``--rounds`` times (which goes first flips every
   round); reported: best against best, and the median of each round's Conveyor/direct pair.
4. Peak memory of the worker process with its FFmpeg during the Conveyor runs (sampled once a second).
5. Captions: ``Captioner.caption`` in this process with tiny.en and base over the speech, ``--rounds`` times
   each after the model is loaded: real-time factor (seconds per second of audio, best round) and word error
   rate against the spoken text.

Prints the times and the ratios Conveyor/FFmpeg (target ≤ 1.1), and the caption RTF and WER. Usage:
``python -m bench.video [--clip-seconds N] [--transcode-seconds N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from activities.video.captions import Captioner
from activities.video.ffmpeg import ffmpeg_path, probe
from activities.video.models import JobKind
from activities.video.render import SourceMedia, plan_render
from activities.video.schemas import VideoJobResult
from activities.video.timeline import check_timeline
from activities.video.transcode import TranscodeSpec, plan_transcode
from api.services import video as service
from bench.crawl import _Sampler
from cli.context import Cli
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.storage import BlobStore, blob_store_from_url
from conveyor.temporal import start_ephemeral_server as start_dev_server

console = Console()
LOGO = Path(__file__).resolve().parents[1] / "samples" / "video" / "logo.png"
#: What the speech says (no digits, so the word error rate needs no number normalising).
SPEECH = (
    "The quick brown fox jumps over the lazy dog. Conveyor runs durable background pipelines on Temporal. "
    "Every video is rendered, captioned and transcoded by workers that report their progress. "
    "If a worker stops, the step runs again from the start on another machine. "
    "Thank you for listening, and see you tomorrow."
)
TRANSITION_S = 1.0
TRANSCODE = {"codec": "h264", "container": "mp4", "height": 480}
CAPTION_MODELS = ("tiny.en", "base")
FFMPEG_QUIET = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]


def make_clip(path: Path, source: str, seconds: float, tone_hz: int) -> None:
    """A 1280x720 30 fps H.264 clip of a lavfi test pattern with a sine tone as its sound."""
    subprocess.run(
        [ffmpeg_path(), *FFMPEG_QUIET, "-f", "lavfi", "-i", f"{source}=size=1280x720:rate=30:duration={seconds:g}",
         "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:duration={seconds:g}:sample_rate=48000",
         "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "96k", "-shortest", str(path)],
        check=True,
    )  # fmt: skip


def make_media(folder: Path, clip_seconds: float, transcode_seconds: float) -> dict[str, Path]:
    """The clips to render and transcode, and the speech to caption."""
    folder.mkdir(parents=True, exist_ok=True)
    media = {
        "first": folder / "first.mp4",
        "second": folder / "second.mp4",
        "long": folder / "long.mp4",
        "speech": folder / "speech.wav",
    }
    make_clip(media["first"], "testsrc", clip_seconds, 440)
    make_clip(media["second"], "smptehdbars", clip_seconds, 660)
    make_clip(media["long"], "testsrc", transcode_seconds, 550)
    subprocess.run(["espeak-ng", "-s", "130", "-v", "en-us", "-w", str(media["speech"]), SPEECH], check=True)
    return media


def timeline_of(first: str, second: str, logo: str, *, trim_s: float | None = None) -> dict[str, Any]:
    """The bench timeline: two clips with a fade, a title, the logo; 1280x720 H.264 (``trim_s``: each clip cut)."""
    clips: list[dict[str, Any]] = [{"key": first}, {"key": second}]
    if trim_s is not None:
        for clip in clips:
            clip["trim_end"] = trim_s
    return {
        "clips": clips,
        "transitions": [{"kind": "fade", "duration": TRANSITION_S if trim_s is None else trim_s / 2}],
        "text": [{"text": "Conveyor bench", "start": 0.5, "end": 4.0 if trim_s is None else None, "font_size": 40}],
        "logo": {"key": logo, "position": "top-right", "opacity": 0.7},
        "output": {"width": 1280, "height": 720, "fps": 30, "codec": "h264", "container": "mp4"},
    }


def run_ffmpeg_direct(args: Sequence[str], output: Path) -> float:
    """Run ``ffmpeg ARGS`` as a plain subprocess; returns seconds (the output is removed afterwards)."""
    started = time.perf_counter()
    subprocess.run([ffmpeg_path(), *FFMPEG_QUIET, *args], check=True)
    seconds = time.perf_counter() - started
    output.unlink()
    return seconds


def direct_render_args(blobs: BlobStore, timeline: dict[str, Any], output: Path) -> list[str]:
    """``plan_render``'s arguments for the uploaded files themselves (the blob store's local copies)."""
    spec = check_timeline(timeline)
    clips = []
    for clip in spec.clips:
        path = blobs.local_path(clip.key or "")
        assert path is not None, "the bench needs a local blob store"
        clips.append(SourceMedia(path=path, info=probe(path)))
    logo = blobs.local_path(spec.logo.key) if spec.logo is not None else None
    return plan_render(spec, clips, output, logo=logo).args


def direct_transcode_args(blobs: BlobStore, key: str, output: Path) -> list[str]:
    """``plan_transcode``'s arguments for the uploaded long clip."""
    source = blobs.local_path(key)
    assert source is not None, "the bench needs a local blob store"
    return plan_transcode(
        source, output, TranscodeSpec.model_validate(TRANSCODE), has_audio=probe(source).has_audio
    ).args


async def upload(handles: Cli, path: Path) -> tuple[str, str]:
    """Store a file as the user's upload; returns (video id, blob key)."""
    async with handles.caller() as caller:
        with path.open("rb") as stream:
            video = await service.upload(caller, filename=path.name, stream=stream)
        if video.blob_key is None:
            raise RuntimeError(f"the upload of {path.name} stored no file")
        return video.id, video.blob_key


async def _result(client: Client, workflow_id: str, job_id: str) -> tuple[float, dict[str, Any]]:
    """The finished workflow's step: (seconds inside the activity, its outputs)."""
    result = await client.get_workflow_handle(workflow_id, result_type=VideoJobResult).result()
    assert result.status == "completed", result
    outcome = result.outcomes[job_id]
    return outcome.seconds, outcome.outputs


async def conveyor_render(handles: Cli, timeline: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """One render through the workflow; returns (seconds from the request to the result, in the activity, outputs)."""
    started = time.perf_counter()
    async with handles.caller() as caller:
        begun = await service.start_render(caller, timeline_raw=timeline, title="bench", preview=None, caption=None)
    (job_id,) = begun.jobs
    inside, outputs = await _result(handles.client, begun.workflow_id, job_id)
    return time.perf_counter() - started, inside, outputs


async def conveyor_transcode(handles: Cli, video_id: str) -> tuple[float, float, dict[str, Any]]:
    """One transcode step through the workflow; returns (seconds to the result, in the activity, outputs)."""
    started = time.perf_counter()
    async with handles.caller() as caller:
        begun = await service.start_step(caller, video_id, JobKind.TRANSCODE, dict(TRANSCODE))
    (job_id,) = begun.jobs
    inside, outputs = await _result(handles.client, begun.workflow_id, job_id)
    return time.perf_counter() - started, inside, outputs


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def srt_text(srt: str) -> str:
    """The spoken words of an SRT: every line but cue numbers and times."""
    return " ".join(line for line in srt.splitlines() if line.strip() and "-->" not in line and not line.isdigit())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (case and punctuation ignored)."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, heard in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != heard))
    return row[-1] / max(1, len(ref))


def caption_speed(cache: Path, speech: Path, rounds: int) -> list[tuple[str, list[float], float, float, str]]:
    """Per model: (name, seconds per round, audio seconds, WER, device), the model loaded before the clock."""
    captioner = Captioner(cache)
    duration = probe(speech).duration_s
    rows = []
    for size in CAPTION_MODELS:
        captioner.model(size)
        times = []
        text = ""
        for _ in range(rounds):
            started = time.perf_counter()
            result = captioner.caption(speech, model_size=size, duration_s=duration)
            times.append(time.perf_counter() - started)
            text = srt_text(result.srt)
        rows.append((size, times, duration, word_error_rate(SPEECH, text), captioner.device))
    return rows


def _describe(outputs: dict[str, Any]) -> str:
    return (
        f"{outputs.get('duration_s')} s {outputs.get('width')}x{outputs.get('height')} "
        f"{outputs.get('video_codec')} ({int(outputs.get('size_bytes') or 0) / 2**20:.1f} MiB)"
    )


def _seconds(values: Sequence[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in values)


async def main(clip_seconds: float, transcode_seconds: float, rounds: int) -> None:
    """Alternate direct FFmpeg and Conveyor ``rounds`` times per step, time the captions, print the comparison."""
    var = Path(tempfile.mkdtemp(prefix="conveyor-bench-video-"))
    media_task = asyncio.create_task(asyncio.to_thread(make_media, var / "media", clip_seconds, transcode_seconds))
    env = await start_dev_server()
    settings = Settings(var_dir=var, temporal_address=env.client.service_client.config.target_host)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    blobs = blob_store_from_url(settings.blob_url_resolved)
    worker_env = {**os.environ, "CONVEYOR_VAR_DIR": str(var), "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address}
    worker_env["CONVEYOR_LOG_LEVEL"] = "warning"
    log = (var / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "-q", "video.render", "-q", "video.preview", "-q", "video.transcode"],
        env=worker_env,
        stdout=log,
        stderr=log,
    )
    work = var / "direct"
    work.mkdir()
    render_direct: list[float] = []
    render_ours: list[tuple[float, float]] = []
    transcode_direct: list[float] = []
    transcode_ours: list[tuple[float, float]] = []
    render_out: dict[str, Any] = {}
    transcode_out: dict[str, Any] = {}
    peak = peak_uss = 0
    try:
        media = await media_task
        async with sessions() as session:
            user, _ = await create_user(session, "bench-video", 10**9)
            await session.commit()
        handles = Cli(settings, sessions, blobs, env.client, user)
        _, first = await upload(handles, media["first"])
        _, second = await upload(handles, media["second"])
        _, logo = await upload(handles, LOGO)
        long_id, long_key = await upload(handles, media["long"])
        timeline = timeline_of(first, second, logo)
        render_output = work / "render.mp4"
        render_args = await asyncio.to_thread(direct_render_args, blobs, timeline, render_output)
        transcode_output = work / "variant.mp4"
        transcode_args = await asyncio.to_thread(direct_transcode_args, blobs, long_key, transcode_output)
        # warm-up: the worker's first activity, its NVENC probe, the database; a one-second render
        await conveyor_render(handles, timeline_of(first, second, logo, trim_s=1.0))
        for i in range(rounds):
            # the order flips every round, so a change of machine load or a warm cache favours neither side
            direct_first = i % 2 == 0
            if direct_first:
                render_direct.append(await asyncio.to_thread(run_ffmpeg_direct, render_args, render_output))
            sampler = _Sampler(worker.pid)
            total, inside, render_out = await conveyor_render(handles, timeline)
            render_ours.append((total, inside))
            if not direct_first:
                render_direct.append(await asyncio.to_thread(run_ffmpeg_direct, render_args, render_output))
                transcode_direct.append(await asyncio.to_thread(run_ffmpeg_direct, transcode_args, transcode_output))
            total, inside, transcode_out = await conveyor_transcode(handles, long_id)
            transcode_ours.append((total, inside))
            if direct_first:
                transcode_direct.append(await asyncio.to_thread(run_ffmpeg_direct, transcode_args, transcode_output))
            rss, uss = sampler.stop()
            peak, peak_uss = max(peak, rss), max(peak_uss, uss)
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        await engine.dispose()
        await env.shutdown()
    captions = await asyncio.to_thread(caption_speed, settings.whisper_cache_dir_resolved, media["speech"], rounds)
    shutil.rmtree(var, ignore_errors=True)

    table = Table(
        "step",
        "FFmpeg alone, s",
        "Conveyor, s",
        "in activity, s",
        "best ratio",
        "median pair ratio",
        title="video: Conveyor vs FFmpeg",
    )
    notes = []
    for step, direct, ours, outputs in (
        ("render", render_direct, render_ours, render_out),
        ("transcode", transcode_direct, transcode_ours, transcode_out),
    ):
        best_direct, best_ours = min(direct), min(t for t, _ in ours)
        ratio = best_ours / best_direct
        paired = statistics.median(t / d for (t, _), d in zip(ours, direct, strict=True))
        table.add_row(
            step,
            _seconds(direct),
            _seconds([t for t, _ in ours]),
            _seconds([i for _, i in ours]),
            f"{ratio:.3f}",
            f"{paired:.3f}",
        )
        notes.append(
            f"{step}: ratio Conveyor/FFmpeg = {ratio:.3f} best-to-best, {paired:.3f} median of the rounds' pairs "
            f"(target ≤ 1.1); best {best_ours:.2f} s vs {best_direct:.2f} s ({best_ours - best_direct:+.2f} s per "
            f"job); output {_describe(outputs)}"
        )
    console.print(table)
    console.print(
        f"render: two {clip_seconds:g} s 1280x720 clips with a {TRANSITION_S:g} s fade, a title and a logo, to "
        f"1280x720 H.264; transcode: a {transcode_seconds:g} s 1280x720 clip to H.264 480p; {rounds} rounds"
    )
    for note in notes:
        console.print(note)
    console.print(
        f"render+transcode worker with its FFmpeg, peak: USS {peak_uss / 2**20:.0f} MiB (RSS {peak / 2**20:.0f} MiB)"
    )
    speech = Table("model", "device", "audio s", "seconds per round", "best RTF", "WER", title="captions (Whisper)")
    for size, times, duration, wer, device in captions:
        speech.add_row(size, device, f"{duration:.1f}", _seconds(times), f"{min(times) / duration:.3f}", f"{wer:.1%}")
    console.print(speech)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-seconds", type=float, default=20.0)
    parser.add_argument("--transcode-seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.clip_seconds, args.transcode_seconds, args.rounds))
