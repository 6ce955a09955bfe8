"""``conveyor demo`` runs every pipeline's part, as the manifests name them, and every run completes."""

from __future__ import annotations

import pytest

from cli.demo import run_demo
from conveyor.temporal import PIPELINE_ATTR
from tests.helpers.stack import Stack
from workers.pipelines import PIPELINES

pytestmark = [pytest.mark.needs_ffmpeg, pytest.mark.needs_chromium, pytest.mark.slow]


async def test_the_demo_runs_every_pipeline_to_completion(stack: Stack) -> None:
    runs = await run_demo(stack.settings, keep_running=True, show=False)  # uses the test stack's API

    assert {run.pipeline.partition(":")[0] for run in runs} == {p.name for p in PIPELINES}
    assert [run for run in runs if run.status != "completed"] == []
    for run in runs:
        described = await stack.client.get_workflow_handle(run.workflow_id).describe()
        # findable in the Web UI and `temporal workflow list` by pipeline
        assert described.typed_search_attributes.get(PIPELINE_ATTR) == run.pipeline.partition(":")[0]
        assert run.link.endswith(run.workflow_id)
