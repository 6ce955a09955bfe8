"""The persona pipeline's light contract (seed 002): queue, workflow ids, activity names, manifest."""

from __future__ import annotations

from datetime import timedelta

from conveyor.pipeline import Launch, Pipeline, Queue

NAME = "persona"
INGEST_QUEUE = "persona.ingest"

INGEST_WORKFLOW = "PersonaIngestionWorkflow"
SEARCH_WORKFLOW = "PersonaSearchWorkflow"
#: Seed: time_limit=7200 s (hard), soft_time_limit=6900 s.
HARD_LIMIT = timedelta(hours=2)
SEARCH_TIMEOUT = timedelta(seconds=60)
INGEST_START = Launch(INGEST_WORKFLOW, INGEST_QUEUE, HARD_LIMIT)
SEARCH_START = Launch(SEARCH_WORKFLOW, INGEST_QUEUE, SEARCH_TIMEOUT)

INGEST_COLLECTION = "persona.ingest_collection"
SEARCH = "persona.search"
#: The persona's and its jobs' bookkeeping before the kernel's ``conveyor.record_run``.
LEGACY_SET_STATUS = "persona.set_status"
LEGACY_FINISH_JOB = "persona.finish_job"

#: Run tables: the persona (its latest ingestion) and one job per collection.
PERSONA_TABLE = "personas"
JOB_TABLE = "ingestion_jobs"


def workflow_id_for(persona_id: str) -> str:
    """The ingestion workflow id of a persona (one at a time: a second request finds the running one)."""
    return f"persona-ingest-{persona_id}"


PIPELINE = Pipeline(
    name=NAME,
    description="persona works, quotes and profile into a vector store, and searches over them (seed 002)",
    queues=(
        Queue(
            INGEST_QUEUE,
            2,
            "persona collections into the vector store, and searches",
            workflows=("PersonaIngestionWorkflow", "PersonaSearchWorkflow"),
            legacy=("persona",),
        ),
    ),
    legacy_bookkeeping=(LEGACY_SET_STATUS, LEGACY_FINISH_JOB),
)
