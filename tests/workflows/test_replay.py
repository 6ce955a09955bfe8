"""Replay saved and fresh histories so a non-deterministic workflow change fails CI."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer

from conveyor.temporal import DATA_CONVERTER
from tests.conftest import NewWorker, assert_eventually
from tests.workflows.test_analysis_workflow import Fakes, _request
from tests.workflows.test_crawl_workflow import Fakes as CrawlFakes
from tests.workflows.test_crawl_workflow import Page, crawl_workers, tree_site
from workers.registry import ALL_WORKFLOWS
from workflows.analysis import AnalysisWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def _replayer() -> Replayer:
    return Replayer(workflows=list(ALL_WORKFLOWS), data_converter=DATA_CONVERTER)


def test_saved_histories_exist() -> None:
    names = sorted(p.name for p in HISTORIES.glob("*.json"))
    assert any(n.startswith("analysis-completed") for n in names), names
    assert any(n.startswith("analysis-failed") for n in names), names
    assert any(n.startswith("analysis-cancelled") for n in names), names
    for outcome in ("completed", "failed", "cancelled"):
        assert f"crawl-{outcome}.json" in names, names
        assert f"persona-{outcome}.json" in names, names
        assert f"video-{outcome}.json" in names, names


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_saved_history_replays(path: Path) -> None:
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await _replayer().replay_workflow(history)
    assert result.replay_failure is None


async def test_fresh_histories_replay(client: Client, new_worker: NewWorker) -> None:
    histories = []
    fakes = Fakes(agents=["unified-profiler", "score-risk", "drift-detector"], agent_delay=0.5)
    async with new_worker([AnalysisWorkflow], fakes.activities()) as worker:
        done = await client.start_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )
        await done.result()
        histories.append(await done.fetch_history())
        cancelled = await client.start_workflow(
            AnalysisWorkflow.run, _request(), id=f"analysis-{uuid.uuid4()}", task_queue=worker.task_queue
        )

        async def second_agent() -> None:
            assert (await cancelled.query(AnalysisWorkflow.progress)).stage == "score-risk"

        await assert_eventually(second_agent)
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        histories.append(await cancelled.fetch_history())
    for history in histories:
        result = await _replayer().replay_workflow(history)
        assert result.replay_failure is None


async def test_fresh_crawl_histories_replay(client: Client) -> None:
    histories = []
    # bugs on several pages (one repeated), a failing page, and enough pages to continue as new once
    site = tree_site(14, bugs={0: ["X"], 3: ["Y", "X"], 12: ["Z"]})
    site["/p5"] = Page(links=["/p11", "/p12"], bugs=["W"])
    site["/p6"].fail_attempts = 9  # fails every attempt
    fakes = CrawlFakes(site=site)
    async with crawl_workers(client, fakes) as crawler:
        done = await crawler.start(pages_per_run=10, page_retry_initial_s=0.1, max_depth=5)
        result = await done.result()
        assert result.pages_failed == 1 and result.bugs_found == 4
        run_id = done.first_execution_run_id
        while run_id:  # every run of the chain: the first ends continuing as new
            history = await client.get_workflow_handle(done.id, run_id=run_id).fetch_history()
            histories.append(history)
            run_id = history.events[-1].workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        assert len(histories) == 2

    fakes = CrawlFakes(
        site={"/": Page(links=["/a", "/hold"], bugs=["X"]), "/a": Page(bugs=["Y"]), "/hold": Page(hold=True)}
    )
    async with crawl_workers(client, fakes) as crawler:
        cancelled = await crawler.start()

        async def holding() -> None:
            assert "/hold" in fakes.visited() and "/a" in fakes.done

        await assert_eventually(holding)
        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError):
            await cancelled.result()
        histories.append(await cancelled.fetch_history())
    for history in histories:
        replayed = await _replayer().replay_workflow(history)
        assert replayed.replay_failure is None
