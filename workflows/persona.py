"""PersonaIngestionWorkflow: the seed 002 orchestrator, one workflow per persona ingestion.

The persona's run goes ``running`` (stage ``ingesting``); the profile collection runs first (it is the fastest),
then works and quotes in parallel on the ``persona.ingest`` queue; each job's end is recorded as the seed's
CallbackTask did (completed with its vector counts, or failed with the error's kind and code); the persona ends
``completed``, ``failed`` naming what failed, or ``cancelled`` (with every unfinished job).
``PersonaSearchWorkflow`` runs a search on the worker that holds the vector store.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.persona import contract
    from activities.persona.schemas import (
        Collection,
        CollectionOutcome,
        CollectionRun,
        IngestRequest,
        IngestResult,
        SearchRequest,
        SearchResult,
    )
    from conveyor import runs
    from conveyor.errors import failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress
    from conveyor.runs import RunEnd, RunError, RunStatus, RunUpdate
    from conveyor.steps import Step, retries

TASK_QUEUE = contract.INGEST_QUEUE
HARD_LIMIT = contract.HARD_LIMIT
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
SEARCH_TIMEOUT = contract.SEARCH_TIMEOUT
INGEST_RETRY = retries(4, first=timedelta(seconds=5), most=timedelta(minutes=5))
SEARCH_RETRY = retries(3)
#: A collection may use what is left of the soft limit (its timeout is set per call).
INGEST = Step(contract.INGEST_COLLECTION, HARD_LIMIT, INGEST_RETRY, heartbeat=HEARTBEAT_TIMEOUT)
SEARCH = Step(contract.SEARCH, SEARCH_TIMEOUT, SEARCH_RETRY)

workflow_id_for = contract.workflow_id_for


async def _record_persona(update: RunUpdate) -> None:
    await runs.record(update, legacy=contract.LEGACY_SET_STATUS)


async def _record_job(update: RunUpdate) -> None:
    await runs.record(update, legacy=contract.LEGACY_FINISH_JOB)


@workflow.defn(name=contract.INGEST_WORKFLOW)
class PersonaIngestionWorkflow:
    """Ingests a persona's three collections; answers ``progress``."""

    def __init__(self) -> None:
        self._progress = Progress(stage="queued", total=len(Collection))
        self._outcomes: dict[Collection, CollectionOutcome | None] = {}
        self._errors: dict[Collection, str] = {}
        self._failures: dict[Collection, RunError] = {}
        self._finished: set[Collection] = set()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Collections finished of three, and which are running."""
        return self._progress

    def _report(self, stage: str) -> None:
        done = len(self._finished)
        vectors = sum(o.total_vectors for o in self._outcomes.values() if o is not None)
        self._progress = self._progress.advance(
            workflow.now(),
            stage=stage,
            done=done,
            percent=100.0 * done / len(Collection),
            message=f"{vectors} vectors" + (f" · failed: {', '.join(sorted(self._errors))}" if self._errors else ""),
        )

    @workflow.run
    async def run(self, request: IngestRequest) -> IngestResult:
        """Profile first, then works and quotes in parallel; the persona ends completed, failed or cancelled."""
        persona = request.persona_id
        await _record_persona(
            RunUpdate.of(contract.PERSONA_TABLE, persona, status=RunStatus.RUNNING, stage="ingesting", progress=0)
        )
        return await runs.guarded(self._ingest(request), lambda end: self._wind_down(request, end))

    async def _ingest(self, request: IngestRequest) -> IngestResult:
        self._report("profile")
        await self._collection(request, Collection.PROFILE)
        self._report("works, quotes")
        await asyncio.gather(self._collection(request, Collection.WORKS), self._collection(request, Collection.QUOTES))
        error = self._error()
        status = RunStatus.FAILED if error is not None else RunStatus.COMPLETED
        await _record_persona(RunUpdate.of(contract.PERSONA_TABLE, request.persona_id, status=status, error=error))
        self._report(status.value)
        return IngestResult(
            persona_id=request.persona_id, status=status.value, collections=self._outcomes, errors=self._errors
        )

    def _error(self) -> RunError | None:
        """The persona's failure: the first failed collection's kind and code, every failure in the message."""
        if not self._failures:
            return None
        first = self._failures[min(self._failures)]
        message = "; ".join(f"{c.value}: {m}" for c, m in sorted(self._errors.items()))
        return RunError(kind=first.kind, code=first.code, message=message)

    async def _collection(self, request: IngestRequest, collection: Collection) -> None:
        """Ingest one collection and record its job's end either way."""
        job_id = request.job_ids[collection]
        elapsed = (workflow.now() - workflow.info().start_time).total_seconds()
        try:
            step = replace(INGEST, timeout=timedelta(seconds=max(1.0, request.soft_limit_s - elapsed)))
            outcome = await step.run(
                # no data_root: the worker finds the files from the job's row and its own settings
                CollectionRun(persona_id=request.persona_id, collection=collection, job_id=job_id),
                CollectionOutcome,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            error = RunError.of(failure_info(err))
            self._errors[collection] = error.message
            self._failures[collection] = error
            self._outcomes[collection] = None
            self._finished.add(collection)
            await _record_job(RunUpdate.of(contract.JOB_TABLE, job_id, status=RunStatus.FAILED, error=error))
            return
        self._outcomes[collection] = outcome
        self._finished.add(collection)
        counts = outcome.model_dump(include={"total_vectors", "added", "removed", "files_done", "files_total"})
        counts["warnings"] = list(outcome.warnings)
        await _record_job(RunUpdate.of(contract.JOB_TABLE, job_id, status=RunStatus.COMPLETED, **counts))

    async def _wind_down(self, request: IngestRequest, end: RunEnd) -> None:
        """End the jobs that did not finish and the persona the same way, so nothing is left running."""
        for collection, job_id in request.job_ids.items():
            if collection not in self._finished:
                await _record_job(RunUpdate.of(contract.JOB_TABLE, job_id, status=end.status, error=end.error))
        await _record_persona(
            RunUpdate.of(contract.PERSONA_TABLE, request.persona_id, status=end.status, error=end.error)
        )
        self._report(end.status.value)


@workflow.defn(name=contract.SEARCH_WORKFLOW)
class PersonaSearchWorkflow:
    """Runs one search on a worker of the ``persona`` queue, where the vector store is."""

    @workflow.run
    async def run(self, request: SearchRequest) -> SearchResult:
        """Search and return the ranked passages."""
        return await SEARCH.run(request, SearchResult)
