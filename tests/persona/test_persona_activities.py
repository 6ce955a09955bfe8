"""The persona ingestion activity itself: a cancellation stops its blocking work instead of letting it run on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from temporalio.testing import ActivityEnvironment

from activities.persona.activities import PersonaActivities
from activities.persona.embedder import DIMENSIONS
from activities.persona.ingest import EMBED_BATCH
from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, CollectionRun
from activities.persona.sources import persona_folder
from activities.persona.vectors import VectorStore, open_chroma
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.runs import RunStatus
from conveyor.settings import Settings
from tests.helpers import assert_eventually

PERSONA = "gated"
FILES = 3


class GatedEmbedder:
    """Counts tokens as words and makes random unit vectors; its second batch waits until the test releases it."""

    def __init__(self) -> None:
        self.batches = 0
        self.embedded = 0
        self.reached = threading.Event()
        self.release = threading.Event()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed_array(self, texts: Sequence[str], batch_size: int = 32) -> Any:
        self.batches += 1
        self.embedded += len(texts)
        if self.batches == 2:
            self.reached.set()
            assert self.release.wait(60), "the test never released the second batch"
        vectors = np.random.default_rng(self.batches).normal(size=(len(texts), DIMENSIONS)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _works(persona: Path) -> None:
    """Three works of 60 paragraphs each (one chunk per paragraph: two batches per file)."""
    folder = persona / "works"
    folder.mkdir(parents=True)
    for f in range(FILES):
        paragraphs = [" ".join(f"w{f}p{p}x{i}" for i in range(90)) + "." for p in range(60)]
        (folder / f"essay_{f}.txt").write_text("\n\n".join(paragraphs), "utf-8")


async def test_a_cancelled_ingestion_stops_after_the_batch_it_is_storing(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    try:
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            user, _ = await create_user(session, "persona-activity", 0)
            session.add(
                Persona(id=PERSONA, slug=PERSONA, user_id=user.id, name=PERSONA, description="", current_jobs={})
            )
            await session.flush()
            session.add(IngestionJob(id="job-works", persona_id=PERSONA, collection="works", warnings=[]))
        await asyncio.to_thread(_works, persona_folder(tmp_path / "data", user.id, PERSONA))
        store = VectorStore(open_chroma(tmp_path / "chroma"))
        embedder = GatedEmbedder()
        acts = PersonaActivities(
            sessions,
            lambda: store,
            lambda: embedder,  # type: ignore[arg-type,return-value]
            data_root=tmp_path / "data",
        )
        run = CollectionRun(persona_id=PERSONA, collection=Collection.WORKS, job_id="job-works")
        env = ActivityEnvironment()
        ingesting = asyncio.create_task(env.run(acts.ingest_collection, run))

        async def second_batch_embedding() -> None:
            assert embedder.reached.is_set()

        await assert_eventually(second_batch_embedding)
        async with sessions() as session:
            job = await session.get(IngestionJob, "job-works")
            assert job is not None and job.status == RunStatus.RUNNING and job.stage == "ingesting"
        env.cancel()
        # released only after the activity task has handled the cancellation it was just sent (asyncio runs
        # callbacks in order), so the thread cannot finish the collection by racing the cancellation
        asyncio.get_running_loop().call_soon(embedder.release.set)
        with pytest.raises(asyncio.CancelledError):
            await ingesting
        # the batch being embedded was stored; nothing after it was embedded or stored
        assert embedder.batches == 2
        stored = store.existing_ids(store.collection(PERSONA, "works"))
        assert len(stored) == embedder.embedded > EMBED_BATCH
        assert {i.split("#")[0] for i in stored} == {"essay-0-txt"}
    finally:
        await engine.dispose()
