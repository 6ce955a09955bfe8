"""The pipeline manifests: queue naming, conventions, and that every reference points at something real."""

from __future__ import annotations

import importlib.util

import pytest

from activities.analysis.schemas import PurgeRequest
from conveyor.pipeline import Pipeline, Queue, Schedule, load
from workers.pipelines import PIPELINES, all_queues
from workers.run import queues_of_groups, resolve_queues


def test_queue_names_are_namespaced_by_their_pipeline() -> None:
    with pytest.raises(ValueError, match="must be named 'chat.<role>'"):
        Pipeline(name="chat", description="", queues=(Queue("default", 2, "health"),))
    with pytest.raises(ValueError, match="must be named 'chat.<role>'"):
        Pipeline(name="chat", description="", queues=(Queue("crawl.default", 2, "health"),))


def test_a_schedule_runs_on_a_queue_of_its_own_pipeline() -> None:
    arg = PurgeRequest(retention_hours=1)
    schedule = Schedule(id="s", workflow="W", arg=arg, queue="crawl.default", cron="* * * * *", description="")
    with pytest.raises(ValueError, match="not a queue of 'chat'"):
        Pipeline(name="chat", description="", queues=(Queue("chat.default", 2, "health"),), schedules=(schedule,))


def test_modules_follow_the_naming_convention_unless_named() -> None:
    plain = Pipeline(name="chat", description="", queues=(Queue("chat.llm", 4, "replies", workflows=("Convo",)),))
    assert plain.activities == "activities.chat.worker:activities"
    assert plain.router == "api.routes.chat:router"
    assert (plain.cli, plain.demo) == ("cli.chat:register", "cli.chat:demo")
    assert plain.queues[0].workflow_refs == ["workflows.chat:Convo"]
    named = Pipeline(name="chat", description="", queues=(), router="api.webhooks:router")
    assert named.router == "api.webhooks:router"


def test_queue_names_are_unique_and_the_seeds_default_queues_cannot_collide() -> None:
    names = [q.name for p in PIPELINES for q in p.queues]
    assert len(names) == len(set(names))
    assert "crawl.default" in names and "default" not in names


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.name)
def test_every_reference_of_a_manifest_resolves(pipeline: Pipeline) -> None:
    for ref in (pipeline.activities, pipeline.router, pipeline.cli, pipeline.demo, pipeline.models):
        module, _, attribute = ref.partition(":")
        assert importlib.util.find_spec(module) is not None, ref  # the worker side is not imported here
    assert load(pipeline.router).routes
    assert callable(load(pipeline.cli)) and callable(load(pipeline.demo))
    served = {w.__name__ for q in pipeline.queues for w in q.load_workflows()}
    assert {s.workflow for s in pipeline.schedules} <= served


def test_worker_groups_and_legacy_queue_names_resolve_to_manifest_queues() -> None:
    assert queues_of_groups(["video"]) == [q.name for q in next(p for p in PIPELINES if p.name == "video").queues]
    assert resolve_queues(["render", "crawl.pages"]) == ["video.render", "crawl.pages"]
    assert resolve_queues([]) == list(all_queues())
