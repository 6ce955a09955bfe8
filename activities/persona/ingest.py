"""Ingest one collection of a persona: read, chunk, embed in batches and upsert; remove what is gone.

Chunk ids are deterministic (source file + chunk text), so re-ingesting an unchanged corpus adds nothing, a
changed file swaps only its changed chunks, a deleted file's chunks are removed, and a retried run picks up
where the last one stopped: files it finished are skipped (from the heartbeat) and chunks already stored are
not embedded again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.persona.chunking import chunk_id
from activities.persona.embedder import Embedder
from activities.persona.schemas import Collection, CollectionOutcome, CollectionRun
from activities.persona.sources import list_sources, read_source
from activities.persona.vectors import VectorStore

EMBED_BATCH = 32
MAX_TOKENS = 128
OVERLAP_TOKENS = 32


@dataclass
class IngestProgress:
    """Where an ingestion is; also the heartbeat detail a retry resumes from."""

    files_total: int = 0
    done_files: list[str] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    file: str = ""

    @property
    def percent(self) -> int:
        """Files done of the total, 0–100."""
        return 100 if not self.files_total else int(100 * len(self.done_files) / self.files_total)

    def to_detail(self) -> dict[str, Any]:
        """The heartbeat detail."""
        return {
            "files_total": self.files_total,
            "done_files": list(self.done_files),
            "added": self.added,
            "removed": self.removed,
            "skipped": self.skipped,
            "warnings": list(self.warnings),
            "file": self.file,
        }

    @classmethod
    def from_detail(cls, detail: Any) -> IngestProgress:
        """Rebuild from a heartbeat detail (a fresh start when there is none)."""
        if not isinstance(detail, dict):
            return cls()
        return cls(
            files_total=int(detail.get("files_total", 0)),
            done_files=[str(f) for f in detail.get("done_files", [])],
            added=int(detail.get("added", 0)),
            removed=int(detail.get("removed", 0)),
            skipped=int(detail.get("skipped", 0)),
            warnings=[str(w) for w in detail.get("warnings", [])],
        )


def ingest_collection(
    run: CollectionRun,
    folder: Path,
    store: VectorStore,
    embedder: Embedder,
    progress: IngestProgress,
    report: Callable[[IngestProgress], None],
) -> CollectionOutcome:
    """Bring the persona's collection in Chroma in line with the files in its ``folder`` (the worker derives the
    folder from its own settings; ``run.data_root`` is never read); ``report`` is called as work advances."""
    files = list_sources(folder, folder.name, run.collection)
    progress.files_total = len(files)
    collection = store.collection(run.persona_id, run.collection.value)
    if not files:
        note = f"no {run.collection.value} files found for {folder.name}"
        if note not in progress.warnings:
            progress.warnings.append(note)
    current = {f.source for f in files}
    for gone, _count in store.sources(collection).items():
        if gone not in current:  # the file was deleted: so are its chunks
            orphans = store.existing_ids(collection, where={"source": gone})
            store.delete_ids(collection, sorted(orphans))
            progress.removed += len(orphans)
    report(progress)
    for source in files:
        if source.source in progress.done_files:
            continue
        progress.file = source.source
        read = read_source(
            source,
            run.collection,
            count_tokens=embedder.count_tokens,
            max_tokens=MAX_TOKENS,
            overlap_tokens=OVERLAP_TOKENS,
        )
        progress.warnings += [w for w in read.warnings if w not in progress.warnings]
        progress.skipped += read.skipped
        pieces = {chunk_id(source.source, p.text): p for p in read.pieces}
        have = store.existing_ids(collection, where={"source": source.source})
        stale = sorted(have - set(pieces))
        if stale:
            store.delete_ids(collection, stale)
            progress.removed += len(stale)
        new = [(i, p) for i, p in pieces.items() if i not in have]
        for start in range(0, len(new), EMBED_BATCH):
            batch = new[start : start + EMBED_BATCH]
            texts = [p.text for _, p in batch]
            store.upsert(
                collection,
                ids=[i for i, _ in batch],
                documents=texts,
                metadatas=[{**p.metadata, "collection": run.collection.value} for _, p in batch],
                embeddings=embedder.embed_array(texts),
            )
            progress.added += len(batch)
            report(progress)
        progress.done_files.append(source.source)
        report(progress)
    return CollectionOutcome(
        collection=run.collection,
        total_vectors=store.count(collection),
        added=progress.added,
        removed=progress.removed,
        files_done=len(progress.done_files),
        files_total=progress.files_total,
        skipped=progress.skipped,
        warnings=progress.warnings,
    )


__all__ = ["Collection", "IngestProgress", "ingest_collection"]
