"""Personas over HTTP: create, ingest (202 with the three job ids), watch jobs, cancel, search (seed 002)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, SearchRequest, SearchResult
from api.caller import Caller
from api.deps import CallerDep, CurrentUser, SessionDep, SettingsDep
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


LISTING = "Your personas, newest first."
add_listing(router, "/personas", Persona, PersonaOut, persona_out, name="list_personas", description=LISTING)


@router.post("/personas", response_model=PersonaOut, status_code=201)
async def create_persona(
    body: PersonaCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> PersonaOut:
    """Create a persona (``created`` until ingested)."""
    persona = await service.create_persona(session, user, body.id, body.name, body.description)
    return persona_out(persona, settings)


async def _with_jobs(caller: Caller, persona: Persona) -> PersonaOut:
    return persona_out(persona, caller.settings, await service.jobs_of(caller, persona))


@router.get("/personas/{persona_id}", response_model=PersonaOut)
async def get_persona(persona_id: str, caller: CallerDep) -> PersonaOut:
    """Status and latest jobs of one of your personas."""
    return await _with_jobs(caller, await service.get_persona(caller, persona_id))


@router.post("/personas/{persona_id}/ingest", response_model=IngestOut, status_code=202)
async def ingest(persona_id: str, caller: CallerDep) -> IngestOut:
    """Ingest the persona's works, quotes and profile; while one ingestion runs, answers with it."""
    settings = caller.settings
    started = await service.start_ingestion(caller, persona_id, settings.persona_data_root_resolved)
    return IngestOut(
        persona_id=persona_id,
        workflow_id=started.workflow_id,
        workflow_url=settings.workflow_ui_url(started.workflow_id),
        jobs=started.jobs,
        started=started.started,
    )


@router.post("/personas/{persona_id}/cancel", response_model=PersonaOut, status_code=202)
async def cancel(persona_id: str, caller: CallerDep) -> PersonaOut:
    """Cancel the persona's running ingestion: its unfinished jobs and the persona end ``cancelled``."""
    return await _with_jobs(caller, await service.cancel_ingestion(caller, persona_id))


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, caller: CallerDep) -> JobOut:
    """One ingestion job: status, progress, vectors, files, warnings, error."""
    return public(JobOut, await service.get_job(caller, job_id), caller.settings)


@router.post("/personas/{persona_id}/search", response_model=SearchResult)
async def search(persona_id: str, body: SearchIn, caller: CallerDep) -> SearchResult:
    """The passages that best answer a question, with source file, collection and score."""
    persona = await service.get_persona(caller, persona_id)
    request = SearchRequest(persona_id=persona.id, query=body.query, k=body.k, collections=body.collections)
    return await service.search(caller, persona, request)
