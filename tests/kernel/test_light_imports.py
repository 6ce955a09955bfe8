"""The API, the CLI's entry point and every workflow module import without the worker side's heavy libraries.

Each import runs in a fresh interpreter, so nothing another test imported can hide a heavy dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conveyor.pipeline import load
from workers.pipelines import PIPELINES

#: Libraries only workers may load: the API, the CLI's start-up and workflow code must not pay for them.
HEAVY = ("onnxruntime", "chromadb", "playwright", "langgraph", "duckdb", "polars", "faster_whisper", "ctranslate2")

WORKFLOW_MODULES = sorted({ref.partition(":")[0] for p in PIPELINES for q in p.queues for ref in q.workflow_refs})
ROUTER_MODULES = sorted({p.router.partition(":")[0] for p in PIPELINES})

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
sys.stdout.write(json.dumps({"modules": sorted(sys.modules)}))
"""


def _import_in_fresh_interpreter(module: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _heavy_in(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return sorted({m.partition(".")[0] for m in modules} & set(HEAVY))


@pytest.mark.parametrize("module", ["api.app", "cli.main", "workers.pipelines", *WORKFLOW_MODULES, *ROUTER_MODULES])
def test_light_modules_load_no_heavy_library(module: str) -> None:
    loaded = _import_in_fresh_interpreter(module)
    assert _heavy_in(loaded["modules"]) == []


def test_every_pipeline_has_workflows_and_a_router_module() -> None:
    assert len(WORKFLOW_MODULES) == len(PIPELINES)  # one workflow module per pipeline
    for pipeline in PIPELINES:
        assert f"workflows.{pipeline.name}" in WORKFLOW_MODULES
        assert load(pipeline.router).routes, pipeline.name


def test_the_guard_would_notice_a_heavy_import() -> None:
    # the worker side of a pipeline does load them: the probe sees what it is meant to catch
    loaded = _import_in_fresh_interpreter("activities.analysis.worker")
    assert "duckdb" in _heavy_in(loaded["modules"])
