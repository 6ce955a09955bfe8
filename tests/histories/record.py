"""Record real workflow histories for the replay tests: ``python -m tests.histories.record [PIPELINE]…``.

Runs a completed, a failed and a cancelled run of each pipeline on the real dev server with the real activities
and saves each history as JSON beside this file (histories of runs started before the kernel's run lifecycle stay
in ``before-run-lifecycle/`` and keep replaying): ``analysis-*.json`` (AnalysisWorkflow) and ``crawl-*.json``
(CrawlSessionWorkflow on the bundled sample site, Chromium resolving nothing but 127.0.0.1), ``persona-*.json``
(PersonaIngestionWorkflow on the bundled corpus) and ``video-*.json`` (VideoJobWorkflow on the bundled timeline,
with FFmpeg and Whisper), ``attribution-*.json`` and ``chat-*.json`` (ConversationWorkflow with the local assistant,
Telegram a local fake, ending in an order and a summary that continues it as new; the continued run; and
ChatHealthWorkflow). Name a pipeline to
record only its histories; none records all. Re-record only when a workflow change is meant to be incompatible
(and then version the workflow with ``workflow.patched`` instead, if runs may be in flight).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from activities.crawl.schemas import CrawlConfig
from api.caller import Caller
from api.services import analysis as service
from api.services import crawl as crawl_service
from bench.datagen import write_messy_csv
from cli.sample_site import start_sample_site
from conveyor.auth import create_user
from conveyor.db import migrate
from conveyor.models import User
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.resources import WorkerResources, open_resources
from conveyor.settings import Settings
from tests.helpers import TEST_CHROMIUM_ARGS, free_port, start_dev_server
from workers.run import build_workers, executor_size, queues_of_groups

HERE = Path(__file__).parent
SAMPLES = HERE.parents[1] / "samples" / "analysis"
#: Small crawls keep the recorded files small.
CRAWL_MAX_PAGES = 8
PIPELINES = ("analysis", "crawl", "persona", "video", "attribution", "chat")
PERSONAS = HERE.parents[1] / "samples" / "personas"
VIDEOS = HERE.parents[1] / "samples" / "video"


@dataclass
class Stack:
    """A dev server with in-process workers, a temp database and blob folder."""

    client: Client
    resources: WorkerResources
    settings: Settings
    var: Path

    def caller(self, session: AsyncSession, user: User) -> Caller:
        """``user`` as the services' caller, on ``session``."""
        blobs = self.resources.blobs
        return Caller(user=user, session=session, client=self.client, blobs=blobs, settings=self.settings)


@asynccontextmanager
async def running_stack(pipeline: str, *, plain: bool = False, **settings_: Any) -> AsyncIterator[Stack]:
    """Start the dev server and workers for every queue of ``pipeline``; stop everything afterwards.

    ``plain`` records unencrypted payloads: the suite's key is made afresh per process, so only plain histories
    (which the encrypting converter still reads) replay in a later run. ``settings_`` are further settings.
    """
    if plain:
        from temporalio.contrib.pydantic import pydantic_data_converter

        from conveyor.temporal import start_ephemeral_server

        env = await start_ephemeral_server(pydantic_data_converter)
    else:
        env = await start_dev_server()
    try:
        with tempfile.TemporaryDirectory() as var:
            settings = Settings(
                var_dir=Path(var),
                temporal_address=env.client.service_client.config.target_host,
                chromium_args=TEST_CHROMIUM_ARGS,
                attribution_approval_timeout_h=0.003,  # an approval left alone expires in about 11 s
                **settings_,
            )
            await migrate(settings.database_url_resolved)
            async with open_resources(settings) as res:
                queues = queues_of_groups([pipeline])
                with concurrent.futures.ThreadPoolExecutor(max_workers=executor_size(queues)) as executor:
                    workers = build_workers(env.client, res, queues, executor)
                    runs = [asyncio.create_task(w.run()) for w in workers]
                    try:
                        yield Stack(env.client, res, settings, Path(var))
                    finally:
                        await asyncio.gather(*(w.shutdown() for w in workers))
                        await asyncio.gather(*runs, return_exceptions=True)
    finally:
        await env.shutdown()


