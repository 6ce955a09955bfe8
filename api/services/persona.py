"""Personas: create, read, ingest (one run at a time), cancel, jobs and search. Shared by the HTTP API and the CLI."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persona import contract
from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, IngestRequest, SearchRequest, SearchResult
from api.caller import Caller
from api.services.analysis import copy_limited, safe_filename
from conveyor import credits
from conveyor.client import execute_workflow, start_workflow
from conveyor.errors import BadInput, Conflict, NotFound
from conveyor.models import User
from conveyor.quotas import RunCharge, admit
from conveyor.reconcile import cancel_run, reconcile
from conveyor.runs import ACTIVE, RunStatus

PERSONA_ID = contract.PERSONA_ID
#: What each collection accepts as an upload (what the ingestor reads); quotes are one JSON-lines file.
UPLOAD_SUFFIXES: dict[Collection, tuple[str, ...]] = {
    Collection.WORKS: (".txt", ".md"),
    Collection.PROFILE: (".txt", ".md"),
    Collection.QUOTES: (".jsonl",),
}
QUOTES_FILE = "all_quotes.jsonl"


@dataclass
class IngestStarted:
    """The jobs and workflow of an ingestion (``started`` is False when one was already running)."""

    persona: Persona
    workflow_id: str
    jobs: dict[str, str]
    started: bool


def _check_length(field: str, value: str, limit: int) -> str:
    """``value`` if it fits its column (BadInput naming the field otherwise, instead of a database error)."""
    if len(value) > limit:
        raise BadInput(
            f"persona {field} is {len(value)} characters long; at most {limit}",
            code="FIELD_TOO_LONG",
            details={"field": field, "max_length": limit},
        )
    return value


async def _owned(session: AsyncSession, user: User, persona_id: str) -> Persona | None:
    """The user's persona called ``persona_id`` (ids are unique per owner), if any."""
    found = await session.scalars(select(Persona).where(Persona.user_id == user.id, Persona.slug == persona_id))
    return found.first()


async def create_persona(session: AsyncSession, user: User, persona_id: str, name: str, description: str) -> Persona:
    """A new persona of ``user``, ``created`` until ingested; ids are lower-case slugs unique per owner."""
    contract.check_persona_id(persona_id)
    _check_length("name", name, contract.NAME_LENGTH)
    _check_length("description", description, contract.DESCRIPTION_LENGTH)
    exists = Conflict(f"you already have a persona {persona_id}", code="PERSONA_EXISTS", details={"field": "id"})
    if await _owned(session, user, persona_id) is not None:
        raise exists
    persona = Persona(
        id=str(uuid.uuid4()),
        slug=persona_id,
        user_id=user.id,
        name=name or persona_id,
        description=description,
        current_jobs={},
        status=RunStatus.CREATED.value,
    )
    session.add(persona)
    try:
        await session.commit()
    except IntegrityError as err:  # the same owner created it concurrently
        await session.rollback()
        raise exists from err
    return persona


async def get_persona(caller: Caller, persona_id: str) -> Persona:
    """The caller's persona, reconciled with Temporal (another user's is reported as not found)."""
    persona = await _owned(caller.session, caller.user, persona_id)
    if persona is None:
        raise NotFound(f"persona {persona_id} not found", code="PERSONA_NOT_FOUND")
    await reconcile(caller.session, caller.client, [persona])
    return persona


async def add_document(
    caller: Caller, persona_id: str, collection: Collection, filename: str, stream: BinaryIO
) -> tuple[str, int]:
    """Store an uploaded document of one of the caller's personas (ingested by its next ingestion).

    Works and profile take ``.txt``/``.md`` files; quotes take one ``.jsonl`` file (it replaces the last one).
    At most ``max_upload_bytes``; the name is made safe. Returns the name it is stored under and its size.
    """
    persona = await get_persona(caller, persona_id)
    name = safe_filename(filename)
    suffixes = UPLOAD_SUFFIXES[collection]
    if not name.lower().endswith(suffixes):
        raise BadInput(
            f"{collection.value} documents must be {' or '.join(suffixes)} files, got {name!r}",
            code="BAD_DOCUMENT_TYPE",
            details={"field": "file", "accepted": list(suffixes)},
        )
    stored = QUOTES_FILE if collection == Collection.QUOTES else name
    key = f"{contract.upload_prefix(persona.user_id, persona.slug)}{collection.value}/{stored}"
    limit = caller.settings.max_upload_bytes
    with tempfile.TemporaryDirectory(prefix="conveyor-persona-") as tmp:
        local = Path(tmp) / "document"
        size = await asyncio.to_thread(copy_limited, stream, local, limit, name)
        if size == 0:
            raise BadInput(f"file {name!r} is empty", code="EMPTY_FILE", details={"field": "file"})
        await asyncio.to_thread(caller.blobs.put_file, key, local)
    return f"{collection.value}/{stored}", size


async def jobs_of(caller: Caller, persona: Persona) -> list[IngestionJob]:
    """The jobs of the persona's latest ingestion, reconciled with Temporal."""
    ids = list(persona.current_jobs.values())
    if not ids:
        return []
    rows = list(await caller.session.scalars(select(IngestionJob).where(IngestionJob.id.in_(ids))))
    await reconcile(caller.session, caller.client, rows)
    order = {c.value: i for i, c in enumerate(Collection)}
    return sorted(rows, key=lambda j: order.get(j.collection, 9))


