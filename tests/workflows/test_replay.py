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