async def _finish(handle: WorkflowHandle[object, object], path: Path) -> None:
    """Wait for the run to end (a failure is what some scenarios record) and save its history."""
    try:
        await handle.result()
    except WorkflowFailureError:
        pass  # failed and cancelled runs are what this records
    history = await handle.fetch_history()
    path.write_text(history.to_json())


async def _wait_for_progress(handle: WorkflowHandle[object, object], done: int) -> None:
    while (await handle.query(PROGRESS_QUERY, result_type=Progress)).done < done:
        await asyncio.sleep(0.05)


async def record_analysis() -> None:
    """A completed, a failed and a cancelled analysis task."""
    async with running_stack("analysis") as stack:
        res, settings = stack.resources, stack.settings
        async with res.sessions() as session:
            user, _ = await create_user(session, "recorder", 1000)
            await session.commit()
            big = stack.var / "big.csv"
            write_messy_csv(big, rows=20_000)
            scenarios = {
                "completed": ("profile-my-data", "orders_2024.csv", (SAMPLES / "orders_2024.csv").read_bytes()),
                "failed": ("profile-my-data", "header_only.csv", b"id,name\n"),
                "cancelled": ("clean-my-data", "big.csv", big.read_bytes()),
            }
            for outcome, (tool, name, data) in scenarios.items():
                task = await service.create_task(
                    session,
                    res.blobs,
                    settings,
                    user,
                    tool_id=tool,
                    agents=[],
                    params={},
                    files=[service.Upload(name, io.BytesIO(data))],
                )
                started = await service.process_task(stack.caller(session, user), task.task_id)
                handle = stack.client.get_workflow_handle(started.workflow_id)
                if outcome == "cancelled":
                    await _wait_for_progress(handle, 1)
                    await handle.cancel()
                await _finish(handle, HERE / f"analysis-{outcome}.json")


async def record_crawl() -> None:
    """A completed crawl of the sample site, one whose start URL is a closed port, and one cancelled mid-crawl."""
    site = start_sample_site()
    try:
        async with running_stack("crawl") as stack:
            async with stack.resources.sessions() as session:
                user, _ = await create_user(session, "crawl-recorder", 0)
                await session.commit()
                scenarios = {
                    "completed": f"{site.url}/",
                    "failed": f"http://127.0.0.1:{free_port()}/",
                    "cancelled": f"{site.url}/",
                }
                for outcome, url in scenarios.items():
                    config = CrawlConfig(url=url, max_pages=CRAWL_MAX_PAGES, slow_page_ms=2000)
                    crawl = await crawl_service.start_session(stack.caller(session, user), config)
                    assert crawl.workflow_id is not None
                    handle = stack.client.get_workflow_handle(crawl.workflow_id)
                    if outcome == "cancelled":
                        await _wait_for_progress(handle, 2)
                        await handle.cancel()
                    await _finish(handle, HERE / f"crawl-{outcome}.json")
    finally:
        site.stop()


def _stage_persona(folder: Path, extra_works: int) -> None:
    """The bundled persona in a persona's ``folder``, with ``extra_works`` copies of its works to make it longer."""
    from activities.persona.sources import stage_seed_layout

    stage_seed_layout(PERSONAS, "franklin", folder)
    works = folder / "works"
    for i in range(extra_works):
        for path in sorted(works.glob("the_*")):
            (works / f"copy{i}_{path.name}").write_text(path.read_text() + f"\n\nCopy {i}.")


async def record_persona() -> None:
    """A completed ingestion of the bundled persona, one whose folder is missing, and one cancelled mid-way."""
    from api.services import persona as persona_service

    async with running_stack("persona") as stack:
        from activities.persona.sources import persona_folder

        root = stack.settings.persona_data_root_resolved
        async with stack.resources.sessions() as session:
            user, _ = await create_user(session, "persona-recorder", 0)
            await session.commit()
            await asyncio.to_thread(_stage_persona, persona_folder(root, user.id, "rec-completed"), 0)
            await asyncio.to_thread(_stage_persona, persona_folder(root, user.id, "rec-cancelled"), 6)
            for outcome in ("completed", "failed", "cancelled"):
                persona_id = f"rec-{outcome}"
                await persona_service.create_persona(session, user, persona_id, persona_id, "")
                started = await persona_service.start_ingestion(stack.caller(session, user), persona_id)
                handle = stack.client.get_workflow_handle(started.workflow_id)
                if outcome == "cancelled":
                    await _wait_for_progress(handle, 1)  # the profile collection is done; works and quotes run
                    await handle.cancel()
                await _finish(handle, HERE / f"persona-{outcome}.json")


