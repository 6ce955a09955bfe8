"""``conveyor video render|preview|transcode|caption``: video jobs with a live bar per job (percent, fps, ETA).

Files named on the command line (and local paths in a timeline, relative to the timeline file) are uploaded
first; a video id of an earlier upload or render can be given instead of a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from temporalio.client import WorkflowFailureError

from api.caller import Caller
from cli.context import Cli, DemoContext, DemoRun, cli_context, cli_settings, run_command
from cli.output import console, emit_json, job_bars
from conveyor.errors import BadInput
from conveyor.settings import Settings
from conveyor.storage import blob_store_from_url

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "video"

video_app = typer.Typer(
    help="Videos: render timelines, preview frames, transcode, caption (FFmpeg and Whisper).", no_args_is_help=True
)
POLL_S = 0.3
FINAL = ("completed", "failed", "cancelled")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA –"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"ETA {minutes}:{secs:02d}"


async def _upload_file(caller: Caller, path: Path) -> Any:
    """Upload a local file; returns its video row."""
    from api.services import video as service

    stream = await asyncio.to_thread(path.open, "rb")
    with stream:
        return await service.upload(caller, filename=path.name, stream=stream)


async def _local_keys(caller: Caller, timeline: dict[str, Any], base: Path) -> None:
    """Upload every timeline reference that names a local file and use its key (each file uploaded once).

    A reference is looked for relative to the timeline's folder ``base``, then as a file of that name in it, then
    relative to the current folder: ``samples/video/intro.mp4`` in ``samples/video/timeline.json`` works from the
    repository root and from anywhere else.
    """
    from sqlalchemy import select

    from activities.video.models import Video

    uploaded: dict[Path, str] = {}

    def local_file(key: str) -> Path | None:
        for candidate in (base / key, base / Path(key).name, Path(key)):
            if candidate.is_file():
                return candidate.resolve()
        return None

    async def swap(ref: dict[str, Any]) -> None:
        key = ref.get("key")
        if not isinstance(key, str):
            return
        owned = await caller.session.scalar(
            select(Video.id).where(Video.blob_key == key, Video.user_id == caller.user.id).limit(1)
        )
        if owned is not None:
            return
        path = await asyncio.to_thread(local_file, key)
        if path is None:
            return
        if path not in uploaded:
            uploaded[path] = str((await _upload_file(caller, path)).blob_key)
        ref["key"] = uploaded[path]

    for clip in timeline.get("clips") or []:
        if isinstance(clip, dict):
            await swap(clip)
    for name in ("logo", "audio", "subtitles"):
        if isinstance(timeline.get(name), dict):
            await swap(timeline[name])


async def _video_id(caller: Caller, target: str) -> str:
    """A video id: the one given, or a new upload of the file given."""
    from activities.video.models import Video

    path = Path(target)
    if await asyncio.to_thread(path.is_file):
        return str((await _upload_file(caller, path)).id)
    video = await caller.session.get(Video, target)
    if video is None or video.user_id != caller.user.id:
        raise BadInput(f"{target}: no such file or video id", code="MEDIA_NOT_FOUND")
    return video.id


def load_timeline(path: Path) -> tuple[dict[str, Any], Path]:
    """A timeline file's JSON object and the folder its relative paths start from."""
    try:
        timeline = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BadInput(f"{path}: file not found", code="TIMELINE_NOT_FOUND") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadInput(f"{path} is not JSON: {err}", code="BAD_TIMELINE") from err
    if not isinstance(timeline, dict):
        raise BadInput(f"{path} must hold a JSON object", code="BAD_TIMELINE")
    return timeline, path.resolve().parent


async def run_video(
    settings: Settings,
    action: str,
    target: str,
    params: dict[str, Any],
    *,
    user_name: str | None,
    show: bool,
    wait: bool,
) -> dict[str, Any]:
    """Start a video action (render, preview, transcode, caption), follow its jobs, return the video."""
    from activities.video.checks import check_step
    from activities.video.models import JobKind
    from activities.video.timeline import check_timeline
    from api.routes.video import video_out
    from api.services import video as service

    if action == "render":
        timeline, base = await asyncio.to_thread(load_timeline, Path(target))
        check_timeline(timeline)  # a bad timeline is refused before anything is uploaded
    else:
        check_step(JobKind(action), params)  # e.g. H.265 in WebM, before anything is uploaded
    async with cli_context(settings, user_name) as cli:
        async with cli.caller() as caller:
            if action == "render":
                await _local_keys(caller, timeline, base)
                started = await service.start_render(caller, timeline_raw=timeline, **params)
            else:
                video_id = await _video_id(caller, target)
                started = await service.start_step(caller, video_id, JobKind(action), params)
        if wait:
            await _follow(cli, started, show=show)
        async with cli.caller() as caller:
            video = await service.get_video(caller, started.video.id)
            jobs = await service.jobs_of(caller, video)
            out = video_out(video, settings, [j for j in jobs if j.id in started.jobs]).model_dump(mode="json")
            out["workflow_id"] = started.workflow_id
            out["workflow_url"] = settings.workflow_ui_url(started.workflow_id)
            return out


