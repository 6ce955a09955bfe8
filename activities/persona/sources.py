"""Where a persona's texts live (the seed's layout) and how each collection's files are read into chunks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activities.persona.chunking import chunk_text, decode_text
from activities.persona.schemas import Collection
from conveyor.errors import BadInput

TEXT_SUFFIXES = (".txt", ".md")
QUOTES_FILE = "all_quotes.jsonl"


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


def persona_folder(data_root: Path, persona_id: str) -> Path:
    """``data/{persona}`` under the data root (BadInput naming the path if it does not exist)."""
    folder = data_root / "data" / persona_id
    if not folder.is_dir():
        raise BadInput(
            f"persona folder {folder} not found", code="PERSONA_DATA_NOT_FOUND", details={"path": str(folder)}
        )
    return folder


def list_sources(data_root: Path, persona_id: str, collection: Collection) -> list[SourceFile]:
    """The files of one collection, in a stable order (seed layout)."""
    folder = persona_folder(data_root, persona_id)
    if collection == Collection.QUOTES:
        path = folder / "quotes" / QUOTES_FILE
        return [SourceFile(QUOTES_FILE, path)] if path.is_file() else []
    if collection == Collection.WORKS:
        return _texts_in(folder / "works", prefix="")
    files = []
    profile = data_root / "personas" / persona_id / "profile.md"
    if profile.is_file():
        files.append(SourceFile("profile.md", profile))
    return files + _texts_in(folder / "profile", prefix="profile/")


def _texts_in(folder: Path, *, prefix: str) -> list[SourceFile]:
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return [SourceFile(prefix + p.relative_to(folder).as_posix(), p) for p in paths]


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
