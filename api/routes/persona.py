"""Personas over HTTP: create, ingest (202 with the three job ids), watch jobs, search (seed 002)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, SearchRequest, SearchResult
from api.deps import CurrentUser, SessionDep, SettingsDep, TemporalDep
from api.services import persona as service
from conveyor.settings import Settings

router = APIRouter(prefix="/api", tags=["persona"])


class PersonaCreate(BaseModel):
    """A new persona."""

    id: str = Field(description="Slug naming the persona's data folders (data/<id>/…).")
    name: str = ""
    description: str = ""


class JobOut(BaseModel):
    """An ingestion job (one collection of one run)."""

    job_id: str
    persona_id: str
    collection: str
    status: str
    progress: int
    total_vectors: int
    added: int
    removed: int
    files_done: int
    files_total: int
    warnings: list[Any]
    error_code: str | None
    error_message: str | None
    workflow_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class PersonaOut(BaseModel):
    """A persona with its latest jobs."""

    id: str
    name: str
    description: str
    status: str
    status_reason: str | None
    workflow_id: str | None
    workflow_url: str | None
    jobs: list[JobOut]
    created_at: datetime
    updated_at: datetime
    last_ingested_at: datetime | None


class IngestOut(BaseModel):
    """Ingestion queued (or already running): the workflow and the three job ids."""

    persona_id: str
    workflow_id: str
    workflow_url: str
    jobs: dict[str, str]
    started: bool


class SearchIn(BaseModel):
    """A question to a persona's passages."""

    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=50)
    collections: list[Collection] = Field(default_factory=lambda: list(Collection))


def job_out(job: IngestionJob) -> JobOut:
    """The public form of a job."""
    return JobOut(
        job_id=job.id,
        persona_id=job.persona_id,
        collection=job.collection,
        status=job.status,
        progress=job.progress,
        total_vectors=job.total_vectors,
        added=job.added,
        removed=job.removed,
        files_done=job.files_done,
        files_total=job.files_total,
        warnings=list(job.warnings),
        error_code=job.error_code,
        error_message=job.error_message,
        workflow_id=job.workflow_id,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
    )


def persona_out(persona: Persona, jobs: list[IngestionJob], settings: Settings) -> PersonaOut:
    """The public form of a persona."""
    return PersonaOut(
        id=persona.id,
        name=persona.name,
        description=persona.description,
        status=persona.status,
        status_reason=persona.status_reason,
        workflow_id=persona.workflow_id,
        workflow_url=settings.workflow_ui_url(persona.workflow_id) if persona.workflow_id else None,
        jobs=[job_out(j) for j in jobs],
        created_at=persona.created_at,
        updated_at=persona.updated_at,
        last_ingested_at=persona.last_ingested_at,
    )


@router.post("/personas", response_model=PersonaOut, status_code=201)
async def create_persona(
    body: PersonaCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> PersonaOut:
    """Create a ``draft`` persona."""
    persona = await service.create_persona(session, user, body.id, body.name, body.description)
    return persona_out(persona, [], settings)


@router.get("/personas/{persona_id}", response_model=PersonaOut)
async def get_persona(persona_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> PersonaOut:
    """Status and latest jobs of one of your personas."""
    persona = await service.get_persona(session, user, persona_id)
    return persona_out(persona, await service.jobs_of(session, persona), settings)


@router.post("/personas/{persona_id}/ingest", response_model=IngestOut, status_code=202)
async def ingest(
    persona_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> IngestOut:
    """Ingest the persona's works, quotes and profile; while one ingestion runs, answers with it."""
    started = await service.start_ingestion(session, client, user, persona_id, settings.persona_data_root_resolved)
    return IngestOut(
        persona_id=persona_id,
        workflow_id=started.workflow_id,
        workflow_url=settings.workflow_ui_url(started.workflow_id),
        jobs=started.jobs,
        started=started.started,
    )


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, user: CurrentUser, session: SessionDep) -> JobOut:
    """One ingestion job: status, progress, vectors, files, warnings, error."""
    return job_out(await service.get_job(session, user, job_id))


@router.post("/personas/{persona_id}/search", response_model=SearchResult)
async def search(
    persona_id: str, body: SearchIn, user: CurrentUser, session: SessionDep, client: TemporalDep
) -> SearchResult:
    """The passages that best answer a question, with source file, collection and score."""
    persona = await service.get_persona(session, user, persona_id)
    request = SearchRequest(persona_id=persona.id, query=body.query, k=body.k, collections=body.collections)
    return await service.search(client, user, persona, request)