async def _upload_samples(stack: Stack, user: User, timeline: dict[str, Any]) -> dict[str, Any]:
    """The bundled timeline with fresh uploads of its files by ``user`` (every call uploads new copies)."""
    from api.services import video as video_service

    keys: dict[str, str] = {}
    for ref in [*timeline["clips"], *(timeline[k] for k in ("logo", "audio") if timeline.get(k))]:
        name = Path(ref["key"]).name
        if name not in keys:
            async with stack.resources.sessions() as session:
                with (VIDEOS / name).open("rb") as stream:
                    row = await video_service.upload(stack.caller(session, user), filename=name, stream=stream)
            keys[name] = row.blob_key or ""
        ref["key"] = keys[name]
    return timeline


async def _wait_for_ffmpeg(stack: Stack, job_id: str) -> None:
    """Until the job's FFmpeg has reported progress (the render is under way)."""
    from activities.video.models import VideoJob

    while True:
        async with stack.resources.sessions() as session:
            job = await session.get(VideoJob, job_id)
            if job is not None and job.progress > 0:
                return
        await asyncio.sleep(0.05)


async def record_video() -> None:
    """The bundled timeline rendered with captions from its speech, then preview and a transcode; a render whose
    clip's file left the blob store after its upload was checked; and a bigger render cancelled mid-way."""
    import json

    from activities.video.models import JobKind
    from activities.video.schemas import PreviewParams
    from api.services import video as video_service

    async with running_stack("video") as stack:
        async with stack.resources.sessions() as session:
            user, _ = await create_user(session, "video-recorder", 0)
            await session.commit()
        sample: dict[str, Any] = json.loads((VIDEOS / "timeline.json").read_text())
        small = {**sample["output"], "width": 320, "height": 180}
        for outcome in ("completed", "failed", "cancelled"):
            timeline = await _upload_samples(stack, user, json.loads(json.dumps(sample)))
            preview: PreviewParams | None = PreviewParams(frames=2, width=160)
            transcodes: list[dict[str, Any]] = []
            if outcome == "completed":  # caption (from_caption, before the render), render, preview, transcode
                timeline["output"] = small
                transcodes = [{"codec": "h264", "container": "mp4", "width": 160}]
            elif outcome == "failed":  # the render finds no file; the preview is skipped
                timeline["output"] = small
                del timeline["subtitles"]
                await asyncio.to_thread(stack.resources.blobs.delete, timeline["clips"][1]["key"])
            else:  # no captions: the render starts at once and is cancelled while FFmpeg runs
                timeline["output"] = {**sample["output"], "width": 1280, "height": 720, "crf": 18}
                del timeline["subtitles"]
            async with stack.resources.sessions() as session:
                started = await video_service.start_render(
                    stack.caller(session, user),
                    timeline_raw=timeline,
                    title=f"recorded {outcome}",
                    preview=preview,
                    transcodes=transcodes,
                )
            handle = stack.client.get_workflow_handle(started.workflow_id)
            if outcome == "cancelled":
                render_job = next(j for j, kind in started.jobs.items() if kind == JobKind.RENDER)
                await _wait_for_ffmpeg(stack, render_job)
                await handle.cancel()
            await _finish(handle, HERE / f"video-{outcome}.json")


#: Ads the recording makes critical: one approval is approved, one rejected, one left to expire.
TIRED_ADS = ("spring-static-03", "fitness-carousel-03", "spring-ugc-02")


