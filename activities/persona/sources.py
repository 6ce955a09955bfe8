"""Where a persona's texts live (``<data root>/<owner>/<id>/``) and how each collection's files are read into chunks."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.persona.chunking import chunk_text, decode_text
from activities.persona.contract import check_persona_id
from activities.persona.contract import persona_folder as persona_folder  # the worker side's paths, here too
from activities.persona.schemas import Collection
from conveyor.errors import BadInput
from conveyor.storage import BlobStore

TEXT_SUFFIXES = (".txt", ".md")
QUOTES_FILE = "all_quotes.jsonl"
PROFILE_FILE = "profile.md"


@dataclass(frozen=True)
class SourceFile:
    """A file of a collection: its name as stored with its chunks (``source``) and its path."""

    source: str
    path: Path


@dataclass
class Piece:
    """A piece of text to embed, with the metadata stored beside it."""

    text: str
    metadata: dict[str, Any]


@dataclass
class ReadResult:
    """The pieces of one file and what was wrong with it (warnings name the file and line)."""

    pieces: list[Piece] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0


def list_sources(folder: Path, persona_id: str, collection: Collection) -> list[SourceFile]:
    """The files of one collection in the persona's ``folder``, in a stable order (none outside it).

    Layout: ``works/**.txt|md``, ``quotes/all_quotes.jsonl``, ``profile.md`` and ``profile/**.txt|md``.
    """
    if not folder.is_dir():
        raise BadInput(
            f"persona {persona_id} has no documents yet: upload them (POST /api/personas/{persona_id}/documents)",
            code="PERSONA_DATA_NOT_FOUND",
            details={"persona_id": persona_id},
        )
    folder = folder.resolve()
    if collection == Collection.QUOTES:
        files = [SourceFile(QUOTES_FILE, folder / "quotes" / QUOTES_FILE)]
    elif collection == Collection.WORKS:
        files = _texts_in(folder / "works", prefix="")
    else:
        files = [SourceFile(PROFILE_FILE, folder / PROFILE_FILE)] + _texts_in(folder / "profile", prefix="profile/")
    return [f for f in files if _inside(f.path, folder)]


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is a regular file that resolves inside ``folder`` (a link out of it is not read)."""
    return path.is_file() and path.resolve().is_relative_to(folder)


def _texts_in(folder: Path, *, prefix: str) -> list[SourceFile]:
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return [SourceFile(prefix + p.relative_to(folder).as_posix(), p) for p in paths]


def sync_uploads(blobs: BlobStore, prefix: str, folder: Path, *, only: str = "") -> int:
    """Copy the documents uploaded under blob ``prefix`` (those under ``prefix + only``) into the persona's
    ``folder``, new or changed ones; the folder exists afterwards if anything was ever uploaded.

    Blocking. Keys were made safe when stored; a key that would still land outside ``folder`` is skipped.
    Returns how many files were copied.
    """
    copied = 0
    root = folder.resolve()
    for blob in blobs.list(prefix):
        root.mkdir(parents=True, exist_ok=True)
        dest = (root / blob.key[len(prefix) :]).resolve()
        if not blob.key.startswith(prefix + only) or not dest.is_relative_to(root) or dest == root:
            continue
        if dest.is_file() and dest.stat().st_size == blob.size and dest.stat().st_mtime >= blob.modified.timestamp():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        blobs.download(blob.key, dest)
        copied += 1
    return copied


def stage_seed_layout(source_root: Path, persona_id: str, folder: Path) -> None:
    """Copy a persona kept in the seed's layout (``data/<id>/…``, ``personas/<id>/profile.md``) into ``folder``.

    Blocking; used by the operator's CLI (``--data-dir``), the demo's tests and the benchmark, never by the API.
    ``folder`` is replaced, so files deleted from the source are deleted from the persona too.
    """
    data = source_root / "data" / check_persona_id(persona_id)
    profile = source_root / "personas" / persona_id / PROFILE_FILE
    if not data.is_dir() and not profile.is_file():
        raise BadInput(
            f"no data/{persona_id}/ or personas/{persona_id}/{PROFILE_FILE} in {source_root}",
            code="PERSONA_DATA_NOT_FOUND",
            details={"persona_id": persona_id},
        )
    if folder.resolve() == data.resolve():
        return
    if folder.exists():
        shutil.rmtree(folder)
    if data.is_dir():
        shutil.copytree(data, folder)
    folder.mkdir(parents=True, exist_ok=True)
    if profile.is_file():
        shutil.copyfile(profile, folder / PROFILE_FILE)


def read_source(
    source: SourceFile, collection: Collection, *, count_tokens: Any, max_tokens: int, overlap_tokens: int
) -> ReadResult:
    """Read one file into pieces: text chunks (works, profile) or whole quotes (one per JSONL line)."""
    result = ReadResult()
    data = source.path.read_bytes()
    if not data.strip():
        result.warnings.append(f"{source.source}: empty file, skipped")
        return result
    try:
        text, warning = decode_text(data)
    except BadInput as err:
        result.warnings.append(f"{source.source}: {err.message}; skipped")
        return result
    if warning:
        result.warnings.append(f"{source.source}: {warning}")
    if collection == Collection.QUOTES:
        _read_quotes(source, text, result)
        return result
    for chunk in chunk_text(text, count_tokens=count_tokens, max_tokens=max_tokens, overlap_tokens=overlap_tokens):
        metadata: dict[str, Any] = {"source": source.source, "chunk": chunk.index, "tokens": chunk.tokens}
        if chunk.section:
            metadata["section"] = chunk.section
        result.pieces.append(Piece(chunk.text, metadata))
    return result


def _read_quotes(source: SourceFile, text: str, result: ReadResult) -> None:
    """One piece per quote; malformed lines and lines without text are skipped and reported by number."""
    bad: list[int] = []
    empty: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        quote = record.get("text") if isinstance(record, dict) else None
        if not isinstance(quote, str) or not quote.strip():
            empty.append(number)
            continue
        metadata: dict[str, Any] = {"source": source.source, "line": number}
        for key in ("source", "topic", "year", "work"):
            value = record.get(key)
            if isinstance(value, str | int | float) and key != "source":
                metadata[key] = value
        if isinstance(record.get("source"), str):
            metadata["cited"] = record["source"]
        result.pieces.append(Piece(quote.strip(), metadata))
    if bad:
        result.warnings.append(f"{source.source}: {len(bad)} malformed line(s) skipped: {_lines(bad)}")
    if empty:
        result.warnings.append(f"{source.source}: {len(empty)} line(s) without text skipped: {_lines(empty)}")
    result.skipped += len(bad) + len(empty)


def _lines(numbers: list[int], shown: int = 20) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" … (+{len(numbers) - shown} more)" if len(numbers) > shown else "")
