"""The persona's vectors in ChromaDB: one collection per persona and kind, cosine space, our offline embedder.

Importing this module registers :class:`MiniLmEmbeddingFunction` with Chroma, so collections it created can be
opened again in any process without Chroma reaching for its downloading default embedding function.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Embeddable, Embedding, EmbeddingFunction, GetResult, Metadata, Where
from chromadb.config import Settings
from chromadb.errors import NotFoundError

from activities.persona.embedder import MiniLmEmbeddingFunction
from conveyor.errors import BadInput, ExternalServiceError

#: Longest collection name every Chroma backend accepts (the embedded one stops at 63).
MAX_NAME_LENGTH = 63
#: Records read back per ``get`` call when listing a collection.
PAGE_SIZE = 5_000


@dataclass(frozen=True)
class Hit:
    """A passage found by a query, with its similarity to the question (1 = same direction)."""

    id: str
    text: str
    source: str
    collection: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


def open_chroma(path: Path | None, url: str | None = None) -> ClientAPI:
    """A Chroma client: the server at ``url`` (``http://host:port``) if given, else an embedded store at ``path``."""
    settings = Settings(anonymized_telemetry=False)
    if url:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise BadInput(f"CONVEYOR_CHROMA_URL must look like http://host:port, got {url!r}", code="BAD_CHROMA_URL")
        ssl = parts.scheme == "https"
        port = port or (443 if ssl else 8000)
        try:
            return chromadb.HttpClient(host=parts.hostname, port=port, ssl=ssl, settings=settings)
        except ValueError as err:  # chromadb's "Could not connect": an outage, worth retrying
            raise ExternalServiceError(
                f"Chroma server at {url} is not answering: {err}", code="CHROMA_UNAVAILABLE"
            ) from err
    if path is None:
        raise BadInput("Chroma needs a path (embedded store) or a server URL", code="BAD_CHROMA_URL")
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def collection_name(persona_id: str, collection: str) -> str:
    """The Chroma name of a persona's collection: ``persona-<id>-<collection>``, hashed where it would not fit."""
    persona, kind = _slug(persona_id), _slug(collection)
    name = f"persona-{persona}-{kind}"
    exact = persona == persona_id and kind == collection
    if exact and len(name) <= MAX_NAME_LENGTH:
        return name
    # Lossy or too long: keep a readable prefix and make it unique with a hash of the exact pair.
    digest = hashlib.sha256(f"{persona_id}\0{collection}".encode()).hexdigest()[:12]
    kind = kind[:16].strip("-._") or "c"
    room = MAX_NAME_LENGTH - len(f"persona--{digest}-{kind}")
    persona = persona[:room].strip("-._") or "p"
    return f"persona-{persona}-{digest}-{kind}"


def _slug(value: str) -> str:
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", value)).strip("-._")


class VectorStore:
    """A persona's collections in one Chroma client; blocking calls, so run them in a thread from async code."""

    def __init__(self, client: ClientAPI, embedding_function: MiniLmEmbeddingFunction | None = None) -> None:
        self.client = client
        self.embedding_function = embedding_function or MiniLmEmbeddingFunction()

    @property
    def _chroma_ef(self) -> EmbeddingFunction[Embeddable]:
        # Chroma types its parameter for documents *or* images; this function embeds documents only.
        return cast("EmbeddingFunction[Embeddable]", self.embedding_function)

    def collection(self, persona_id: str, collection: str) -> Collection:
        """The persona's collection, created (cosine space, our embedding function) if it does not exist."""
        return self.client.get_or_create_collection(
            collection_name(persona_id, collection),
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"persona_id": persona_id, "collection": collection},
            embedding_function=self._chroma_ef,
        )

    def existing_ids(self, col: Collection, where: Where | None = None) -> set[str]:
        """Ids of the records matching ``where`` (all records without it)."""
        ids: set[str] = set()
        for page in self._pages(col, where, include_metadata=False):
            ids.update(page["ids"])
        return ids

    def upsert(
        self,
        col: Collection,
        ids: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
        embeddings: Sequence[Sequence[float]] | np.ndarray[Any, Any],
    ) -> None:
        """Insert or replace records with embeddings the caller computed, in batches the client accepts."""
        if not (len(ids) == len(documents) == len(metadatas) == len(embeddings)):
            raise ValueError("ids, documents, metadatas and embeddings must have the same length")
        step = self.client.get_max_batch_size()
        for start in range(0, len(ids), step):
            stop = start + step
            vectors = [np.asarray(v, dtype=np.float32) for v in embeddings[start:stop]]
            col.upsert(
                ids=list(ids[start:stop]),
                embeddings=cast(list[Embedding], vectors),
                documents=list(documents[start:stop]),
                metadatas=[cast(Metadata, dict(m)) for m in metadatas[start:stop]],
            )

    def delete_ids(self, col: Collection, ids: Iterable[str]) -> None:
        """Remove records by id (unknown ids are ignored)."""
        wanted = sorted(ids)
        step = self.client.get_max_batch_size()
        for start in range(0, len(wanted), step):
            col.delete(ids=wanted[start : start + step])

    def sources(self, col: Collection) -> dict[str, int]:
        """Chunks per source file in the collection."""
        counts: Counter[str] = Counter()
        for page in self._pages(col, None, include_metadata=True):
            for metadata in page["metadatas"] or []:
                source = (metadata or {}).get("source")
                if isinstance(source, str):
                    counts[source] += 1
        return dict(counts)

    def count(self, col: Collection) -> int:
        """Records in the collection."""
        return col.count()

    def query(self, persona_id: str, collections: Sequence[str], text: str, k: int) -> list[Hit]:
        """The ``k`` passages most similar to ``text`` across the persona's ``collections``, best first."""
        if k < 1 or not collections:
            return []
        vector = self.embedding_function.embedder.embed_array([text])[0]
        hits: list[Hit] = []
        for kind in dict.fromkeys(collections):
            try:
                col = self.client.get_collection(collection_name(persona_id, kind), embedding_function=self._chroma_ef)
            except NotFoundError:
                continue  # nothing ingested into this collection yet
            found = col.query(query_embeddings=[vector], n_results=k, include=["documents", "metadatas", "distances"])
            ids = found["ids"][0]
            documents = (found["documents"] or [[]])[0]
            metadatas = (found["metadatas"] or [[]])[0]
            distances = (found["distances"] or [[]])[0]
            for record_id, document, metadata, distance in zip(ids, documents, metadatas, distances, strict=True):
                meta = dict(metadata or {})
                hits.append(
                    Hit(
                        id=record_id,
                        text=document or "",
                        source=str(meta.get("source", "")),
                        collection=kind,
                        score=1.0 - float(distance),
                        metadata=meta,
                    )
                )
        hits.sort(key=lambda h: (-h.score, h.collection, h.id))
        return hits[:k]

    @staticmethod
    def _pages(col: Collection, where: Where | None, *, include_metadata: bool) -> Iterator[GetResult]:
        """The matching records, read ``PAGE_SIZE`` at a time."""
        offset = 0
        while True:
            page = col.get(
                where=where, limit=PAGE_SIZE, offset=offset, include=["metadatas"] if include_metadata else []
            )
            yield page
            if len(page["ids"]) < PAGE_SIZE:
                return
            offset += PAGE_SIZE
