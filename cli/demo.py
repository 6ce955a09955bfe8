"""``conveyor demo``: run every implemented pipeline on bundled samples against a running (or started) stack."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table
from sqlalchemy import select
from temporalio.client import Client

from cli.output import console, emit_json, fail
from conveyor.errors import ConveyorError, ExternalServiceError
from conveyor.logging import configure_logging
from conveyor.settings import Settings, get_settings

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
DEMO_USER = "demo"
DEMO_CREDITS = 500
STACK_START_TIMEOUT_S = 180.0


@dataclass
class DemoRun:
    """One pipeline run of the demo, as the summary table shows it."""

    pipeline: str
    workflow_id: str
    status: str
    seconds: float
    outputs: str
    link: str


@dataclass
class DemoContext:
    """What each pipeline's demo gets: settings, an API client with a key, and a Temporal client."""

    settings: Settings
    http: httpx.AsyncClient
    client: Client
    show: bool


DemoFn = Callable[[DemoContext], Awaitable[list[DemoRun]]]


async def _analysis_demo(ctx: DemoContext) -> list[DemoRun]:
    """Profile (with drift), clean and master the bundled analysis samples through the HTTP API."""
    from cli.watch import Watched, watch

    folder = SAMPLES / "analysis"
    jobs = [
        ("profile-my-data", ["orders_2024.csv", "orders_2025.csv"]),
        ("clean-my-data", ["customers.csv"]),
        ("master-my-data", ["customers.csv", "customers_crm.csv"]),
        ("profile-my-data", ["sales_eu.csv"]),
    ]
    started: list[tuple[str, str, float]] = []
    for tool, names in jobs:
        files = [("files", (n, (folder / n).read_bytes(), "text/csv")) for n in names]
        created = await ctx.http.post("/api/tasks", data={"tool_id": tool}, files=files)
        created.raise_for_status()
        task_id = created.json()["task_id"]
        queued = await ctx.http.post(f"/api/tasks/{task_id}/process")
        queued.raise_for_status()
        started.append((task_id, queued.json()["workflow_id"], time.monotonic()))
    labels = [f"analysis {tool} ({', '.join(names)})"[:28] for tool, names in jobs]
    final = await watch(
        ctx.client, [Watched(wf, label) for (_, wf, _), label in zip(started, labels, strict=True)], show=ctx.show
    )
    runs = []
    for (task_id, wf, t0), (tool, _names) in zip(started, jobs, strict=True):
        task = (await ctx.http.get(f"/api/tasks/{task_id}")).json()
        status = final[wf]
        seconds = (
            (status.closed_at - status.started_at).total_seconds()
            if status.closed_at and status.started_at
            else time.monotonic() - t0
        )
        outputs = ", ".join(o["name"] for o in task["outputs"]) or (task.get("error_code") or "")
        runs.append(
            DemoRun(f"analysis: {tool}", wf, task["status"], seconds, outputs, ctx.settings.workflow_ui_url(wf))
        )
    return runs


async def _crawl_demo(ctx: DemoContext) -> list[DemoRun]:
    """Crawl the bundled sample site (served from this process) and show the bugs it planted and we found."""
    import json

    from cli.crawl import print_crawl
    from cli.sample_site import sample_site
    from cli.watch import Watched, watch

    manifest = json.loads((SAMPLES / "site" / "expected.json").read_text())
    with sample_site() as site:
        body = {"url": f"{site.url}/", "max_pages": 50, "max_depth": manifest["max_depth"]}
        body["slow_page_ms"] = manifest["slow_page_ms"]
        started = await ctx.http.post("/api/crawls", json=body)
        started.raise_for_status()
        session_id, wf = started.json()["session_id"], started.json()["workflow_id"]
        t0 = time.monotonic()
        final = (await watch(ctx.client, [Watched(wf, "crawl sample site")], show=ctx.show))[wf]
    crawl = (await ctx.http.get(f"/api/crawls/{session_id}")).json()
    bugs = (await ctx.http.get(f"/api/crawls/{session_id}/bugs", params={"limit": 500})).json()["items"]
    if ctx.show:
        crawl["bugs"] = [{**b, "ticket": (b["ticket"] or {}).get("key"), "pages": b["pages"]} for b in bugs]
        print_crawl(crawl)
    seconds = (
        (final.closed_at - final.started_at).total_seconds()
        if final.closed_at and final.started_at
        else time.monotonic() - t0
    )
    tickets = sum(1 for b in bugs if b["ticket"])
    summary = f"{crawl['pages_crawled']} pages, {len(bugs)} bugs of {len(manifest['bugs'])} planted, {tickets} tickets"
    return [DemoRun("crawl: sample site", wf, crawl["status"], seconds, summary, ctx.settings.workflow_ui_url(wf))]


