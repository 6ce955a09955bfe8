"""Personas: create, read, ingest (one run at a time), cancel, jobs and search. Shared by the HTTP API and the CLI."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persona import contract
from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, IngestRequest, SearchRequest, SearchResult
from api.caller import Caller
from api.runs import owned_run
from conveyor.client import execute_workflow, start_workflow
from conveyor.errors import BadInput, Conflict, NotFound
from conveyor.models import User
from conveyor.reconcile import cancel_run, reconcile
from conveyor.runs import ACTIVE, RunStatus

PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]$")


@dataclass
class IngestStarted:
    """The jobs and workflow of an ingestion (``started`` is False when one was already running)."""

    persona: Persona
    workflow_id: str
    jobs: dict[str, str]
    started: bool


async def create_persona(session: AsyncSession, user: User, persona_id: str, name: str, description: str) -> Persona:
    """A new persona, ``created`` until ingested (ids are lower-case slugs: they name its data folders)."""
    if not PERSONA_ID.match(persona_id):
        raise BadInput(
            f"persona id {persona_id!r} must be 3-64 lower-case letters, digits, '-' or '_'",
            code="BAD_PERSONA_ID",
            details={"field": "id"},
        )
    if await session.get(Persona, persona_id) is not None:
        raise Conflict(f"persona {persona_id} already exists", code="PERSONA_EXISTS")
    persona = Persona(
        id=persona_id,
        user_id=user.id,
        name=name or persona_id,
        description=description,
        current_jobs={},
        status=RunStatus.CREATED.value,
    )
    session.add(persona)
    await session.commit()
    return persona


async def get_persona(caller: Caller, persona_id: str) -> Persona:
    """The caller's persona, reconciled with Temporal (another user's is reported as not found)."""
    return await owned_run(caller, Persona, persona_id, what="persona", code="PERSONA_NOT_FOUND")


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
    if job is None:
        raise NotFound(f"job {job_id} not found", code="JOB_NOT_FOUND")
    await get_persona(caller, job.persona_id)
    await reconcile(caller.session, caller.client, [job])
    return job


async def start_ingestion(caller: Caller, persona_id: str, data_root: Path) -> IngestStarted:
    """Create the three jobs and start the ingestion; while one runs, answer with the running one."""
    session = caller.session
    persona = await get_persona(caller, persona_id)
    workflow_id = contract.workflow_id_for(persona.id)
    if persona.status in ACTIVE:
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
    request = IngestRequest(
        persona_id=persona.id, job_ids={Collection(c): j for c, j in jobs.items()}, data_root=str(data_root)
    )
    started = await start_workflow(caller.client, contract.INGEST_START, request, id=workflow_id, owner=caller.user.id)
    if not started:  # a concurrent request won: report its jobs, drop ours
        persona.current_jobs, persona.status = previous[0], RunStatus.RUNNING.value
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
        raise Conflict(f"persona {persona.id} has not been ingested yet", code="PERSONA_NOT_INGESTED")
    search_id = f"persona-search-{persona.id}-{uuid.uuid4().hex[:12]}"
    result: SearchResult = await execute_workflow(
        caller.client, contract.SEARCH_START, request, SearchResult, id=search_id, owner=caller.user.id
    )
    return result
