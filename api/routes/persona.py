"""Personas over HTTP: create, ingest (202 with the three job ids), watch jobs, cancel, search (seed 002)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field

from activities.persona import contract
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

    # The constraints are documented in the schema (clients and generators read them) and checked by the service,
    # which answers 400 naming the field rather than a validation 422.
    id: str = Field(
        description="Slug of 3-64 lower-case letters, digits, '-' or '_', unique among your personas.",
        json_schema_extra={"pattern": "^[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]$"},
    )
    name: str = Field(
        "",
        description=f"At most {contract.NAME_LENGTH} characters (default: the id).",
        json_schema_extra={"maxLength": contract.NAME_LENGTH},
    )
    description: str = Field(
        "",
        description=f"At most {contract.DESCRIPTION_LENGTH} characters.",
        json_schema_extra={"maxLength": contract.DESCRIPTION_LENGTH},
    )


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

    id: str = Field(validation_alias="slug")
    name: str
    description: str
    last_ingested_at: datetime | None
    jobs: list[JobOut]


class DocumentOut(BaseModel):
    """A stored document of a persona (ingested by its next ingestion)."""

    persona_id: str
    collection: Collection
    name: str = Field(description="Where it is kept in the persona's corpus: <collection>/<file name>.")
    size: int


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
    """The public form of a persona (its id as its owner named it; its jobs name it the same way)."""
    return public(
        PersonaOut, persona, settings, jobs=[public(JobOut, j, settings, persona_id=persona.slug) for j in jobs]
    )


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


@router.post("/personas/{persona_id}/documents", response_model=DocumentOut, status_code=201)
async def add_document(
    persona_id: str,
    file: Annotated[UploadFile, File(description="works/profile: a .txt or .md file; quotes: a .jsonl file")],
    caller: CallerDep,
    collection: Annotated[Collection, Form(description="works, quotes or profile")] = Collection.WORKS,
) -> DocumentOut:
    """Add a document to the persona's corpus (a file of the same name is replaced); then ingest."""
    name, size = await service.add_document(caller, persona_id, collection, file.filename or "upload.txt", file.file)
    return DocumentOut(persona_id=persona_id, collection=collection, name=name, size=size)


@router.post("/personas/{persona_id}/ingest", response_model=IngestOut, status_code=202)
async def ingest(persona_id: str, caller: CallerDep) -> IngestOut:
    """Ingest the persona's works, quotes and profile; while one ingestion runs, answers with it."""
    settings = caller.settings
    started = await service.start_ingestion(caller, persona_id)
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
    job = await service.get_job(caller, job_id)
    return public(JobOut, job, caller.settings, persona_id=await service.slug_of_job(caller, job))


@router.post("/personas/{persona_id}/search", response_model=SearchResult)
async def search(persona_id: str, body: SearchIn, caller: CallerDep) -> SearchResult:
    """The passages that best answer a question, with source file, collection and score."""
    persona = await service.get_persona(caller, persona_id)
    request = SearchRequest(persona_id=persona.id, query=body.query, k=body.k, collections=body.collections)
    found = await service.search(caller, persona, request)
    return found.model_copy(update={"persona_id": persona.slug})
