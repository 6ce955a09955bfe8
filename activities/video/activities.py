"""The video pipeline's activities: render, preview, caption and transcode (seed 004's tasks), plus bookkeeping.

Every step runs its blocking work (FFmpeg, Whisper) through :func:`conveyor.heartbeat.run_blocking`, heartbeating
the latest progress every second; a cancellation or a lost heartbeat sets a ``threading.Event`` that terminates
FFmpeg and removes its partial output. Work happens in a per-attempt folder under the video working folder that
is removed when the step ends; results are moved into the blob store under ``videos/<video id>/`` and recorded
on the job row (live percent, fps and ETA about once a second while it runs).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.video import contract
from activities.video.captions import AnyCaptioner, normalize_srt
from activities.video.checks import resolve_timeline, stored_media
from activities.video.contract import CAPTION_QUEUE, PREVIEW_QUEUE, RENDER_QUEUE, TRANSCODE_QUEUE
from activities.video.ffmpeg import FfmpegProgress, MediaInfo, probe, run_ffmpeg
from activities.video.models import Video, VideoJob
from activities.video.preview import make_preview
from activities.video.render import SourceMedia, plan_render, plan_speech_track
from activities.video.schemas import (
    CaptionRun,
    PreviewRun,
    ProbeRequest,
    ProbeResult,
    RenderRun,
    StepOutcome,
    TranscodeRun,
)
from activities.video.timeline import Timeline, check_timeline
from activities.video.transcode import plan_transcode
from conveyor.errors import BadInput, Cancelled, NotFound
from conveyor.heartbeat import ProgressBox, run_blocking
from conveyor.logging import get_logger
from conveyor.records import row_writer
from conveyor.runs import RunStatus
from conveyor.settings import Settings
from conveyor.storage import BlobStore

log = get_logger(__name__)

#: How often a running step writes its progress to the job row, and heartbeats it to Temporal.
PROGRESS_INTERVAL_S = 1.0


def _progress_detail(stage: str, update: FfmpegProgress | None = None, percent: float | None = None) -> dict[str, Any]:
    if update is None:
        return {"stage": stage, "percent": round(percent or 0.0, 1), "fps": None, "eta_s": None}
    return {
        "stage": stage,
        "percent": round(update.percent if percent is None else percent, 1),
        "fps": round(update.fps, 1) if update.fps else None,
        "eta_s": round(update.eta_s, 1) if update.eta_s is not None else None,
        "out_time_s": round(update.out_time_s, 2),
    }


class VideoActivities:
    """Activities of the video workflows; a worker gives them the DB, the blob store, settings and Whisper."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        blobs: BlobStore,
        settings: Settings,
        captioner: Callable[[], AnyCaptioner],
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._settings = settings
        self._captioner = captioner

    # the seed's tasks -----------------------------------------------------------------------------------------

    @activity.defn(name=contract.RENDER)
    async def render(self, run: RenderRun) -> StepOutcome:
        """Render a timeline to one file (queue ``render``, 1 h) and make it the video's file."""
        timeline = check_timeline(run.timeline)
        async with self._sessions.begin() as session:
            video = await self._video(session, run.video_id)
            sources = await resolve_timeline(session, video.user_id, timeline)
            video.set_status(RunStatus.RUNNING, stage="rendering")

        def work(folder: Path, cancel: threading.Event, report: Callable[[dict[str, Any]], None]) -> StepOutcome:
            clips = [
                self._source(key, folder, f"clip {i}", sources.media) for i, key in enumerate(sources.clips, start=1)
            ]
            logo = self._local(sources.logo, folder) if sources.logo else None
            music = self._source(sources.music, folder, "background audio", sources.media) if sources.music else None
            subtitles_key = run.subtitles_key or sources.subtitles
            subtitles = self._subtitles(timeline, subtitles_key, folder)
            output = folder / f"render.{timeline.output.container}"
            plan = plan_render(timeline, clips, output, logo=logo, music=music, subtitles=subtitles)
            key = f"videos/{run.video_id}/render.{timeline.output.container}"
            outputs = self._encode(plan.args, output, plan.duration_s, key, "rendering", report, cancel)
            if subtitles_key:
                outputs["subtitles"] = subtitles_key
            if plan.encoder is not None:
                outputs["encoder_reason"] = plan.encoder.reason
            encoder = plan.encoder.encoder if plan.encoder else None
            return StepOutcome(job_id=run.job_id, kind="render", outputs=outputs, encoder=encoder)

        outcome = await self._step(run.job_id, work)
        async with self._sessions.begin() as session:
            video = await self._video(session, run.video_id)
            _apply_media(video, outcome.outputs)
            video.blob_key = str(outcome.outputs["file"])
            video.filename = Path(video.blob_key).name
            video.set_status(RunStatus.COMPLETED, stage="rendered")
        return outcome

    @activity.defn(name=contract.PREVIEW)
    async def preview(self, run: PreviewRun) -> StepOutcome:
        """Frames at even intervals and a contact sheet (queue ``preview``, 5 min)."""
        key = await self._ready_file(run.video_id)

        def work(folder: Path, cancel: threading.Event, report: Callable[[dict[str, Any]], None]) -> StepOutcome:
            source = self._local(key, folder)
            result = make_preview(
                source,
                folder / "preview",
                count=run.params.frames,
                width=run.params.width,
                columns=run.params.columns,
                max_bytes=self._settings.video_max_output_bytes,
                on_progress=lambda p: report(_progress_detail("frames", p)),
                cancel=cancel,
            )
            prefix = f"videos/{run.video_id}/preview/{run.job_id}"
            frames = []
            for frame in result.frames:
                frames.append(f"{prefix}/{frame.name}")
                self._blobs.move_file(frames[-1], frame)
            sheet = f"{prefix}/sheet.jpg"
            self._blobs.move_file(sheet, result.sheet)
            outputs = {"sheet": sheet, "frames": frames, "times_s": result.times_s, "columns": result.columns}
            return StepOutcome(job_id=run.job_id, kind="preview", outputs={**outputs, "rows": result.rows})

        return await self._step(run.job_id, work)

    @activity.defn(name=contract.CAPTION)
    async def caption(self, run: CaptionRun) -> StepOutcome:
        """Speech to SRT with Whisper (queue ``caption``, 15 min): of the video, or of a timeline's speech track."""
        timeline = check_timeline(run.timeline) if run.timeline is not None else None
        async with self._sessions.begin() as session:
            video = await self._video(session, run.video_id)
            sources = await resolve_timeline(session, video.user_id, timeline) if timeline else None
        key, known = (None, None) if timeline else await self._ready_video(run.video_id)

        def work(folder: Path, cancel: threading.Event, report: Callable[[dict[str, Any]], None]) -> StepOutcome:
            if timeline is not None and sources is not None:
                clips = [
                    self._source(k, folder, f"clip {i}", sources.media) for i, k in enumerate(sources.clips, start=1)
                ]
                speech = folder / "speech.wav"
                plan = plan_render(timeline, clips, speech, speech_only=True)
            else:
                source = self._local(key or "", folder)
                speech = folder / "speech.wav"
                plan = plan_speech_track(SourceMedia(source, known or probe(source)), speech)
            report(_progress_detail("speech track"))
            run_ffmpeg(
                plan.args,
                output=speech,
                duration_s=plan.duration_s,
                max_bytes=self._settings.video_max_output_bytes,
                cancel=cancel,
            )
            media, duration = speech, plan.duration_s
            captioner = self._captioner()

            def progress(percent: float) -> None:
                if cancel.is_set():
                    raise Cancelled("captioning stopped: the job was cancelled", code="CANCELLED")
                report(_progress_detail("transcribing", percent=percent))

            report(_progress_detail("transcribing"))
            result = captioner.caption(
                media,
                model_size=run.params.model_size,
                language=run.params.language,
                duration_s=duration,
                on_progress=progress,
            )
            srt_key = f"videos/{run.video_id}/captions/{run.job_id}.srt"
            self._blobs.put_bytes(srt_key, result.srt.encode("utf-8"), "application/x-subrip")
            outputs = {
                "srt": srt_key,
                "language": result.language,
                "language_probability": round(result.language_probability, 3),
                "segments": result.segments,
                "model": result.model,
                "device": result.device,
                "duration_s": round(duration, 3),
            }
            return StepOutcome(job_id=run.job_id, kind="caption", outputs=outputs, encoder=f"whisper {result.model}")

        return await self._step(run.job_id, work)

    @activity.defn(name=contract.TRANSCODE)
    async def transcode(self, run: TranscodeRun) -> StepOutcome:
        """One variant in another codec/container/size (queue ``transcode``, 30 min)."""
        key, known = await self._ready_video(run.video_id)

        def work(folder: Path, cancel: threading.Event, report: Callable[[dict[str, Any]], None]) -> StepOutcome:
            source = self._local(key, folder)
            info = known or probe(source)  # uploads and renders were probed when they were stored
            if info.video is None:
                raise BadInput(f"{Path(key).name} has no video stream to transcode", code="NO_VIDEO")
            output = folder / f"variant.{run.spec.container}"
            plan = plan_transcode(source, output, run.spec, has_audio=info.has_audio)
            target = f"videos/{run.video_id}/transcode/{run.job_id}.{run.spec.container}"
            outputs = self._encode(plan.args, output, info.duration_s, target, "encoding", report, cancel)
            outputs.update(container=run.spec.container, encoder_reason=plan.encoder.reason)
            return StepOutcome(job_id=run.job_id, kind="transcode", outputs=outputs, encoder=plan.encoder.encoder)

        return await self._step(run.job_id, work)

    @activity.defn(name=contract.PROBE_UPLOAD)
    async def probe_upload(self, request: ProbeRequest) -> ProbeResult:
        """Read every packet of an uploaded file (a truncated or disguised file is BadInput naming it)."""
        if not self._blobs.exists(request.key):
            raise BadInput(f"blob key {request.key!r} does not exist", code="FILE_NOT_FOUND")
        with tempfile.TemporaryDirectory(prefix="conveyor-probe-") as tmp:
            local = self._local(request.key, Path(tmp))
            info = await run_blocking(lambda: probe(local, name=request.filename, verify=True))
        audio = next((st for st in info.streams if st.kind == "audio"), None)
        video = info.video
        return ProbeResult(
            duration_s=round(info.duration_s, 3) if info.duration_s else None,
            width=video.width if video else None,
            height=video.height if video else None,
            video_codec=video.codec if video else None,
            audio_codec=audio.codec if audio else None,
            fps=video.fps if video and video.fps else None,
        )

    # shared machinery -----------------------------------------------------------------------------------------

    async def _step(
        self,
        job_id: str,
        work: Callable[[Path, threading.Event, Callable[[dict[str, Any]], None]], StepOutcome],
    ) -> StepOutcome:
        """Run one step: job ``running``, blocking work with heartbeats and live progress, job ``completed``."""
        info = activity.info()
        async with self._sessions.begin() as session:
            job = await session.get(VideoJob, job_id)
            if job is None:
                raise NotFound(f"video job {job_id} not found", code="JOB_NOT_FOUND")
            job.set_status(RunStatus.RUNNING, stage="starting")
            job.attempt = info.attempt
            job.progress = 0.0
        folder = self._settings.video_temp_dir_resolved / job_id
        shutil.rmtree(folder, ignore_errors=True)  # a killed earlier attempt's leftovers
        folder.mkdir(parents=True, exist_ok=True)
        box = ProgressBox(_progress_detail("starting"))
        cancel = threading.Event()
        started = time.monotonic()
        try:
            outcome = await run_blocking(
                lambda: work(folder, cancel, box.set),
                progress=box,
                write=row_writer(self._sessions, contract.JOB_TABLE, job_id, _job_columns),
                on_cancel=cancel.set,
                interval=PROGRESS_INTERVAL_S,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        outcome = outcome.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
        async with self._sessions.begin() as session:
            job = await session.get(VideoJob, job_id)
            if job is not None:
                job.set_status(RunStatus.COMPLETED, stage="done")
                job.eta_s = 0.0
                job.outputs = {**outcome.outputs, "seconds": outcome.seconds}
                job.encoder = outcome.encoder
                reason = outcome.outputs.get("encoder_reason")
                job.encoder_reason = str(reason) if reason else None
        log.info("video step done", job_id=job_id, kind=outcome.kind, seconds=outcome.seconds)
        return outcome

    async def _video(self, session: AsyncSession, video_id: str) -> Video:
        video = await session.get(Video, video_id)
        if video is None:
            raise NotFound(f"video {video_id} not found", code="VIDEO_NOT_FOUND")
        return video

    async def _ready_file(self, video_id: str) -> str:
        """The blob key of a video that has its file (an upload, or a finished render)."""
        return (await self._ready_video(video_id))[0]

    async def _ready_video(self, video_id: str) -> tuple[str, MediaInfo | None]:
        """The blob key of a video that has its file, and its probed facts when the row has them."""
        async with self._sessions.begin() as session:
            video = await self._video(session, video_id)
            if video.status != RunStatus.COMPLETED or not video.blob_key:
                raise BadInput(f"video {video_id} has no file yet (status {video.status})", code="VIDEO_NOT_READY")
            return video.blob_key, stored_media(video)

    def _encode(
        self,
        args: list[str],
        output: Path,
        duration_s: float,
        key: str,
        stage: str,
        report: Callable[[dict[str, Any]], None],
        cancel: threading.Event,
    ) -> dict[str, Any]:
        """Run FFmpeg reporting its progress, move the result into the blob store under ``key``, describe it."""
        report(_progress_detail(stage))
        run_ffmpeg(
            args,
            output=output,
            duration_s=duration_s,
            max_bytes=self._settings.video_max_output_bytes,
            on_progress=lambda p: report(_progress_detail(stage, p)),
            cancel=cancel,
        )
        info = probe(output)
        size = output.stat().st_size
        self._blobs.move_file(key, output)
        return {"file": key, "size_bytes": size, **_media_facts(info)}

    def _local(self, key: str, folder: Path) -> Path:
        """The blob as a file here: the store's own file when local, else downloaded into the work folder."""
        if not self._blobs.exists(key):
            raise BadInput(f"blob key {key!r} does not exist", code="CLIP_NOT_FOUND")
        local = self._blobs.local_path(key)
        if local is not None:
            return local
        target = folder / "inputs" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        return self._blobs.download(key, target)

    def _source(self, key: str, folder: Path, what: str, known: dict[str, MediaInfo]) -> SourceMedia:
        path = self._local(key, folder)
        return SourceMedia(path=path, info=known.get(key) or probe(path, name=f"{what} ({Path(key).name})"))

    def _subtitles(self, timeline: Timeline, key: str | None, folder: Path) -> Path | None:
        """The SRT file to burn in (inline text, an uploaded file, or the caption step's output), rewritten from its
        cues so FFmpeg's ``subtitles`` filter only ever reads an SRT Conveyor wrote."""
        if key is not None:
            text = self._local(key, folder).read_text(encoding="utf-8-sig", errors="replace")
        elif timeline.subtitles is not None and timeline.subtitles.srt:
            text = timeline.subtitles.srt
        else:
            return None
        path = folder / "subtitles.srt"
        path.write_text(normalize_srt(text), encoding="utf-8")
        return path


def _job_columns(detail: dict[str, Any]) -> dict[str, Any]:
    """A running step's heartbeat detail as its job row's columns (GET /api/videos/{id} moves with it)."""
    return {
        "progress": min(99.9, float(detail.get("percent") or 0.0)),
        "stage": detail.get("stage"),
        "fps": detail.get("fps"),
        "eta_s": detail.get("eta_s"),
    }


def _media_facts(info: MediaInfo) -> dict[str, Any]:
    video = info.video
    audio = next((s for s in info.streams if s.kind == "audio"), None)
    return {
        "duration_s": round(info.duration_s, 3),
        "format": info.format_name,
        "width": video.width if video else None,
        "height": video.height if video else None,
        "fps": video.fps if video else None,
        "video_codec": video.codec if video else None,
        "audio_codec": audio.codec if audio else None,
    }


def _apply_media(video: Video, facts: dict[str, Any]) -> None:
    """Copy a probe's facts onto a video row."""
    video.duration_s = facts.get("duration_s")
    video.width = facts.get("width")
    video.height = facts.get("height")
    video.video_codec = facts.get("video_codec")
    video.audio_codec = facts.get("audio_codec")
    video.size_bytes = int(facts.get("size_bytes") or 0)


def video_activities(acts: VideoActivities, queue: str) -> list[Callable[..., Any]]:
    """The activities a video queue serves (bookkeeping runs where the workflows run: ``render``)."""
    by_queue: dict[str, list[Callable[..., Any]]] = {
        RENDER_QUEUE: [acts.render],
        PREVIEW_QUEUE: [acts.preview, acts.probe_upload],
        CAPTION_QUEUE: [acts.caption],
        TRANSCODE_QUEUE: [acts.transcode],
    }
    return by_queue[queue]
