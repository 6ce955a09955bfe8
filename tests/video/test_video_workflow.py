"""VideoJobWorkflow with its activities replaced by fakes of the same names on the pipeline's queues."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from activities.video import contract
from activities.video.schemas import (
    CaptionRun,
    PreviewRun,
    RenderRun,
    StepOutcome,
    TranscodeJob,
    TranscodeRun,
    VideoJobInput,
)
from activities.video.transcode import TranscodeSpec
from conveyor.errors import BadInput
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.runs import RunUpdate
from tests.helpers import NewWorker, assert_eventually, record_run_fake
from workers.run import HEARTBEAT_THROTTLE
from workflows.video import VideoJobWorkflow

TIMELINE: dict[str, Any] = {"clips": [{"key": "videos/a/clip.mp4"}], "subtitles": {"from_caption": True}}


@dataclass
class Fakes:
    """Fake video activities that record the order of steps, their queues and what they were given."""

    fail: dict[str, Exception] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    queues: dict[str, str] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    records: list[RunUpdate] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    overlap: bool = False

    async def _step(self, kind: str, run: Any, outputs: dict[str, Any]) -> StepOutcome:
        self.events.append(f"start:{kind}")
        self.queues[kind] = activity.info().task_queue
        self.runs[kind] = run
        self.running.add(kind)
        try:
            if {"preview", "caption"} <= self.running:
                self.overlap = True
            while kind in self.hold:
                activity.heartbeat()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            if kind in self.fail:
                raise self.fail[kind]
            return StepOutcome(job_id=run.job_id, kind=kind, outputs=outputs)
        finally:
            self.running.discard(kind)
            self.events.append(f"end:{kind}")

    @property
    def jobs(self) -> list[RunUpdate]:
        """What the workflow recorded on job rows (the kernel's ``conveyor.record_run``)."""
        return [r for r in self.records if r.table == contract.JOB_TABLE]

    @property
    def videos(self) -> list[RunUpdate]:
        """What the workflow recorded on the video's row."""
        return [r for r in self.records if r.table == contract.VIDEO_TABLE]

    def bookkeeping(self) -> list[object]:
        fakes = self

        return [record_run_fake(fakes.records.append)]

    def steps(self) -> dict[str, list[object]]:
        fakes = self

        @activity.defn(name=contract.RENDER)
        async def render(run: RenderRun) -> StepOutcome:
            return await fakes._step("render", run, {"file": f"videos/{run.video_id}/render.mp4"})

        @activity.defn(name=contract.PREVIEW)
        async def preview(run: PreviewRun) -> StepOutcome:
            return await fakes._step("preview", run, {"sheet": "sheet.jpg"})

        @activity.defn(name=contract.CAPTION)
        async def caption(run: CaptionRun) -> StepOutcome:
            return await fakes._step("caption", run, {"srt": f"videos/{run.video_id}/captions/{run.job_id}.srt"})

        @activity.defn(name=contract.TRANSCODE)
        async def transcode(run: TranscodeRun) -> StepOutcome:
            return await fakes._step(f"transcode-{run.spec.codec}", run, {"file": "variant"})

        return {
            contract.RENDER_QUEUE: [render],
            contract.PREVIEW_QUEUE: [preview],
            contract.CAPTION_QUEUE: [caption],
            contract.TRANSCODE_QUEUE: [transcode],
        }


@asynccontextmanager
async def _workers(new_worker: NewWorker, fakes: Fakes) -> AsyncIterator[Worker]:
    """The workflow's worker (bookkeeping local activity) and one fake worker per step queue."""
    async with AsyncExitStack() as stack:
        main = await stack.enter_async_context(new_worker([VideoJobWorkflow], fakes.bookkeeping()))
        for queue, acts in fakes.steps().items():
            # heartbeats reach the server each second, as on Conveyor's workers, so a cancel arrives at once
            worker = new_worker(
                [],
                acts,
                task_queue=queue,
                max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            )
            await stack.enter_async_context(worker)
        yield main


def _request(*, caption_first: bool = False, render: bool = True) -> VideoJobInput:
    return VideoJobInput(
        video_id="v1",
        render_job_id="j-render" if render else None,
        timeline=TIMELINE if render else None,
        preview_job_id="j-preview",
        caption_job_id="j-caption",
        caption_first=caption_first,
        transcodes=[
            TranscodeJob(job_id="j-vp9", spec=TranscodeSpec(codec="vp9", container="webm")),
            TranscodeJob(job_id="j-h265", spec=TranscodeSpec(codec="h265", container="mkv")),
        ],
    )


async def _start(client: Client, worker: Worker, request: VideoJobInput) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        VideoJobWorkflow.run, request, id=f"video-{uuid.uuid4()}", task_queue=worker.task_queue
    )


