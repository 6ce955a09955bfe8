"""The persona pipeline's light contract (seed 002): queue, workflow ids, activity names, manifest."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from conveyor.errors import BadInput
from conveyor.pipeline import Launch, Pipeline, Price, Queue

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


#: A persona id: a lower-case slug of 3-64 characters (``\Z``: ``$`` would let a trailing newline through).
PERSONA_ID = re.compile(r"\A[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]\Z")
#: Longest persona name and description (the columns' lengths).
NAME_LENGTH = 200
DESCRIPTION_LENGTH = 10_000
#: Blob keys of a persona's uploaded documents start ``personas/<owner>/<id>/``.
UPLOAD_PREFIX = "personas"


def check_persona_id(persona_id: str) -> str:
    """``persona_id`` if it is a valid slug (BadInput naming the field otherwise; a trailing newline is no slug)."""
    if not PERSONA_ID.match(persona_id):
        raise BadInput(
            f"persona id {persona_id!r} must be 3-64 lower-case letters, digits, '-' or '_'",
            code="BAD_PERSONA_ID",
            details={"field": "id"},
        )
    return persona_id


def persona_folder(data_root: Path, owner: int, persona_id: str) -> Path:
    """The folder of one owner's persona, ``<data_root>/<owner>/<id>``: derived from validated ids only."""
    root = data_root.resolve()
    folder = (root / str(int(owner)) / check_persona_id(persona_id)).resolve()
    if not folder.is_relative_to(root):  # unreachable with a valid slug; kept so no later change can escape
        raise BadInput(
            f"persona id {persona_id!r} leaves the data root", code="BAD_PERSONA_ID", details={"field": "id"}
        )
    return folder


def upload_prefix(owner: int, persona_id: str) -> str:
    """The blob prefix of one owner's persona's uploads (the worker copies them into the persona's folder)."""
    return f"{UPLOAD_PREFIX}/{int(owner)}/{check_persona_id(persona_id)}/"


def workflow_id_for(persona_id: str) -> str:
    """The ingestion workflow id of a persona (one at a time: a second request finds the running one)."""
    return f"persona-ingest-{persona_id}"


#: An ingestion pays per chunk it embedded; a start holds an estimate from the corpus's size.
CHUNK_PRICE = Price(
    "chunk", 1, "one chunk embedded into the vector store; a start holds an estimate from the corpus bytes"
)
#: Corpus bytes per chunk when estimating a start's hold (chunks are ≤ 200 tokens with 40 overlapping, ~4 bytes each).
BYTES_PER_CHUNK = 500


def estimated_chunks(corpus_bytes: int, files: int) -> int:
    """The chunks a corpus of ``corpus_bytes`` in ``files`` files may embed at most (what a start holds)."""
    return -(-max(0, corpus_bytes) // BYTES_PER_CHUNK) + max(0, files)


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
    prices=(CHUNK_PRICE,),
    max_running=2,
)