async def _attribution_setup(stack: Stack) -> User:
    """The sample ads, two weeks of metrics (one saturating ad, one losing CTR with rising CPM) and the sample
    deliveries, accepted into the inbox and applied; the user that owns them."""
    import json as _json
    from datetime import UTC, datetime

    from activities.attribution import contract
    from activities.attribution.deliveries import parse_delivery
    from api.services import attribution as attribution_service
    from cli.attribution import DEMO_TIRED_AD, demo_metrics, read_deliveries

    samples = HERE.parents[1] / "samples" / "attribution"
    async with stack.resources.sessions() as session:
        user, _ = await create_user(session, "recorder", 10_000)
        await session.commit()
        caller = stack.caller(session, user)
        ads = [attribution_service.AdIn(**a) for a in _json.loads((samples / "ads.json").read_text())]
        await attribution_service.import_ads(caller, ads)
        await attribution_service.connect_portal(caller, 9001)
        today = datetime.now(UTC).date()
        tired = demo_metrics(today, [DEMO_TIRED_AD])  # the demo's saturating series, for three ads
        metrics = [m for m in demo_metrics(today, [a.ad_id for a in ads]) if m["ad_id"] not in TIRED_ADS]
        metrics += [{**m, "ad_id": ad} for ad in TIRED_ADS for m in tired]
        await attribution_service.record_metrics(caller, [attribution_service.MetricIn(**m) for m in metrics])
    inbox = attribution_service.Inbox(stack.resources.sessions, stack.settings)
    for body in read_deliveries(samples / "deliveries.jsonl"):
        await inbox.accept(parse_delivery(body))
    await attribution_service.wake_ingest(stack.client, stack.settings, 9001, user.id)
    handle = stack.client.get_workflow_handle(contract.ingest_workflow_id(9001))
    while (await handle.query(PROGRESS_QUERY, result_type=Progress)).done < 25:
        await asyncio.sleep(0.1)
    return user


async def record_attribution() -> None:
    """The portal's ingest and a campaign's sampler (running: they are long-lived), a fatigue run, an approval
    approved, one rejected and one that expired, a winner-index run and a similar-creative search."""
    from activities.attribution import contract
    from activities.attribution.schemas import Decision, FatigueReport, SignalDecision, SimilarRequest

    async with running_stack("attribution", plain=True) as stack:
        user = await _attribution_setup(stack)
        await _save_running(stack.client.get_workflow_handle(contract.ingest_workflow_id(9001)), "ingest")
        sampler = stack.client.get_workflow_handle(contract.sampler_workflow_id(user.id, "fitness-q1"))
        await _save_running(sampler, "sampler")
        fatigue = await stack.client.start_workflow(
            contract.FATIGUE_WORKFLOW,
            contract.ScheduledRun(),
            id="attribution-fatigue-record",
            task_queue=contract.FATIGUE_QUEUE,
            result_type=FatigueReport,
        )
        report = await fatigue.result()
        await _finish(fatigue, HERE / "attribution-fatigue.json")
        handles = {
            a.ad_id: stack.client.get_workflow_handle(contract.approval_workflow_id(a.approval_id))
            for a in report.approvals
        }
        assert sorted(handles) == sorted(TIRED_ADS), report
        approved, rejected, expired = (handles[ad] for ad in TIRED_ADS)
        await approved.execute_update(contract.DECIDE_UPDATE, Decision(approve=True, by="recorder"))
        await rejected.signal(contract.REJECT_SIGNAL, SignalDecision(by="recorder"))
        await _finish(approved, HERE / "attribution-approval-approved.json")
        await _finish(rejected, HERE / "attribution-approval-rejected.json")
        await _finish(expired, HERE / "attribution-approval-expired.json")  # its short timeout passes
        index = await stack.client.start_workflow(
            contract.INDEX_WORKFLOW,
            contract.ScheduledRun(),
            id="attribution-index-record",
            task_queue=contract.INDEX_QUEUE,
        )
        await _finish(index, HERE / "attribution-index.json")
        search = await stack.client.start_workflow(
            contract.SIMILAR_WORKFLOW,
            SimilarRequest(user_id=user.id, text="a smoothie demo", k=3),
            id="attribution-similar-record",
            task_queue=contract.INDEX_QUEUE,
        )
        await _finish(search, HERE / "attribution-similar.json")


async def _save_running(handle: WorkflowHandle[object, object], name: str) -> None:
    """Save the history of a long-lived workflow as it stands (replay covers every event so far)."""
    history = await handle.fetch_history()
    (HERE / f"attribution-{name}.json").write_text(history.to_json())


#: The local assistant's order, one customer message each; the last confirms it.
CHAT_ORDER_SCRIPT = ("Hello!", "I want 2 hoodies size M", "Olena Petrenko", "+380671234567", "Kyiv", "yes")


