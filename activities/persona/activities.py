"""The persona pipeline's activities: files, embeddings, ChromaDB and job rows (all of its I/O)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.persona.embedder import Embedder
from activities.persona.ingest import IngestProgress, ingest_collection
from activities.persona.models import IngestionJob, JobStatus, Persona, PersonaStatus
from activities.persona.schemas import (
    CollectionOutcome,
    CollectionRun,
    JobResult,
    Passage,
    PersonaStatusUpdate,
    SearchRequest,
    SearchResult,
)
from activities.persona.vectors import VectorStore
from conveyor.errors import NotFound
from conveyor.heartbeat import ProgressBox, run_blocking

#: How often a running ingestion writes its progress to the job row.
JOB_PROGRESS_INTERVAL_S = 1.0


class PersonaActivities:
    """Activities of ``PersonaIngestionWorkflow``; the worker gives them the DB, the vector store and embedder."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: Callable[[], VectorStore],
        embedder: Callable[[], Embedder],
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._embedder = embedder

    @activity.defn(name="persona.set_status")
    async def set_status(self, update: PersonaStatusUpdate) -> None:
        """Set the persona's status (``ingesting``, ``active`` or ``failed`` with its reason)."""
        async with self._sessions.begin() as session:
            persona = await session.get(Persona, update.persona_id)
            if persona is None:
                raise NotFound(f"persona {update.persona_id} not found", code="PERSONA_NOT_FOUND")
            persona.status = update.status
            persona.status_reason = update.reason
            if update.status == PersonaStatus.ACTIVE:
                persona.last_ingested_at = datetime.now(UTC)

    @activity.defn(name="persona.finish_job")
    async def finish_job(self, result: JobResult) -> None:
        """Record a job's end: completed with its counts, or failed with the error (the seed's CallbackTask)."""
        async with self._sessions.begin() as session:
            job = await session.get(IngestionJob, result.job_id)
            if job is None:
                return
            job.completed_at = datetime.now(UTC)
            if result.outcome is not None:
                _apply(job, result.outcome)
                job.status = JobStatus.COMPLETED.value
                job.progress = 100
                job.error_code = job.error_message = None
            else:
                job.status = JobStatus.FAILED.value
                job.error_code = result.error_code
                job.error_message = result.error_message

    @activity.defn(name="persona.ingest_collection")
    async def ingest_collection(self, run: CollectionRun) -> CollectionOutcome:
        """Chunk, embed and upsert one collection, heartbeating progress; a retry resumes from the heartbeat."""
        details = activity.info().heartbeat_details
        progress = IngestProgress.from_detail(details[0] if details else None)
        async with self._sessions.begin() as session:
            job = await session.get(IngestionJob, run.job_id)
            if job is None:
                raise NotFound(f"ingestion job {run.job_id} not found", code="JOB_NOT_FOUND")
            job.status = JobStatus.PROCESSING.value
            job.started_at = job.started_at or datetime.now(UTC)
            job.error_code = job.error_message = None
        box = ProgressBox(progress.to_detail())

        def work() -> CollectionOutcome:
            return ingest_collection(run, self._store(), self._embedder(), progress, lambda p: box.set(p.to_detail()))

        writer = asyncio.create_task(self._write_progress(run.job_id, box))
        try:
            return await run_blocking(work, progress=box)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_progress(self, job_id: str, box: ProgressBox) -> None:
        """Copy the latest progress onto the job row about once a second, so GET /api/jobs/{id} moves."""
        last: Any = None
        while True:
            detail = box.get()
            if detail != last:
                last = detail
                progress = IngestProgress.from_detail(detail)
                async with self._sessions.begin() as session:
                    job = await session.get(IngestionJob, job_id)
                    if job is not None and job.status == JobStatus.PROCESSING:
                        job.progress = min(99, progress.percent)
                        job.files_done = len(progress.done_files)
                        job.files_total = progress.files_total
                        job.added = progress.added
                        job.removed = progress.removed
                        job.warnings = list(progress.warnings)
            await asyncio.sleep(JOB_PROGRESS_INTERVAL_S)

    @activity.defn(name="persona.search")
    async def search(self, request: SearchRequest) -> SearchResult:
        """Rank the persona's passages by similarity to the question, across the chosen collections."""

        def query() -> SearchResult:
            hits = self._store().query(
                request.persona_id, [c.value for c in request.collections], request.query, request.k
            )
            return SearchResult(
                persona_id=request.persona_id,
                query=request.query,
                passages=[
                    Passage(
                        id=h.id,
                        text=h.text,
                        source=h.source,
                        collection=h.collection,
                        score=round(h.score, 4),
                        metadata={k: v for k, v in h.metadata.items() if isinstance(v, str | int | float | bool)},
                    )
                    for h in hits
                ],
            )

        return await asyncio.to_thread(query)


def _apply(job: IngestionJob, outcome: CollectionOutcome) -> None:
    job.total_vectors = outcome.total_vectors
    job.added = outcome.added
    job.removed = outcome.removed
    job.files_done = outcome.files_done
    job.files_total = outcome.files_total
    job.warnings = list(outcome.warnings)


def persona_activities(acts: PersonaActivities) -> list[Callable[..., Any]]:
    """Every activity the persona queue serves."""
    return [acts.set_status, acts.finish_job, acts.ingest_collection, acts.search]
