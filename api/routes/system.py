"""``GET /api/system/resources``: the workers' latest CPU, memory, disk and GPU samples and recent history."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import func, select

from activities.video.models import ResourceSample
from activities.video.system import ResourceSnapshot, sample_resources
from api.deps import CurrentUser, SessionDep, SettingsDep

router = APIRouter(prefix="/api/system", tags=["system"])

#: The longest history one request returns (the samples are kept ``resource_retention_hours``).
MAX_HISTORY_MINUTES = 1440


class GpuOut(BaseModel):
    """One GPU in a sample."""

    index: int
    name: str
    utilization_percent: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    temperature_c: float | None


class SampleOut(BaseModel):
    """One look at a worker machine; ``id`` is None for a sample taken by this request and not stored."""

    id: int | None
    host: str
    sampled_at: datetime
    cpu_percent: float
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_path: str
    disk_percent: float
    disk_free_bytes: int
    load_1m: float | None
    gpus: list[GpuOut]
    warnings: list[str]


class Thresholds(BaseModel):
    """Use above ``warn_percent`` is logged as a warning and listed in the sample."""

    warn_percent: float


class ResourcesOut(BaseModel):
    """The newest sample of each host and every sample of the last ``minutes``, oldest first."""

    latest: list[SampleOut]
    history: list[SampleOut]
    thresholds: Thresholds


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sample_out(row: ResourceSample) -> SampleOut:
    """The public form of a stored sample."""
    return SampleOut(
        id=row.id,
        host=row.host,
        sampled_at=_aware(row.sampled_at),
        cpu_percent=row.cpu_percent,
        memory_percent=row.memory_percent,
        memory_used_bytes=row.memory_used_bytes,
        memory_total_bytes=row.memory_total_bytes,
        disk_path=row.disk_path,
        disk_percent=row.disk_percent,
        disk_free_bytes=row.disk_free_bytes,
        load_1m=row.load_1m,
        gpus=[GpuOut.model_validate(g) for g in row.gpus],
        warnings=list(row.warnings),
    )


def snapshot_out(snapshot: ResourceSnapshot, at: datetime) -> SampleOut:
    """The public form of a sample taken now and not stored."""
    values = asdict(snapshot)
    values["gpus"] = [GpuOut.model_validate(g) for g in values["gpus"]]
    return SampleOut(id=None, sampled_at=at, **values)


@router.get("/resources", response_model=ResourcesOut)
async def resources(
    _user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    minutes: Annotated[int, Query(ge=1, le=MAX_HISTORY_MINUTES, description="How much history to return.")] = 60,
) -> ResourcesOut:
    """The latest sample per host and the last ``minutes`` of samples; one taken now if none is stored yet."""
    newest = (
        select(ResourceSample.host, func.max(ResourceSample.sampled_at).label("at"))
        .group_by(ResourceSample.host)
        .subquery()
    )
    latest_rows = await session.scalars(
        select(ResourceSample)
        .join(newest, (ResourceSample.host == newest.c.host) & (ResourceSample.sampled_at == newest.c.at))
        .order_by(ResourceSample.host)
    )
    latest = list({row.host: sample_out(row) for row in latest_rows}.values())
    since = datetime.now(UTC) - timedelta(minutes=minutes)
    history_rows = await session.scalars(
        select(ResourceSample)
        .where(ResourceSample.sampled_at >= since)
        .order_by(ResourceSample.sampled_at, ResourceSample.id)
    )
    history = [sample_out(row) for row in history_rows]
    if not latest:
        now = datetime.now(UTC)
        snapshot = await asyncio.to_thread(
            sample_resources, settings.video_temp_dir_resolved, warn_percent=settings.resource_warn_percent
        )
        latest = [snapshot_out(snapshot, now)]
    return ResourcesOut(
        latest=latest, history=history, thresholds=Thresholds(warn_percent=settings.resource_warn_percent)
    )
