"""The persona pipeline's activities: files, embeddings, ChromaDB and job rows (all of its I/O)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.persona import contract
from activities.persona.embedder import Embedder
from activities.persona.ingest import IngestProgress, ingest_collection
from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import CollectionOutcome, CollectionRun, Passage, SearchRequest, SearchResult
from activities.persona.sources import persona_folder, sync_uploads
from activities.persona.vectors import VectorStore
from conveyor.errors import NotFound
from conveyor.heartbeat import ProgressBox, run_blocking
from conveyor.records import row_writer
from conveyor.runs import RunStatus
from conveyor.storage import BlobStore


class IngestionStopped(Exception):
    """Raised in the ingestion thread at its next progress report once the activity is cancelled."""


class PersonaActivities:
    """Activities of ``PersonaIngestionWorkflow``; the worker gives them the DB, the vector store, the embedder,
    its own persona data root and the blob store holding uploaded documents (paths never come from a payload)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: Callable[[], VectorStore],
        embedder: Callable[[], Embedder],
        *,
        data_root: Path,
        blobs: BlobStore | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._embedder = embedder
        self._data_root = data_root
        self._blobs = blobs

    @activity.defn(name=contract.INGEST_COLLECTION)
    async def ingest_collection(self, run: CollectionRun) -> CollectionOutcome:
        """Chunk, embed and upsert one collection, heartbeating progress; a retry resumes from the heartbeat."""
        details = activity.info().heartbeat_details
        progress = IngestProgress.from_detail(details[0] if details else None)
        async with self._sessions.begin() as session:
            job = await session.get(IngestionJob, run.job_id)
            if job is None:
                raise NotFound(f"ingestion job {run.job_id} not found", code="JOB_NOT_FOUND")
            persona = await session.get(Persona, job.persona_id)
            if persona is None:
                raise NotFound(f"persona of job {run.job_id} not found", code="PERSONA_NOT_FOUND")
            owner, slug, key = persona.user_id, persona.slug, persona.id
            job.set_status(RunStatus.RUNNING, stage="ingesting")
        # Everything below comes from the job's row and this worker's settings: the payload's persona id and
        # (old histories') data_root are not used to find files.
        folder = persona_folder(self._data_root, owner, slug)
        run = run.model_copy(update={"persona_id": key, "data_root": ""})
        box = ProgressBox(progress.to_detail())
        stop = threading.Event()

        def report(current: IngestProgress) -> None:
            box.set(current.to_detail())
            if stop.is_set():  # cancelled (or the workflow is gone): stop after the batch just stored
                raise IngestionStopped(f"ingestion of {run.persona_id}/{run.collection.value} stopped")

        def work() -> CollectionOutcome:
            if self._blobs is not None:
                prefix = contract.upload_prefix(owner, slug)
                sync_uploads(self._blobs, prefix, folder, only=f"{run.collection.value}/")
            return ingest_collection(run, folder, self._store(), self._embedder(), progress, report)

        write = row_writer(self._sessions, contract.JOB_TABLE, run.job_id, _job_columns)
        return await run_blocking(work, progress=box, write=write, on_cancel=stop.set)

    @activity.defn(name=contract.SEARCH)
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


def _job_columns(detail: Any) -> dict[str, Any]:
    """A running ingestion's heartbeat detail as its job row's columns (GET /api/jobs/{id} moves with it)."""
    progress = IngestProgress.from_detail(detail)
    return {
        "progress": min(99, progress.percent),
        "stage": "ingesting",
        "files_done": len(progress.done_files),
        "files_total": progress.files_total,
        "added": progress.added,
        "removed": progress.removed,
        "warnings": list(progress.warnings),
    }


def persona_activities(acts: PersonaActivities) -> list[Callable[..., Any]]:
    """Every activity the persona queue serves."""
    return [acts.ingest_collection, acts.search]
