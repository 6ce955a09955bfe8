"""Persona ingestion against a real Chroma server (``chroma run``) matches the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.persona.embedder import shared_embedder
from activities.persona.ingest import IngestProgress, ingest_collection
from activities.persona.schemas import Collection, CollectionRun
from activities.persona.vectors import VectorStore, open_chroma

pytestmark = pytest.mark.process  # a `chroma run` server of its own

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "personas"


def _ingest(store: VectorStore) -> dict[Collection, int]:
    counts = {}
    for collection in Collection:
        run = CollectionRun(persona_id="franklin", collection=collection, job_id="j", data_root=str(SAMPLES))
        counts[collection] = ingest_collection(
            run, store, shared_embedder(), IngestProgress(), lambda _p: None
        ).total_vectors
    return counts


def test_ingesting_into_a_chroma_server_matches_the_embedded_store(chroma_server: str, tmp_path: Path) -> None:
    server = VectorStore(open_chroma(None, chroma_server))
    embedded = VectorStore(open_chroma(tmp_path / "chroma"))
    assert _ingest(server) == _ingest(embedded)
    again = _ingest(server)  # idempotent on the server too
    assert again[Collection.QUOTES] == 50
    question = "How long can you host guests before they wear out their welcome?"
    ranked_server = [h.id for h in server.query("franklin", ["quotes", "works"], question, 3)]
    ranked_embedded = [h.id for h in embedded.query("franklin", ["quotes", "works"], question, 3)]
    assert ranked_server == ranked_embedded
    assert "Fish and visitors" in server.query("franklin", ["quotes"], question, 1)[0].text