async def test_render_then_preview_and_caption_in_parallel_then_transcodes(
    client: Client, new_worker: NewWorker
) -> None:
    fakes = Fakes()
    async with _workers(new_worker, fakes) as worker:
        handle = await _start(client, worker, _request())
        result = await handle.result()
        progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
    assert fakes.events[:2] == ["start:render", "end:render"]
    assert fakes.overlap, fakes.events  # preview and caption ran at the same time
    first_transcode = min(i for i, e in enumerate(fakes.events) if e.startswith("start:transcode"))
    assert {"end:preview", "end:caption"} <= set(fakes.events[:first_transcode])
    assert fakes.queues == {
        "render": "video.render",
        "preview": "video.preview",
        "caption": "video.caption",
        "transcode-vp9": "video.transcode",
        "transcode-h265": "video.transcode",
    }
    assert fakes.runs["caption"].timeline is None  # captions of the rendered file
    assert result.status == "completed" and len(result.outcomes) == 5 and not result.errors
    assert progress.done == progress.total == 5 and progress.percent == 100
    assert fakes.jobs == [] and fakes.videos == []  # activities record their own success


async def test_captions_from_the_timelines_speech_come_first_and_are_burned_in(
    client: Client, new_worker: NewWorker
) -> None:
    fakes = Fakes()
    async with _workers(new_worker, fakes) as worker:
        result = await (await _start(client, worker, _request(caption_first=True))).result()
    assert fakes.events[:4] == ["start:caption", "end:caption", "start:render", "end:render"]
    assert fakes.runs["caption"].timeline == TIMELINE
    assert fakes.runs["render"].subtitles_key == "videos/v1/captions/j-caption.srt"
    assert "start:preview" in fakes.events and fakes.events.count("start:caption") == 1
    assert result.status == "completed"


async def test_a_failed_render_skips_the_rest_and_fails_the_video_and_the_workflow(
    client: Client, new_worker: NewWorker
) -> None:
    bad = BadInput("clip 2: blob key 'x' does not exist", code="CLIP_NOT_FOUND").to_application_error()
    fakes = Fakes(fail={"render": bad})
    async with _workers(new_worker, fakes) as worker:
        handle = await _start(client, worker, _request())
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "RENDER_FAILED" in str(failure.value.cause) or "render failed" in str(failure.value.cause)
    assert fakes.events == ["start:render", "end:render"]  # tried once (bad input), nothing after it
    ends = {j.id: j for j in fakes.jobs}
    assert ends["j-render"].status == "failed" and ends["j-render"].error is not None
    assert (ends["j-render"].error.kind, ends["j-render"].error.code) == ("BadInput", "CLIP_NOT_FOUND")
    skipped = [ends[j].error for j in ("j-preview", "j-caption", "j-vp9", "j-h265")]
    assert {(e.kind, e.code) for e in skipped if e is not None} == {("BadInput", "SKIPPED")}
    assert all(ends[j].status == "failed" for j in ("j-preview", "j-caption", "j-vp9", "j-h265"))
    assert [(v.id, v.status, v.error and v.error.code) for v in fakes.videos] == [("v1", "failed", "CLIP_NOT_FOUND")]


async def test_a_failed_variant_is_recorded_and_the_others_finish(client: Client, new_worker: NewWorker) -> None:
    bad = BadInput("cannot encode", code="FFMPEG_BAD_INPUT").to_application_error()
    fakes = Fakes(fail={"transcode-h265": bad})
    async with _workers(new_worker, fakes) as worker:
        result = await (await _start(client, worker, _request(render=False))).result()
    assert "start:render" not in fakes.events
    assert result.status == "completed_with_errors"
    assert set(result.outcomes) == {"j-preview", "j-caption", "j-vp9"}
    assert result.errors == {"j-h265": "FFMPEG_BAD_INPUT: cannot encode"}
    assert [(j.id, j.status) for j in fakes.jobs] == [("j-h265", "failed")]
    assert fakes.videos == []  # the video itself is fine


async def test_cancel_mid_render_cancels_every_unfinished_job_and_the_video(
    client: Client, new_worker: NewWorker
) -> None:
    fakes = Fakes(hold={"render"})
    async with _workers(new_worker, fakes) as worker:
        handle = await _start(client, worker, _request())

        async def rendering() -> None:
            assert "render" in fakes.running
            progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
            assert progress.stage == "render" and progress.total == 5

        await assert_eventually(rendering)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert {j.id: j.status for j in fakes.jobs} == dict.fromkeys(
        ["j-render", "j-preview", "j-caption", "j-vp9", "j-h265"], "cancelled"
    )
    assert [v.status for v in fakes.videos] == ["cancelled"]
    assert "end:render" in fakes.events  # the render activity saw the cancellation before the workflow closed
