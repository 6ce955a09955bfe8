"""The persona pipeline's tables: personas (their latest ingestion's run) and one job per collection per run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.db import Base
from conveyor.models import CreditHold
from conveyor.records import RunColumns
from conveyor.runs import RunStatus, RunUpdate


class Persona(RunColumns, Base):
    """A persona whose texts are searchable once ingested; its run columns describe its latest ingestion.

    ``created`` until first ingested, then (seed 002's draft → ingesting → active) ``running`` with stage
    ``ingesting`` and ``completed`` | ``failed`` | ``cancelled``.

    ``slug`` is the id its owner sees (unique per owner: two users may each have ``alice``); ``id`` is the row's
    key (a UUID; a persona made before ids were per owner keeps its slug), naming its workflow and Chroma collections.
    """

    __tablename__ = "personas"
    __table_args__ = (UniqueConstraint("user_id", "slug", name="uq_personas_user_slug"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    current_jobs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    last_ingested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    async def after_record(self, session: AsyncSession, update: RunUpdate) -> None:
        """A completed ingestion is the persona's latest."""
        if update.status == RunStatus.COMPLETED:
            self.last_ingested_at = datetime.now(UTC)

    def credits_due(self, session: Session, held: CreditHold) -> int:
        """The chunks this ingestion embedded (vectors its jobs added), at the chunk price."""
        from activities.persona.contract import CHUNK_PRICE

        ids = list(self.current_jobs.values())
        added = session.scalar(select(func.coalesce(func.sum(IngestionJob.added), 0)).where(IngestionJob.id.in_(ids)))
        return CHUNK_PRICE.cost(int(added or 0))


class IngestionJob(RunColumns, Base):
    """One collection's ingestion in one run, with the fields the seed's IngestionJob had."""

    __tablename__ = "ingestion_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    persona_id: Mapped[str] = mapped_column(ForeignKey("personas.id", ondelete="CASCADE"), index=True)
    collection: Mapped[str] = mapped_column(String(16))
    total_vectors: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
