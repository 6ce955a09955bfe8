"""PersonaIngestionWorkflow: the seed 002 orchestrator, one workflow per persona ingestion.

The persona goes ``ingesting``; the profile collection runs first (it is the fastest), then works and quotes
in parallel on the ``persona`` queue; each job's end is recorded as the seed's CallbackTask did (completed with
its vector count, or failed with the error); the persona ends ``active``, or ``failed`` naming what failed.
``PersonaSearchWorkflow`` runs a search on the worker that holds the vector store.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.persona.activities import PersonaActivities
    from activities.persona.schemas import (
        Collection,
        CollectionOutcome,
        CollectionRun,
        IngestRequest,
        IngestResult,
        JobResult,
        PersonaStatusUpdate,
        SearchRequest,
        SearchResult,
    )
    from conveyor.errors import NON_RETRYABLE_ERROR_TYPES, failure_info
    from conveyor.progress import PROGRESS_QUERY, Progress

TASK_QUEUE = "persona"
WORKFLOW_ID_PREFIX = "persona-ingest-"
#: Seed: time_limit=7200 s (hard), soft_time_limit=6900 s.
HARD_LIMIT = timedelta(hours=2)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
SEARCH_TIMEOUT = timedelta(seconds=60)
INGEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=4,
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)
BOOKKEEPING_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)


def workflow_id_for(persona_id: str) -> str:
    """The ingestion workflow id of a persona (one at a time: a second request finds the running one)."""
    return f"{WORKFLOW_ID_PREFIX}{persona_id}"


@workflow.defn(name="PersonaIngestionWorkflow")
class PersonaIngestionWorkflow:
    """Ingests a persona's three collections; answers ``progress``."""

    def __init__(self) -> None:
        self._progress = Progress(stage="queued", total=len(Collection))
        self._outcomes: dict[Collection, CollectionOutcome | None] = {}
        self._errors: dict[Collection, str] = {}
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

    async def _local(self, activity: object, arg: object) -> None:
        await workflow.execute_local_activity_method(
            activity,  # type: ignore[arg-type]
            arg,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )

    @workflow.run
    async def run(self, request: IngestRequest) -> IngestResult:
        """Profile first, then works and quotes in parallel; the persona ends active or failed."""
        await self._local(
            PersonaActivities.set_status, PersonaStatusUpdate(persona_id=request.persona_id, status="ingesting")
        )
        try:
            self._report("profile")
            await self._collection(request, Collection.PROFILE)
            self._report("works, quotes")
            await asyncio.gather(
                self._collection(request, Collection.WORKS), self._collection(request, Collection.QUOTES)
            )
        except asyncio.CancelledError:
            await self._wind_down(request, "ingestion cancelled")
            raise
        status = "failed" if self._errors else "active"
        reason = "; ".join(f"{c.value}: {m}" for c, m in sorted(self._errors.items())) or None
        await self._local(
            PersonaActivities.set_status,
            PersonaStatusUpdate(persona_id=request.persona_id, status=status, reason=reason),
        )
        self._report(status)
        return IngestResult(
            persona_id=request.persona_id, status=status, collections=self._outcomes, errors=self._errors
        )

    async def _collection(self, request: IngestRequest, collection: Collection) -> None:
        """Ingest one collection and record its job's end either way."""
        job_id = request.job_ids[collection]
        elapsed = (workflow.now() - workflow.info().start_time).total_seconds()
        try:
            outcome = await workflow.execute_activity_method(
                PersonaActivities.ingest_collection,
                CollectionRun(
                    persona_id=request.persona_id,
                    collection=collection,
                    job_id=job_id,
                    data_root=request.data_root,
                ),
                start_to_close_timeout=timedelta(seconds=max(1.0, request.soft_limit_s - elapsed)),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=INGEST_RETRY,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            info = failure_info(err)
            self._errors[collection] = info.message
            self._outcomes[collection] = None
            self._finished.add(collection)
            await self._local(
                PersonaActivities.finish_job, JobResult(job_id=job_id, error_code=info.code, error_message=info.message)
            )
            return
        self._outcomes[collection] = outcome
        self._finished.add(collection)
        await self._local(PersonaActivities.finish_job, JobResult(job_id=job_id, outcome=outcome))

    async def _wind_down(self, request: IngestRequest, reason: str) -> None:
        """Fail the jobs that did not finish and the persona, so nothing is left ``ingesting``."""
        for collection, job_id in request.job_ids.items():
            if collection not in self._finished:
                await self._local(
                    PersonaActivities.finish_job,
                    JobResult(job_id=job_id, error_code="CANCELLED", error_message=reason),
                )
        await self._local(
            PersonaActivities.set_status,
            PersonaStatusUpdate(persona_id=request.persona_id, status="failed", reason=reason),
        )
        self._report("cancelled")


@workflow.defn(name="PersonaSearchWorkflow")
class PersonaSearchWorkflow:
    """Runs one search on a worker of the ``persona`` queue, where the vector store is."""

    @workflow.run
    async def run(self, request: SearchRequest) -> SearchResult:
        """Search and return the ranked passages."""
        return await workflow.execute_activity_method(
            PersonaActivities.search,
            request,
            start_to_close_timeout=SEARCH_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES),
        )
