"""Persona ingestion against a real Chroma server (``chroma run``) matches the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.persona.embedder import shared_embedder
from activities.persona.ingest import IngestProgress, ingest_collection
from activities.persona.schemas import Collection, CollectionRun
from activities.persona.sources import stage_seed_layout
from activities.persona.vectors import VectorStore, open_chroma

pytestmark = pytest.mark.process  # a `chroma run` server of its own

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "personas"


def _ingest(store: VectorStore, folder: Path) -> dict[Collection, int]:
    if not folder.is_dir():
        stage_seed_layout(SAMPLES, "franklin", folder)
    counts = {}
    for collection in Collection:
        run = CollectionRun(persona_id="franklin", collection=collection, job_id="j")
        counts[collection] = ingest_collection(
            run, folder, store, shared_embedder(), IngestProgress(), lambda _p: None
        ).total_vectors
    return counts


def test_ingesting_into_a_chroma_server_matches_the_embedded_store(chroma_server: str, tmp_path: Path) -> None:
    server = VectorStore(open_chroma(None, chroma_server))
    embedded = VectorStore(open_chroma(tmp_path / "chroma"))
    folder = tmp_path / "franklin"
    assert _ingest(server, folder) == _ingest(embedded, folder)
    again = _ingest(server, folder)  # idempotent on the server too
    assert again[Collection.QUOTES] == 50
    question = "How long can you host guests before they wear out their welcome?"
    ranked_server = [h.id for h in server.query("franklin", ["quotes", "works"], question, 3)]
    ranked_embedded = [h.id for h in embedded.query("franklin", ["quotes", "works"], question, 3)]
    assert ranked_server == ranked_embedded
    assert "Fish and visitors" in server.query("franklin", ["quotes"], question, 1)[0].text