async def get_job(caller: Caller, job_id: str) -> IngestionJob:
    """One of the caller's ingestion jobs."""
    job = await caller.session.get(IngestionJob, job_id)
    persona = None if job is None else await caller.session.get(Persona, job.persona_id)
    if job is None or persona is None or persona.user_id != caller.user.id:
        raise NotFound(f"job {job_id} not found", code="JOB_NOT_FOUND")
    await reconcile(caller.session, caller.client, [job])
    return job


async def slug_of_job(caller: Caller, job: IngestionJob) -> str:
    """The id (as its owner sees it) of the persona a job belongs to."""
    persona = await caller.session.get(Persona, job.persona_id)
    return persona.slug if persona is not None else job.persona_id


async def _estimated_chunks(caller: Caller, persona: Persona) -> int:
    """The most chunks the persona's corpus (its uploads and its folder on this disk) can embed: what is held."""
    prefix = contract.upload_prefix(persona.user_id, persona.slug)
    folder = contract.persona_folder(caller.settings.persona_data_root_resolved, persona.user_id, persona.slug)

    def measure() -> tuple[int, int]:
        sizes = [b.size for b in caller.blobs.list(prefix)]
        if folder.is_dir():
            sizes += [f.stat().st_size for f in folder.rglob("*") if f.is_file()]
        return sum(sizes), len(sizes)

    corpus_bytes, files = await asyncio.to_thread(measure)
    return contract.estimated_chunks(corpus_bytes, files)


async def start_ingestion(caller: Caller, persona_id: str) -> IngestStarted:
    """Create the three jobs and start the ingestion; while one runs, answer with the running one.

    The request names the persona's key only: the worker finds its files from its own settings and the rows.
    """
    session = caller.session
    persona = await get_persona(caller, persona_id)
    workflow_id = contract.workflow_id_for(persona.id)
    if persona.status in ACTIVE:
        return IngestStarted(persona, workflow_id, dict(persona.current_jobs), started=False)
    chunks = await _estimated_chunks(caller, persona)
    charge = RunCharge(contract.PERSONA_TABLE, persona.id, contract.CHUNK_PRICE.cost(chunks), {"chunks": chunks})
    # 429 past the cap, 402 without the credits for the corpus's estimated chunks: before anything is queued
    (held,) = await admit(
        session,
        caller.settings,
        caller.user.id,
        contract.PIPELINE,
        group=workflow_id,
        charges=[charge],
        client=caller.client,
    )
    await session.refresh(persona)  # read under the user's lock: a concurrent request may have started it
    if persona.status in ACTIVE:
        await session.rollback()
        return IngestStarted(persona, workflow_id, dict(persona.current_jobs), started=False)
    jobs = {c.value: str(uuid.uuid4()) for c in Collection}
    for collection, job_id in jobs.items():
        session.add(
            IngestionJob(
                id=job_id,
                persona_id=persona.id,
                collection=collection,
                status=RunStatus.QUEUED.value,
                warnings=[],
                workflow_id=workflow_id,
            )
        )
    previous = dict(persona.current_jobs), persona.status
    persona.current_jobs = jobs
    persona.workflow_id = workflow_id
    persona.set_status(RunStatus.QUEUED, stage="queued")
    await session.commit()
    request = IngestRequest(persona_id=persona.id, job_ids={Collection(c): j for c, j in jobs.items()})
    started = await start_workflow(caller.client, contract.INGEST_START, request, id=workflow_id, owner=caller.user.id)
    if not started:  # a concurrent request won: report its jobs, drop ours
        persona.current_jobs, persona.status = previous[0], RunStatus.RUNNING.value
        await credits.settle(session, held.reference, 0, reason="persona ingestion already running")
        for job_id in jobs.values():
            job = await session.get(IngestionJob, job_id)
            if job is not None:
                await session.delete(job)
        await session.commit()
        return IngestStarted(persona, workflow_id, previous[0], started=False)
    return IngestStarted(persona, workflow_id, jobs, started=True)


async def cancel_ingestion(caller: Caller, persona_id: str) -> Persona:
    """Cancel the persona's running ingestion; its unfinished jobs and the persona end ``cancelled``."""
    persona = await get_persona(caller, persona_id)
    if persona.status == RunStatus.CREATED:
        raise Conflict(f"persona {persona_id} has never been ingested", code="NOT_INGESTING")
    await cancel_run(
        caller.session, caller.client, persona, what=f"the ingestion of {persona_id}", finished_code="NOT_INGESTING"
    )
    return persona


async def search(caller: Caller, persona: Persona, request: SearchRequest) -> SearchResult:
    """Ranked passages for a question, searched on a persona worker (where the vector store lives)."""
    if persona.status == RunStatus.CREATED:
        raise Conflict(f"persona {persona.slug} has not been ingested yet", code="PERSONA_NOT_INGESTED")
    search_id = f"persona-search-{persona.id}-{uuid.uuid4().hex[:12]}"
    result: SearchResult = await execute_workflow(
        caller.client, contract.SEARCH_START, request, SearchResult, id=search_id, owner=caller.user.id
    )
    return result