async def _follow(cli: Cli, started: Any, *, show: bool) -> None:
    """Bars per job from the job rows until the workflow ends."""
    from activities.video.models import VideoJob

    sessions = cli.sessions
    handle = cli.client.get_workflow_handle(started.workflow_id)
    with job_bars(show=show) as bars:
        ids = {j: bars.add_task(k, total=100, label=k, detail="queued") for j, k in started.jobs.items()}
        waiter = asyncio.ensure_future(handle.result())
        while True:
            async with sessions() as session:
                for job_id, task in ids.items():
                    job = await session.get(VideoJob, job_id)
                    if job is None:
                        continue
                    fps = f"{job.fps:.0f} fps · " if job.fps else ""
                    detail = job.status if job.status in FINAL else f"{job.status} · {fps}{_eta(job.eta_s)}"
                    bars.update(task, completed=job.progress, detail=detail)
            if waiter.done():
                break
            await asyncio.wait([waiter], timeout=POLL_S)
        with contextlib.suppress(WorkflowFailureError):  # the job rows carry the outcome shown below
            waiter.result()


def _local_outputs(result: dict[str, Any], settings: Settings, out_dir: Path | None) -> None:
    """Give each job ``local_outputs`` (download name -> local file): copied into ``out_dir`` when given, else the
    blob store's own files (a local store only)."""
    blobs = blob_store_from_url(settings.blob_url_resolved, s3_endpoint_url=settings.s3_endpoint_url)
    for job in result["jobs"]:
        local_outputs: dict[str, str] = {}
        for name, url in job["downloads"].items():
            key = url.split("/files/", 1)[1]
            local = blobs.local_path(key) if blobs.exists(key) else None
            if local is None:
                continue
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                local = Path(shutil.copy2(local, out_dir / local.name))
            local_outputs[name] = str(local)
        job["local_outputs"] = local_outputs


def _print(result: dict[str, Any]) -> None:
    colour = {"completed": "green", "failed": "red"}.get(result["status"], "yellow")
    console.print(f"video [bold]{result['video_id']}[/bold]: [{colour}]{result['status']}[/{colour}]")
    console.print(f"  workflow {result['workflow_url']}")
    table = Table("job", "status", "encoder", "took", "outputs / error")
    for job in result["jobs"]:
        local = job.get("local_outputs", {})
        files = [f"{name}: {local.get(name) or url.split('/files/', 1)[1]}" for name, url in job["downloads"].items()]
        facts = job["outputs"]
        if job["kind"] == "caption" and "language" in facts:
            files.insert(0, f"language {facts['language']} · {facts['segments']} cues · {facts['model']}")
        took = f"{facts['seconds']:.1f} s" if "seconds" in facts else ""
        detail = "\n".join(files) if job["status"] == "completed" else f"{job['error_code']}: {job['error_message']}"
        table.add_row(job["kind"], job["status"], job["encoder"] or "", took, detail)
    console.print(table)


UserOpt = Annotated[str | None, typer.Option("--user", help="Act as this user (default: the local user).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the jobs until they end.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Copy the outputs into this folder.")]


def _run(
    action: str, target: str, params: dict[str, Any], user: str | None, as_json: bool, wait: bool, out: Path | None
) -> None:
    settings = cli_settings()
    run = run_video(settings, action, target, params, user_name=user, show=not as_json and wait, wait=wait)
    result = run_command(run, as_json=as_json)
    _local_outputs(result, settings, out)
    if as_json:
        emit_json(result)
    else:
        _print(result)
    if wait and any(j["status"] != "completed" for j in result["jobs"]):
        raise typer.Exit(1)


def _variant(text: str) -> dict[str, Any]:
    codec, _, container = text.partition(":")
    return {"codec": codec, "container": container or "mp4"}