DEMO_PERSONA = "franklin"
DEMO_QUESTION = "What did he pay too much for as a child?"


def _stage_persona(root: Path) -> None:
    """Copy the bundled persona into the data root the workers read (the API ingests from there)."""
    import shutil

    for part in ("data", "personas"):
        src = SAMPLES / "personas" / part / DEMO_PERSONA
        dest = root / part / DEMO_PERSONA
        if src.resolve() != dest.resolve():
            shutil.copytree(src, dest, dirs_exist_ok=True)


async def _persona_demo(ctx: DemoContext) -> list[DemoRun]:
    """Ingest the bundled persona (works, quotes, profile) and ask it a question."""
    from cli.watch import Watched, watch

    await asyncio.to_thread(_stage_persona, ctx.settings.persona_data_root_resolved)
    created = await ctx.http.post("/api/personas", json={"id": DEMO_PERSONA, "name": "Benjamin Franklin"})
    if created.status_code != 409:  # already there from an earlier demo: ingest again (adds nothing new)
        created.raise_for_status()
    started = await ctx.http.post(f"/api/personas/{DEMO_PERSONA}/ingest")
    started.raise_for_status()
    wf = started.json()["workflow_id"]
    t0 = time.monotonic()
    final = (await watch(ctx.client, [Watched(wf, "persona franklin")], show=ctx.show))[wf]
    persona = (await ctx.http.get(f"/api/personas/{DEMO_PERSONA}")).json()
    counts = ", ".join(f"{j['collection']} {j['total_vectors']}" for j in persona["jobs"])
    found = await ctx.http.post(f"/api/personas/{DEMO_PERSONA}/search", json={"query": DEMO_QUESTION, "k": 3})
    found.raise_for_status()
    passages = found.json()["passages"]
    if ctx.show and passages:
        table = Table("score", "collection", "source", "passage", title=f"persona search: {DEMO_QUESTION}")
        for p in passages:
            table.add_row(f"{p['score']:.3f}", p["collection"], p["source"], p["text"][:160])
        console.print(table)
    seconds = (
        (final.closed_at - final.started_at).total_seconds()
        if final.closed_at and final.started_at
        else time.monotonic() - t0
    )
    top = f"; top answer from {passages[0]['source']}" if passages else ""
    status = "completed" if persona["status"] == "active" else persona["status"]
    return [
        DemoRun("persona: franklin", wf, status, seconds, f"vectors: {counts}{top}", ctx.settings.workflow_ui_url(wf))
    ]


async def _video_demo(ctx: DemoContext) -> list[DemoRun]:
    """Render the bundled timeline (transition, title, logo, music, captions from its own speech), then a
    preview sheet and a WebM transcode, all in one workflow."""
    import json

    from cli.watch import Watched, watch

    folder = SAMPLES / "video"
    timeline = json.loads((folder / "timeline.json").read_text())
    refs = [*timeline["clips"], *(timeline[k] for k in ("logo", "audio") if timeline.get(k))]
    uploaded: dict[str, str] = {}
    for ref in refs:
        name = Path(ref["key"]).name
        if name not in uploaded:
            sent = await ctx.http.post("/api/videos/upload", files={"file": (name, (folder / name).read_bytes())})
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
            out = job["outputs"]
            result = {
                "render": f"{out.get('width')}x{out.get('height')} {out.get('duration_s')} s {out.get('video_codec')}",
                "caption": f"language {out.get('language')}, {out.get('segments')} cues",
                "preview": f"{len(out.get('frames') or [])} frames + sheet",
                "transcode": f"{out.get('video_codec')} {out.get('container')} {out.get('width')}x{out.get('height')}",
            }[job["kind"]]
            detail = result if job["status"] == "completed" else f"{job['error_code']}: {job['error_message']}"
            table.add_row(job["kind"], job["status"], job["encoder"] or "", str(out.get("seconds", "")), detail)
        console.print(table)
    seconds = (
        (final.closed_at - final.started_at).total_seconds()
        if final.closed_at and final.started_at
        else time.monotonic() - t0
    )
    ok = all(j["status"] == "completed" for j in video["jobs"]) and video["status"] == "ready"
    render_out = jobs.get("render", {}).get("outputs", {})
    summary = (
        f"{render_out.get('duration_s')} s {render_out.get('width')}x{render_out.get('height')}, "
        f"captions {jobs.get('caption', {}).get('outputs', {}).get('segments')} cues, sheet, webm"
    )
    status = "completed" if ok else video["status"]
    return [DemoRun("video: bakery render", wf, status, seconds, summary, ctx.settings.workflow_ui_url(wf))]


