"""PersonaIngestionWorkflow and PersonaSearchWorkflow with their activities replaced by fakes of the same names."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError

from activities.persona import contract
from activities.persona.schemas import (
    Collection,
    CollectionOutcome,
    CollectionRun,
    IngestRequest,
    Passage,
    SearchRequest,
    SearchResult,
)
from conveyor.errors import BadInput
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.runs import RunUpdate
from tests.helpers import NewWorker, assert_eventually, record_run_fake
from workflows.persona import PersonaIngestionWorkflow, PersonaSearchWorkflow

VECTORS = {Collection.PROFILE: 7, Collection.WORKS: 40, Collection.QUOTES: 50}


@dataclass
class Fakes:
    """Fake persona activities that record what the workflow asked for."""

    errors: dict[Collection, Exception] = field(default_factory=dict)
    hold: set[Collection] = field(default_factory=set)
    events: list[str] = field(default_factory=list)
    records: list[RunUpdate] = field(default_factory=list)
    running: set[Collection] = field(default_factory=set)
    overlap: bool = False

    @property
    def statuses(self) -> list[RunUpdate]:
        """What the workflow recorded on the persona's row (the kernel's ``conveyor.record_run``), in order."""
        return [r for r in self.records if r.table == contract.PERSONA_TABLE]

    @property
    def finished(self) -> dict[str, RunUpdate]:
        """The end recorded on each job's row, by job id."""
        jobs = [r for r in self.records if r.table == contract.JOB_TABLE]
        assert len({r.id for r in jobs}) == len(jobs), jobs  # each job's end is recorded once
        return {r.id: r for r in jobs}

    def activities(self) -> list[object]:
        fakes = self

        record_run = record_run_fake(fakes.records.append)

        @activity.defn(name=contract.INGEST_COLLECTION)
        async def ingest_collection(run: CollectionRun) -> CollectionOutcome:
            fakes.events.append(f"start:{run.collection.value}")
            fakes.running.add(run.collection)
            try:
                if {Collection.WORKS, Collection.QUOTES} <= fakes.running:
                    fakes.overlap = True
                while run.collection in fakes.hold:
                    activity.heartbeat()
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)
                if run.collection in fakes.errors:
                    raise fakes.errors[run.collection]
                return CollectionOutcome(
                    collection=run.collection,
                    total_vectors=VECTORS[run.collection],
                    added=VECTORS[run.collection],
                    files_done=1,
                    files_total=1,
                )
            finally:
                fakes.running.discard(run.collection)
                fakes.events.append(f"end:{run.collection.value}")

        @activity.defn(name=contract.SEARCH)
        async def search(request: SearchRequest) -> SearchResult:
            return SearchResult(
                persona_id=request.persona_id,
                query=request.query,
                passages=[Passage(id="a#1", text="A penny saved", source="q.jsonl", collection="quotes", score=0.8)],
            )

        return [record_run, ingest_collection, search]


def _request() -> IngestRequest:
    return IngestRequest(
        persona_id="franklin", job_ids={c: f"job-{c.value}" for c in Collection}, data_root="/data", soft_limit_s=600
    )


async def test_profile_first_then_works_and_quotes_in_parallel(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes()
    async with new_worker([PersonaIngestionWorkflow], fakes.activities()) as worker:
        result = await client.execute_workflow(
            PersonaIngestionWorkflow.run, _request(), id=f"persona-ingest-{uuid.uuid4()}", task_queue=worker.task_queue
        )
    assert fakes.events[:2] == ["start:profile", "end:profile"]
    assert fakes.overlap, fakes.events  # works and quotes ran at the same time
    assert result.status == "completed" and not result.errors
    assert {c: o.total_vectors for c, o in result.collections.items() if o} == VECTORS
    assert [(s.id, s.status, s.stage) for s in fakes.statuses] == [
        ("franklin", "running", "ingesting"),
        ("franklin", "completed", None),
    ]
    assert fakes.statuses[-1].error is None
    finished = fakes.finished
    assert sorted(finished) == sorted(f"job-{c.value}" for c in Collection)
    for collection in Collection:
        end = finished[f"job-{collection.value}"]
        assert end.status == "completed" and end.error is None, end
        assert end.fields["total_vectors"] == end.fields["added"] == VECTORS[collection]
        assert (end.fields["files_done"], end.fields["files_total"]) == (1, 1)


async def test_a_failed_collection_fails_its_job_and_the_persona_but_not_the_others(
    client: Client, new_worker: NewWorker
) -> None:
    fakes = Fakes(
        errors={Collection.WORKS: BadInput("works folder unreadable", code="UNREADABLE").to_application_error()}
    )
    async with new_worker([PersonaIngestionWorkflow], fakes.activities()) as worker:
        result = await client.execute_workflow(
            PersonaIngestionWorkflow.run, _request(), id=f"persona-ingest-{uuid.uuid4()}", task_queue=worker.task_queue
        )
    assert result.status == "failed"
    assert result.errors == {Collection.WORKS: "works folder unreadable"}
    assert result.collections[Collection.WORKS] is None
    by_job = fakes.finished
    works = by_job["job-works"]
    assert works.status == "failed" and works.error is not None and "total_vectors" not in works.fields
    assert (works.error.kind, works.error.code) == ("BadInput", "UNREADABLE")
    assert by_job["job-quotes"].status == by_job["job-profile"].status == "completed"
    assert by_job["job-quotes"].fields["total_vectors"] == VECTORS[Collection.QUOTES]
    persona = fakes.statuses[-1]
    assert persona.status == "failed" and persona.error is not None
    assert persona.error.code == "UNREADABLE" and "works" in persona.error.message


async def test_cancel_cancels_unfinished_jobs_and_never_leaves_the_persona_running(
    client: Client, new_worker: NewWorker
) -> None:
    fakes = Fakes(hold={Collection.WORKS})
    async with new_worker([PersonaIngestionWorkflow], fakes.activities()) as worker:
        handle = await client.start_workflow(
            PersonaIngestionWorkflow.run, _request(), id=f"persona-ingest-{uuid.uuid4()}", task_queue=worker.task_queue
        )

        async def works_running() -> None:
            assert Collection.WORKS in fakes.running
            progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
            assert progress.stage == "works, quotes" and progress.total == 3

        await assert_eventually(works_running)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    by_job = fakes.finished
    assert by_job["job-works"].status == "cancelled" and by_job["job-works"].error is None
    assert by_job["job-profile"].status == "completed"
    assert set(by_job) == {f"job-{c.value}" for c in Collection}  # every job ended, none left running
    assert all(j.status in ("completed", "cancelled") for j in by_job.values())
    assert [s.status for s in fakes.statuses] == ["running", "cancelled"]
    assert fakes.statuses[-1].error is None


async def test_search_runs_on_the_persona_worker(client: Client, new_worker: NewWorker) -> None:
    fakes = Fakes()
    async with new_worker([PersonaSearchWorkflow], fakes.activities()) as worker:
        result = await client.execute_workflow(
            PersonaSearchWorkflow.run,
            SearchRequest(persona_id="franklin", query="thrift"),
            id=f"persona-search-{uuid.uuid4()}",
            task_queue=worker.task_queue,
        )
    assert result.passages[0].text == "A penny saved" and result.passages[0].collection == Collection.QUOTES