async def record_chat() -> None:
    """A Telegram conversation with the local assistant ending in an order at the built-in CRM, whose summary continues
    it as new (that run's history); the continued run answering a new message, a redelivery and a late-delivery
    signal (recorded while running: a conversation is long-lived); and a health check."""
    from pydantic import SecretStr

    from activities.chat import contract
    from activities.chat.schemas import ConversationInput, HealthReport, IncomingMessage, Reply
    from conveyor.client import search_attributes
    from tests.helpers.fakes import FakeTelegram

    with FakeTelegram() as telegram:
        token = SecretStr(telegram.token)
        async with running_stack("chat", plain=True, telegram_bot_token=token, telegram_api_url=telegram.url) as stack:
            async with stack.resources.sessions() as session:
                user, _ = await create_user(session, "chat-recorder", 100)
                await session.commit()
            chat_id = "700100200"
            workflow_id = contract.conversation_workflow_id("telegram", chat_id)
            first = await stack.client.start_workflow(
                contract.CONVERSATION_WORKFLOW,
                ConversationInput(
                    channel="telegram", chat_id=chat_id, owner=user.id, summary_every=len(CHAT_ORDER_SCRIPT)
                ),
                id=workflow_id,
                task_queue=contract.LLM_QUEUE,
                search_attributes=search_attributes(contract.NAME, user.id),
            )

            async def say(key: str, text: str, message_id: int) -> Reply:
                handle = stack.client.get_workflow_handle(workflow_id)  # the latest run, across continue-as-new
                message = IncomingMessage(key=key, text=text, message_id=message_id)
                reply: Reply = await handle.execute_update(contract.MESSAGE_UPDATE, message, result_type=Reply)
                return reply

            replies = [await say(f"telegram:m{i}", text, i) for i, text in enumerate(CHAT_ORDER_SCRIPT)]
            assert replies[-1].order_number == 1, replies[-1]
            first_run = stack.client.get_workflow_handle(workflow_id, run_id=first.first_execution_run_id)
            while (await first_run.describe()).status != WorkflowExecutionStatus.CONTINUED_AS_NEW:  # the summary
                await asyncio.sleep(0.05)
            (HERE / "chat-conversation.json").write_text((await first_run.fetch_history()).to_json())
            await say("telegram:m6", "how much is the t-shirt?", 6)
            await say("telegram:m5", "yes", 5)  # Telegram redelivers the confirmation: the first reply, nothing sent
            latest = stack.client.get_workflow_handle(workflow_id)
            await latest.signal(contract.LATE_SIGNAL, "telegram:m6")  # already sent: nothing more
            await say("telegram:m7", "thanks!", 7)
            history = await latest.fetch_history()
            (HERE / "chat-conversation-continued.json").write_text(history.to_json())
            await latest.terminate("recorded")

            health = await stack.client.start_workflow(
                contract.HEALTH_WORKFLOW,
                contract.HealthRun(source="recorder"),
                id="chat-health-record",
                task_queue=contract.DEFAULT_QUEUE,
                result_type=list[HealthReport],
            )
            reports = await health.result()
            assert all(report.ok for report in reports), reports
            await _finish(health, HERE / "chat-health.json")


async def record(pipelines: Sequence[str] = PIPELINES) -> None:
    """Record the histories of ``pipelines``."""
    if "analysis" in pipelines:
        await record_analysis()
    if "crawl" in pipelines:
        await record_crawl()
    if "persona" in pipelines:
        await record_persona()
    if "video" in pipelines:
        await record_video()
    if "attribution" in pipelines:
        await record_attribution()
    if "chat" in pipelines:
        await record_chat()


def main(argv: Sequence[str]) -> None:
    """``record [analysis|crawl|persona|video|attribution|chat]...``: the pipelines to record (default: all)."""
    unknown = [a for a in argv if a not in PIPELINES]
    if unknown:
        raise SystemExit(f"usage: python -m tests.histories.record [{'|'.join(PIPELINES)}]... (unknown: {unknown})")
    asyncio.run(record(list(argv) or PIPELINES))


if __name__ == "__main__":
    main(sys.argv[1:])