@video_app.command("render")
def render(
    timeline: Annotated[Path, typer.Argument(help="Timeline JSON (local paths in it are uploaded).")],
    title: Annotated[str, typer.Option(help="Title of the video.")] = "",
    frames: Annotated[int, typer.Option(min=0, max=100, help="Preview frames after the render (0: no preview).")] = 6,
    caption: Annotated[bool, typer.Option("--caption/--no-caption", help="Caption the result.")] = True,
    transcode: Annotated[
        list[str] | None, typer.Option("--transcode", help="A variant as CODEC:CONTAINER, e.g. vp9:webm (repeat).")
    ] = None,
    out: OutOpt = None,
    wait: WaitOpt = True,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Render a timeline (clips, transitions, text, logo, subtitles, music), then preview/caption/transcode it."""
    from activities.video.schemas import CaptionParams, PreviewParams

    params: dict[str, Any] = {
        "title": title,
        "preview": PreviewParams(frames=frames) if frames > 0 else None,
        "caption": CaptionParams() if caption else None,
        "transcodes": [_variant(t) for t in transcode or []],
    }
    _run("render", str(timeline), params, user, as_json, wait, out)


@video_app.command("preview")
def preview(
    target: Annotated[str, typer.Argument(help="A video file, or the id of a video.")],
    frames: Annotated[int, typer.Option(min=1, max=100, help="Frames at even intervals (1-100).")] = 6,
    width: Annotated[int, typer.Option(min=32, max=1920, help="Frame width in pixels.")] = 320,
    out: OutOpt = None,
    wait: WaitOpt = True,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Preview frames and a contact sheet of a video."""
    _run("preview", target, {"frames": frames, "width": width}, user, as_json, wait, out)


@video_app.command("transcode")
def transcode(
    target: Annotated[str, typer.Argument(help="A video file, or the id of a video.")],
    codec: Annotated[str, typer.Option(help="h264, h265, vp9 or av1.")] = "h264",
    container: Annotated[str, typer.Option(help="mp4, webm or mkv.")] = "mp4",
    crf: Annotated[int | None, typer.Option(help="Constant quality (lower is better).")] = None,
    bitrate: Annotated[int | None, typer.Option(help="Target bitrate in kbit/s (instead of --crf).")] = None,
    width: Annotated[int | None, typer.Option(help="Scale to this width.")] = None,
    height: Annotated[int | None, typer.Option(help="Scale to this height.")] = None,
    out: OutOpt = None,
    wait: WaitOpt = True,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Transcode a video to another codec, container or size."""
    spec = {
        "codec": codec,
        "container": container,
        "crf": crf,
        "bitrate_kbps": bitrate,
        "width": width,
        "height": height,
    }
    _run("transcode", target, {k: v for k, v in spec.items() if v is not None}, user, as_json, wait, out)


@video_app.command("caption")
def caption_cmd(
    target: Annotated[str, typer.Argument(help="A video or audio file, or the id of a video.")],
    model: Annotated[str, typer.Option(help="auto (detect language), tiny.en or base.")] = "auto",
    language: Annotated[str | None, typer.Option(help="Language code; skips detection.")] = None,
    out: OutOpt = None,
    wait: WaitOpt = True,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """SRT captions of a video's speech with the detected language (Whisper)."""
    _run("caption", target, {"model_size": model, "language": language}, user, as_json, wait, out)


def register(app: typer.Typer) -> None:
    """Add ``conveyor video render|preview|transcode|caption``."""
    app.add_typer(video_app, name="video")


def _job_result(job: dict[str, Any]) -> str:
    out = job["outputs"]
    if job["status"] != "completed":
        return f"{job['error_code']}: {job['error_message']}"
    return {
        "render": f"{out.get('width')}x{out.get('height')} {out.get('duration_s')} s {out.get('video_codec')}",
        "caption": f"language {out.get('language')}, {out.get('segments')} cues",
        "preview": f"{len(out.get('frames') or [])} frames + sheet",
        "transcode": f"{out.get('video_codec')} {out.get('container')} {out.get('width')}x{out.get('height')}",
    }[job["kind"]]


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """Render the bundled timeline (transition, title, logo, music, captions from its own speech), then a
    preview sheet and a WebM transcode, all in one workflow."""
    from cli.watch import Watched, watch

    timeline = json.loads((SAMPLES / "timeline.json").read_text())
    refs = [*timeline["clips"], *(timeline[k] for k in ("logo", "audio") if timeline.get(k))]
    uploaded: dict[str, str] = {}
    for ref in refs:
        name = Path(ref["key"]).name
        if name not in uploaded:
            sent = await ctx.http.post("/api/videos/upload", files={"file": (name, (SAMPLES / name).read_bytes())})
            sent.raise_for_status()
            uploaded[name] = sent.json()["key"]
        ref["key"] = uploaded[name]
    body = {
        "timeline": timeline,
        "title": "Conveyor bakery",
        "preview": {"frames": 6},
        "transcodes": [{"codec": "vp9", "container": "webm", "width": 480}],
    }
    started = await ctx.http.post("/api/videos/render", json=body)
    started.raise_for_status()
    video_id, wf = started.json()["video_id"], started.json()["workflow_id"]
    t0 = time.monotonic()
    final = (await watch(ctx.client, [Watched(wf, "video render")], show=ctx.show))[wf]
    video = (await ctx.http.get(f"/api/videos/{video_id}")).json()
    jobs = {j["kind"]: j for j in video["jobs"]}
    if ctx.show:
        table = Table("job", "status", "encoder", "seconds", "result", title=f"video {video_id}")
        for job in video["jobs"]:
            seconds = str(job["outputs"].get("seconds", ""))
            table.add_row(job["kind"], job["status"], job["encoder"] or "", seconds, _job_result(job))
        console.print(table)
    ok = all(j["status"] == "completed" for j in video["jobs"]) and video["status"] == "completed"
    render_out = jobs.get("render", {}).get("outputs", {})
    summary = (
        f"{render_out.get('duration_s')} s {render_out.get('width')}x{render_out.get('height')}, "
        f"captions {jobs.get('caption', {}).get('outputs', {}).get('segments')} cues, sheet, webm"
    )
    return [ctx.run("video: bakery render", final, t0, "completed" if ok else video["status"], summary)]
