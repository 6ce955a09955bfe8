"""Personas: create, read, ingest (one run at a time), jobs and search. Shared by the HTTP API and the CLI."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.persona.models import IngestionJob, JobStatus, Persona, PersonaStatus
from activities.persona.schemas import Collection, IngestRequest, SearchRequest, SearchResult
from conveyor.errors import BadInput, Conflict, ExternalServiceError, NotFound
from conveyor.models import User
from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR
from workflows.persona import (
    HARD_LIMIT,
    TASK_QUEUE,
    PersonaIngestionWorkflow,
    PersonaSearchWorkflow,
    workflow_id_for,
)

PERSONA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]$")
SEARCH_TIMEOUT = timedelta(seconds=60)


@dataclass
class IngestStarted:
    """The jobs and workflow of an ingestion (``started`` is False when one was already running)."""

    persona: Persona
    workflow_id: str
    jobs: dict[str, str]
    started: bool


def _attrs(pipeline: str, user_id: int) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(PIPELINE_ATTR, pipeline), SearchAttributePair(OWNER_ATTR, str(user_id))]
    )


async def create_persona(session: AsyncSession, user: User, persona_id: str, name: str, description: str) -> Persona:
    """A new ``draft`` persona (ids are lower-case slugs: they name its data folders)."""
    if not PERSONA_ID.match(persona_id):
        raise BadInput(
            f"persona id {persona_id!r} must be 3-64 lower-case letters, digits, '-' or '_'",
            code="BAD_PERSONA_ID",
            details={"field": "id"},
        )
    if await session.get(Persona, persona_id) is not None:
        raise Conflict(f"persona {persona_id} already exists", code="PERSONA_EXISTS")
    persona = Persona(id=persona_id, user_id=user.id, name=name or persona_id, description=description, current_jobs={})
    session.add(persona)
    await session.commit()
    return persona


async def get_persona(session: AsyncSession, user: User, persona_id: str) -> Persona:
    """The user's persona (another user's is reported as not found)."""
    persona = await session.get(Persona, persona_id)
    if persona is None or persona.user_id != user.id:
        raise NotFound(f"persona {persona_id} not found", code="PERSONA_NOT_FOUND")
    return persona


async def jobs_of(session: AsyncSession, persona: Persona) -> list[IngestionJob]:
    """The jobs of the persona's latest ingestion."""
    ids = list(persona.current_jobs.values())
    if not ids:
        return []
    rows = await session.scalars(select(IngestionJob).where(IngestionJob.id.in_(ids)))
    order = {c.value: i for i, c in enumerate(Collection)}
    return sorted(rows, key=lambda j: order.get(j.collection, 9))


async def get_job(session: AsyncSession, user: User, job_id: str) -> IngestionJob:
    """One of the user's ingestion jobs."""
    job = await session.get(IngestionJob, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", code="JOB_NOT_FOUND")
    await get_persona(session, user, job.persona_id)
    return job


async def _running(client: Client, workflow_id: str) -> bool:
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False
    return desc.status == WorkflowExecutionStatus.RUNNING


async def start_ingestion(
    session: AsyncSession, client: Client, user: User, persona_id: str, data_root: Path
) -> IngestStarted:
    """Create the three jobs and start the ingestion; while one runs, answer with the running one."""
    persona = await get_persona(session, user, persona_id)
    workflow_id = workflow_id_for(persona.id)
    if persona.status == PersonaStatus.INGESTING and await _running(client, workflow_id):
        return IngestStarted(persona, workflow_id, dict(persona.current_jobs), started=False)
    jobs = {c.value: str(uuid.uuid4()) for c in Collection}
    for collection, job_id in jobs.items():
        session.add(
            IngestionJob(
                id=job_id,
                persona_id=persona.id,
                collection=collection,
                status=JobStatus.PENDING.value,
                warnings=[],
                workflow_id=workflow_id,
            )
        )
    previous = dict(persona.current_jobs)
    persona.current_jobs = jobs
    persona.workflow_id = workflow_id
    await session.commit()
    try:
        await client.start_workflow(
            PersonaIngestionWorkflow.run,
            IngestRequest(
                persona_id=persona.id, job_ids={Collection(c): j for c, j in jobs.items()}, data_root=str(data_root)
            ),
            id=workflow_id,
            task_queue=TASK_QUEUE,
            execution_timeout=HARD_LIMIT,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=_attrs("persona", user.id),
        )
    except WorkflowAlreadyStartedError:
        persona.current_jobs = previous  # a concurrent request won: report its jobs, drop ours
        for job_id in jobs.values():
            job = await session.get(IngestionJob, job_id)
            if job is not None:
                await session.delete(job)
        await session.commit()
        return IngestStarted(persona, workflow_id, previous, started=False)
    except RPCError as err:
        raise ExternalServiceError(f"could not start the workflow: {err.message}", code="TEMPORAL_UNAVAILABLE") from err
    return IngestStarted(persona, workflow_id, jobs, started=True)


async def search(client: Client, user: User, persona: Persona, request: SearchRequest) -> SearchResult:
    """Ranked passages for a question, searched on a persona worker (where the vector store lives)."""
    if persona.status not in (PersonaStatus.ACTIVE, PersonaStatus.INGESTING, PersonaStatus.FAILED):
        raise Conflict(f"persona {persona.id} has not been ingested yet", code="PERSONA_NOT_INGESTED")
    result: SearchResult = await client.execute_workflow(
        PersonaSearchWorkflow.run,
        request,
        id=f"persona-search-{persona.id}-{uuid.uuid4().hex[:12]}",
        task_queue=TASK_QUEUE,
        execution_timeout=SEARCH_TIMEOUT,
        search_attributes=_attrs("persona", user.id),
    )
    return result
