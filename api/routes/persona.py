"""Personas over HTTP: create, ingest (202 with the three job ids), watch jobs, cancel, search (seed 002)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, SearchRequest, SearchResult
from api.deps import CurrentUser, SessionDep, SettingsDep, TemporalDep
from api.runs import RunOut, add_listing, public
from api.services import persona as service
from conveyor.settings import Settings

router = APIRouter(prefix="/api", tags=["persona"])


class PersonaCreate(BaseModel):
    """A new persona."""

    id: str = Field(description="Slug naming the persona's data folders (data/<id>/…).")
    name: str = ""
    description: str = ""


class JobOut(RunOut):
    """An ingestion job (one collection of one run)."""

    job_id: str = Field(validation_alias="id")
    persona_id: str
    collection: str
    total_vectors: int
    added: int
    removed: int
    files_done: int
    files_total: int
    warnings: list[Any]


class PersonaOut(RunOut):
    """A persona (its run fields are its latest ingestion's) with that ingestion's jobs."""

    id: str
    name: str
    description: str
    last_ingested_at: datetime | None
    jobs: list[JobOut]


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


def persona_out(persona: Persona, settings: Settings, jobs: Sequence[IngestionJob] = ()) -> PersonaOut:
    """The public form of a persona."""
    return public(PersonaOut, persona, settings, jobs=[public(JobOut, j, settings) for j in jobs])


add_listing(
    router, "/personas", Persona, PersonaOut, persona_out, name="list_personas", description="Your personas, newest."
)


@router.post("/personas", response_model=PersonaOut, status_code=201)
async def create_persona(
    body: PersonaCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> PersonaOut:
    """Create a persona (``created`` until ingested)."""
    persona = await service.create_persona(session, user, body.id, body.name, body.description)
    return persona_out(persona, settings)


@router.get("/personas/{persona_id}", response_model=PersonaOut)
async def get_persona(
    persona_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> PersonaOut:
    """Status and latest jobs of one of your personas."""
    persona = await service.get_persona(session, client, user, persona_id)
    return persona_out(persona, settings, await service.jobs_of(session, client, persona))


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


@router.post("/personas/{persona_id}/cancel", response_model=PersonaOut, status_code=202)
async def cancel(
    persona_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> PersonaOut:
    """Cancel the persona's running ingestion: its unfinished jobs and the persona end ``cancelled``."""
    persona = await service.cancel_ingestion(session, client, user, persona_id)
    return persona_out(persona, settings, await service.jobs_of(session, client, persona))


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(
    job_id: str, user: CurrentUser, session: SessionDep, client: TemporalDep, settings: SettingsDep
) -> JobOut:
    """One ingestion job: status, progress, vectors, files, warnings, error."""
    return public(JobOut, await service.get_job(session, client, user, job_id), settings)


@router.post("/personas/{persona_id}/search", response_model=SearchResult)
async def search(
    persona_id: str, body: SearchIn, user: CurrentUser, session: SessionDep, client: TemporalDep
) -> SearchResult:
    """The passages that best answer a question, with source file, collection and score."""
    persona = await service.get_persona(session, client, user, persona_id)
    request = SearchRequest(persona_id=persona.id, query=body.query, k=body.k, collections=body.collections)
    return await service.search(client, user, persona, request)