#: Every implemented pipeline's demo; pipelines add theirs here.
DEMOS: list[tuple[str, DemoFn]] = [
    ("analysis", _analysis_demo),
    ("crawl", _crawl_demo),
    ("persona", _persona_demo),
    ("video", _video_demo),
]


async def _demo_key(settings: Settings) -> str:
    """An API key of the demo user (created, and topped up to the demo's credits, as needed)."""
    from conveyor import credits
    from conveyor.auth import add_key, create_user
    from conveyor.db import create_engine, migrate, session_factory
    from conveyor.models import User

    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    try:
        async with session_factory(engine).begin() as session:
            user = await session.scalar(select(User).where(User.name == DEMO_USER))
            if user is None:
                user, key = await create_user(session, DEMO_USER, DEMO_CREDITS)
                return key
            if user.credits < DEMO_CREDITS:
                await credits.grant(
                    session, user, DEMO_CREDITS - user.credits, reason="demo top-up", key=f"demo:{uuid.uuid4()}"
                )
            return await add_key(session, user)
    finally:
        await engine.dispose()


async def _api_answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2.0) as http:
        try:
            await http.get(f"{url}/api/health")
            return True
        except httpx.TransportError:
            return False


async def _ensure_stack(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Use a running stack, or start ``conveyor up`` in the background; returns the process we started."""
    from cli.stack import wait_for_api

    proc = None
    if not await _api_answers(settings.api_url):
        logs = settings.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "up.log").open("ab") as out:
            proc = subprocess.Popen(  # noqa: ASYNC220 - starts a background process; nothing waits on it here
                [sys.executable, "-m", "cli", "up", "--json"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        console.print(f"starting the stack in the background (logs: {logs / 'up.log'}) …")
    if not await wait_for_api(settings.api_url, STACK_START_TIMEOUT_S, healthy=True):
        if proc is not None:
            _stop(proc)
        raise ExternalServiceError(
            f"the stack at {settings.api_url} did not become healthy; see {settings.var_dir / 'logs'}",
            code="STACK_UNHEALTHY",
        )
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run_demo(settings: Settings, *, keep_running: bool, show: bool) -> list[DemoRun]:
    """Run every pipeline's demo and return the runs."""
    from conveyor.temporal import connect

    proc = await _ensure_stack(settings)
    try:
        key = await _demo_key(settings)
        client = await connect(settings)
        runs: list[DemoRun] = []
        async with httpx.AsyncClient(base_url=settings.api_url, headers={"X-API-Key": key}, timeout=60) as http:
            for _name, fn in DEMOS:
                runs += await fn(DemoContext(settings, http, client, show))
        return runs
    finally:
        if proc is not None and not keep_running:
            _stop(proc)


def _summary(runs: list[DemoRun], stopped: bool) -> None:
    table = Table("pipeline", "workflow id", "status", "seconds", "key outputs", "Web UI", title="Conveyor demo")
    for r in runs:
        colour = "green" if r.status == "completed" else "red"
        table.add_row(
            r.pipeline, r.workflow_id, f"[{colour}]{r.status}[/{colour}]", f"{r.seconds:.1f}", r.outputs, r.link
        )
    console.print(table)
    if stopped:
        console.print("The stack was stopped; `conveyor up` brings it back with all history for the links above.")


def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave a stack the demo started running.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run every implemented pipeline on bundled samples, with live progress and a summary table."""
    settings = get_settings()
    configure_logging(settings)
    try:
        started_here = not asyncio.run(_api_answers(settings.api_url))
        runs = asyncio.run(run_demo(settings, keep_running=keep_running, show=not as_json))
    except ConveyorError as err:
        fail(err, as_json=as_json)
    except httpx.HTTPStatusError as err:
        fail(
            ExternalServiceError(f"the API answered {err.response.status_code}: {err.response.text[:300]}"),
            as_json=as_json,
        )
    if as_json:
        emit_json([r.__dict__ for r in runs])
    else:
        _summary(runs, stopped=started_here and not keep_running)
    if not runs or any(r.status != "completed" for r in runs):
        raise typer.Exit(1)


__all__ = ["DEMOS", "DemoContext", "DemoRun", "demo"]
