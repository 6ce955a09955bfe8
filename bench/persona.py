"""Benchmark: persona ingestion (chunks/s) through Conveyor vs the same chunker + embedder + Chroma upsert called
directly in one process, over the same corpus, in one run.

1. Builds a corpus: the bundled persona plus ``--works`` generated essays (about 15 chunks each).
2. Direct: ``ingest_collection`` for profile, works and quotes in this process, into a fresh embedded Chroma.
3. Conveyor: ``PersonaIngestionWorkflow`` on the real dev server with a ``conveyor worker -q persona.ingest`` process
   (its own embedded Chroma), timed from the start request to the workflow's result; profile first, then works
   and quotes in parallel, exactly as in production. Each round uses a fresh persona id so every chunk is
   embedded again. The two alternate ``--rounds`` times; the best of each is compared.
4. Peak memory of the worker process (sampled once a second).

Prints chunks/s of both and the ratio (target ≥ 0.9). Usage: ``python -m bench.persona [--works N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.persona.embedder import shared_embedder
from activities.persona.ingest import IngestProgress, ingest_collection
from activities.persona.schemas import Collection, CollectionRun, IngestResult
from activities.persona.sources import persona_folder, stage_seed_layout
from activities.persona.vectors import VectorStore, open_chroma
from api.caller import Caller
from api.services import persona as service
from bench.crawl import _Sampler
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.storage import blob_store_from_url
from conveyor.temporal import start_ephemeral_server as start_dev_server

console = Console()
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "personas"


def build_corpus(folder: Path, works: int) -> None:
    """The bundled persona in a persona's ``folder`` plus generated essays."""
    stage_seed_layout(SAMPLES, "franklin", folder)
    words = " ".join(p.read_text() for p in (SAMPLES / "data" / "franklin" / "works").glob("*")).split()
    rng = random.Random(works)  # the same essays for every persona id: both sides ingest identical files
    for i in range(works):
        paragraphs = [" ".join(rng.choice(words) for _ in range(60)).capitalize() + "." for _ in range(12)]
        text = f"Essay {i}\n\n" + "\n\n".join(paragraphs)
        (folder / "works" / f"essay_{i:03d}.txt").write_text(text)


def run_direct(folder: Path, persona_id: str) -> tuple[int, float]:
    """Ingest all three collections in-process; returns (chunks, seconds)."""
    chroma = Path(tempfile.mkdtemp(prefix="bench-persona-direct-"))
    store = VectorStore(open_chroma(chroma))
    embedder = shared_embedder()
    started = time.perf_counter()
    chunks = 0
    for collection in (Collection.PROFILE, Collection.WORKS, Collection.QUOTES):
        run = CollectionRun(persona_id=persona_id, collection=collection, job_id="bench")
        chunks += ingest_collection(run, folder, store, embedder, IngestProgress(), lambda _p: None).added
    return chunks, time.perf_counter() - started


async def run_conveyor(
    settings: Settings, client: Client, sessions: async_sessionmaker[AsyncSession], persona_id: str, works: int
) -> tuple[int, float]:
    """Ingest through the workflow; returns (chunks, seconds from the start request to the result)."""
    async with sessions() as session:
        user, _ = await create_user(session, f"bench-{persona_id}", 10**9)
        await session.commit()
        folder = persona_folder(settings.persona_data_root_resolved, user.id, persona_id)
        await asyncio.to_thread(build_corpus, folder, works)
        started = time.perf_counter()
        await service.create_persona(session, user, persona_id, persona_id, "")
        blobs = blob_store_from_url(settings.blob_url_resolved)
        caller = Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)
        begun = await service.start_ingestion(caller, persona_id)
    result = await client.get_workflow_handle(begun.workflow_id, result_type=IngestResult).result()
    seconds = time.perf_counter() - started
    assert result.status == "completed", result
    return sum(o.added for o in result.collections.values() if o is not None), seconds


async def main(works: int, rounds: int) -> None:
    """Alternate direct and Conveyor ingestion ``rounds`` times and print the comparison."""
    var = Path(tempfile.mkdtemp(prefix="conveyor-bench-persona-"))
    env = await start_dev_server()
    settings = Settings(var_dir=var, temporal_address=env.client.service_client.config.target_host)
    root = settings.persona_data_root_resolved
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    worker_env = {**os.environ, "CONVEYOR_VAR_DIR": str(var), "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address}
    worker_env["CONVEYOR_LOG_LEVEL"] = "warning"
    log = (var / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "-q", "persona.ingest"], env=worker_env, stdout=log, stderr=log
    )
    direct: list[tuple[int, float]] = []
    ours: list[tuple[int, float]] = []
    peak = peak_uss = 0
    try:
        await asyncio.to_thread(build_corpus, root / "direct" / "warmup", 1)
        await run_conveyor(settings, env.client, sessions, "warmup", 1)  # loads the model in the worker
        await asyncio.to_thread(run_direct, root / "direct" / "warmup", "warmup")
        for i in range(rounds):
            persona = f"bench-{i}"
            await asyncio.to_thread(build_corpus, root / "direct" / persona, works)
            direct.append(await asyncio.to_thread(run_direct, root / "direct" / persona, persona))
            sampler = _Sampler(worker.pid)
            ours.append(await run_conveyor(settings, env.client, sessions, f"{persona}-c", works))
            rss, uss = sampler.stop()
            peak, peak_uss = max(peak, rss), max(peak_uss, uss)
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        await engine.dispose()
        await env.shutdown()
    best_direct = max(c / s for c, s in direct)
    best_ours = max(c / s for c, s in ours)
    table = Table(
        "side", "chunks", "seconds per round", "best chunks/s", title=f"persona ingestion, {works} extra works"
    )
    table.add_row(
        "direct (one process)", str(direct[0][0]), ", ".join(f"{s:.2f}" for _, s in direct), f"{best_direct:.1f}"
    )
    table.add_row("Conveyor workflow", str(ours[0][0]), ", ".join(f"{s:.2f}" for _, s in ours), f"{best_ours:.1f}")
    console.print(table)
    console.print(f"ratio Conveyor/direct = {best_ours / best_direct:.3f} (target ≥ 0.9)")
    console.print(f"persona worker peak: USS {peak_uss / 2**20:.0f} MiB (RSS {peak / 2**20:.0f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.works, args.rounds))
