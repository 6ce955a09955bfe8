"""Every pipeline Conveyor runs: the one list workers, the API, the CLI, the demo and health iterate.

Adding a pipeline: write its own files (contract, models, activities, workflow, router, CLI, tests) and add
its manifest here.
"""

from __future__ import annotations

from activities.analysis.contract import PIPELINE as ANALYSIS
from activities.attribution.contract import PIPELINE as ATTRIBUTION
from activities.chat.contract import PIPELINE as CHAT
from activities.crawl.contract import PIPELINE as CRAWL
from activities.persona.contract import PIPELINE as PERSONA
from activities.video.contract import PIPELINE as VIDEO
from conveyor.pipeline import Pipeline, Queue

PIPELINES: tuple[Pipeline, ...] = (ANALYSIS, CRAWL, PERSONA, VIDEO, ATTRIBUTION, CHAT)


def pipeline(name: str) -> Pipeline:
    """The pipeline called ``name`` (KeyError if there is none)."""
    for p in PIPELINES:
        if p.name == name:
            return p
    raise KeyError(name)


def all_queues() -> dict[str, Queue]:
    """Every task queue of every pipeline, by name."""
    return {q.name: q for p in PIPELINES for q in p.queues}


def pipeline_of_queue(name: str) -> Pipeline:
    """The pipeline a queue belongs to."""
    return pipeline(name.partition(".")[0])
