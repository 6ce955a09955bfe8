"""Inputs and outputs of the persona ingestion workflow and its activities (one model each, fields addable)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Collection(StrEnum):
    """The three collections of a persona (seed 002)."""

    WORKS = "works"
    QUOTES = "quotes"
    PROFILE = "profile"


class IngestRequest(BaseModel):
    """Ingest every collection of a persona, each recorded on its job."""

    persona_id: str
    """The persona's key (its row; the id of a persona made before ids were per owner)."""
    job_ids: dict[Collection, str]
    data_root: str = ""
    """Ignored: sent by older Conveyors; workers derive every path from their own settings and the persona's row."""
    soft_limit_s: float = 6900.0
    """Seed soft limit (1 h 55 min): a collection still running then fails with TIMEOUT."""


class CollectionRun(BaseModel):
    """Ingest one collection of a persona."""

    persona_id: str
    """The persona's key; the worker reads the persona (owner and id) from the job's row, not from here."""
    collection: Collection
    job_id: str
    data_root: str = ""
    """Ignored: sent by older Conveyors (never read, so a payload cannot aim the worker at another folder)."""


class CollectionOutcome(BaseModel):
    """What ingesting one collection did."""

    collection: Collection
    total_vectors: int
    added: int = 0
    removed: int = 0
    files_done: int = 0
    files_total: int = 0
    skipped: int = 0
    warnings: list[str] = Field(default_factory=list)


class IngestResult(BaseModel):
    """How an ingestion ended: the persona's status and each collection's outcome."""

    persona_id: str
    status: str
    collections: dict[Collection, CollectionOutcome | None]
    errors: dict[Collection, str] = Field(default_factory=dict)


class SearchRequest(BaseModel):
    """Find the passages of a persona closest to a question."""

    persona_id: str
    """The persona's key: its collections are its owner's alone."""
    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=50)
    collections: list[Collection] = Field(default_factory=lambda: list(Collection))


class Passage(BaseModel):
    """One ranked passage."""

    id: str
    text: str
    source: str
    collection: Collection
    score: float
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class SearchResult(BaseModel):
    """Ranked passages, best first."""

    persona_id: str
    query: str
    passages: list[Passage]
