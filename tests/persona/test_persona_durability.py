"""Ingestion survives its worker being killed: kill -9 mid-collection, restart, same vectors, none twice."""

from __future__ import annotations

import asyncio
import random
import signal
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from activities.persona import contract
from activities.persona.chunking import chunk_id
from activities.persona.embedder import shared_embedder
from activities.persona.ingest import MAX_TOKENS, OVERLAP_TOKENS
from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, IngestResult
from activities.persona.sources import list_sources, persona_folder, read_source, stage_seed_layout
from activities.persona.vectors import VectorStore, open_chroma
from api.caller import Caller
from api.services import persona as service
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.storage import LocalBlobStore
from tests.helpers import assert_eventually, start_dev_server
from tests.helpers.processes import max_activity_attempt, spawn_worker, stop_all

pytestmark = [pytest.mark.process, pytest.mark.slow]

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "personas"
PERSONA = "franklin-big"


def _big_corpus(folder: Path, files: int = 36) -> None:
    """The bundled persona plus many generated works, so ingestion takes long enough to be interrupted."""
    stage_seed_layout(SAMPLES, "franklin", folder)
    words = (SAMPLES / "data" / "franklin" / "works" / "the_whistle.txt").read_text().split()
    rng = random.Random(7)
    for i in range(files):
        paragraphs = [" ".join(rng.choice(words) for _ in range(70)).capitalize() + "." for _ in range(14)]
        (folder / "works" / f"generated_{i:02d}.txt").write_text(f"Essay {i}\n\n" + "\n\n".join(paragraphs))


def _expected(folder: Path, collection: Collection) -> int:
    embedder = shared_embedder()
    ids: set[str] = set()
    for source in list_sources(folder, PERSONA, collection):
        read = read_source(
            source, collection, count_tokens=embedder.count_tokens, max_tokens=MAX_TOKENS, overlap_tokens=OVERLAP_TOKENS
        )
        ids.update(chunk_id(source.source, p.text) for p in read.pieces)
    return len(ids)


async def test_ingestion_completes_after_the_worker_is_killed_mid_collection() -> None:
    env = await start_dev_server()  # its own server: no in-process worker may take the retried collection
    var = Path(tempfile.mkdtemp(prefix="conveyor-persona-durability-"))
    settings = Settings(var_dir=var, temporal_address=env.client.service_client.config.target_host)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    first = spawn_worker(settings, [contract.INGEST_QUEUE], var / "worker1.log")
    second = None
    try:
        try:
            async with sessions() as session:
                user, _ = await create_user(session, "persona-durable", 10_000)
                await session.commit()
                folder = persona_folder(settings.persona_data_root_resolved, user.id, PERSONA)
                await asyncio.to_thread(_big_corpus, folder)
                expected = {c: await asyncio.to_thread(_expected, folder, c) for c in Collection}
                key = (await service.create_persona(session, user, PERSONA, "Franklin, long", "")).id
                blobs = LocalBlobStore(Path(settings.blob_url_resolved))
                caller = Caller(user=user, session=session, client=env.client, blobs=blobs, settings=settings)
                started = await service.start_ingestion(caller, PERSONA)
            works_job = started.jobs["works"]

            async def works_half_done() -> None:
                if first.poll() is not None:
                    pytest.fail(f"the worker exited: {(var / 'worker1.log').read_text(errors='replace')[-3000:]}")
                async with sessions() as session:
                    job = await session.get(IngestionJob, works_job)
                    assert job is not None and job.files_total > 0
                    assert job.added >= 60 and job.files_done < job.files_total - 5, (job.added, job.files_done)

            await assert_eventually(works_half_done, within_s=180, interval=0.1)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            second = spawn_worker(settings, [contract.INGEST_QUEUE], var / "worker2.log")
            handle = env.client.get_workflow_handle(started.workflow_id, result_type=IngestResult)
            result = await asyncio.wait_for(handle.result(), timeout=300)
        finally:
            stop_all(first, second)
        assert result.status == "completed" and not result.errors
        async with sessions() as session:
            persona = await session.get(Persona, key)
            assert persona is not None and persona.status == "completed" and persona.error_code is None
            jobs = {
                j.collection: j
                for j in await session.scalars(select(IngestionJob).where(IngestionJob.persona_id == key))
            }
        for collection in Collection:
            job = jobs[collection.value]
            assert job.status == "completed", (collection, job.status, job.error_message)
            assert job.total_vectors == expected[collection], (collection, job.total_vectors)
        works = jobs["works"]
        # the retry resumed: chunks stored before the kill were not embedded again (those after the last heartbeat
        # are found in Chroma and skipped, so they are not counted as added a second time)
        assert 0 < works.added <= expected[Collection.WORKS]
        store = VectorStore(open_chroma(settings.chroma_path_resolved))
        ids = store.existing_ids(store.collection(key, "works"))
        assert len(ids) == expected[Collection.WORKS]  # no duplicates
        assert max_activity_attempt(await handle.fetch_history()) >= 2
    finally:
        await engine.dispose()
        await env.shutdown()
