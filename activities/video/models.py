"""The video pipeline's tables: videos, their jobs (render, preview, caption, transcode) and resource samples."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.db import Base
from conveyor.models import utcnow
from conveyor.records import RunColumns
from conveyor.runs import RunUpdate


class JobKind(StrEnum):
    """What a video job does (one per seed task)."""

    RENDER = "render"
    PREVIEW = "preview"
    CAPTION = "caption"
    TRANSCODE = "transcode"


class Video(RunColumns, Base):
    """A video file in the blob store: an upload (``completed`` at once), or a render's result.

    A render goes ``queued`` → ``running`` (stage ``rendering``) → ``completed`` when its file is ready.
    """

    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    origin: Mapped[str] = mapped_column(String(16))
    """``upload`` or ``render``."""
    blob_key: Mapped[str | None] = mapped_column(String(500), nullable=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    video_codec: Mapped[str | None] = mapped_column(String(32), nullable=True)
    audio_codec: Mapped[str | None] = mapped_column(String(32), nullable=True)
    timeline: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class VideoJob(RunColumns, Base):
    """One step on a video (the seed's task): its parameters, live progress, encoder, outputs and error."""

    __tablename__ = "video_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fps: Mapped[float | None] = mapped_column(Float, nullable=True)
    eta_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    encoder: Mapped[str | None] = mapped_column(String(32), nullable=True)
    encoder_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    async def after_record(self, session: AsyncSession, update: RunUpdate) -> None:
        """A job that ended has no time left to estimate."""
        if self.finished:
            self.eta_s = None if self.status != "completed" else 0.0


class ResourceSample(Base):
    """One minute's look at the machine (seed ``monitor_resources_task``): CPU, memory, disk, GPUs, warnings."""

    __tablename__ = "resource_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(200))
    sampled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    cpu_percent: Mapped[float] = mapped_column(Float)
    memory_percent: Mapped[float] = mapped_column(Float)
    memory_used_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_total_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_percent: Mapped[float] = mapped_column(Float)
    disk_free_bytes: Mapped[int] = mapped_column(BigInteger)
    disk_path: Mapped[str] = mapped_column(String(500))
    load_1m: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
