"""The video maintenance workflows on the real dev server, worker and SQLite, and the resources endpoint.

``/api/system/resources`` serves the samples the monitor schedule stored; the API takes none itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, select

from activities.video.contract import MAINTENANCE_QUEUE
from activities.video.models import ResourceSample
from activities.video.schemas import MonitorRequest, ResourceReport, VideoCleanupRequest, VideoCleanupResult
from tests.helpers.stack import Stack
from workflows.video import MonitorResourcesWorkflow, VideoCleanupWorkflow

DAY = 86_400.0


@dataclass(frozen=True)
class JobFolder:
    """A job's working folder under the video temp folder: two old outputs in old folders, one fresh file."""

    root: Path
    old: tuple[Path, Path]
    old_dir: Path
    fresh: Path


def _write(path: Path, size: int, age_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"v" * size)
    when = time.time() - age_s
    os.utime(path, (when, when))


def _make_job_folder(temp_root: Path) -> JobFolder:
    """Blocking: run it in a thread."""
    root = temp_root / f"job-{uuid.uuid4().hex[:8]}"
    old = (root / "render.mp4", root / "frames" / "0001.png")
    _write(old[0], 3000, 10 * DAY)
    _write(old[1], 1000, 9 * DAY)
    fresh = root / "preview.jpg"
    _write(fresh, 500, 60)
    when = time.time() - 9 * DAY
    os.utime(root / "frames", (when, when))
    return JobFolder(root, old, root / "frames", fresh)


def _state(job: JobFolder) -> tuple[bool, bool, bool, bool]:
    return (job.old[0].exists(), job.old[1].exists(), job.old_dir.exists(), job.fresh.exists())


async def test_cleanup_workflow_deletes_old_files_and_empty_folders_and_keeps_fresh_ones(stack: Stack) -> None:
    job = await asyncio.to_thread(_make_job_folder, stack.settings.video_temp_dir_resolved)

    result = await stack.client.execute_workflow(
        VideoCleanupWorkflow.run,
        VideoCleanupRequest(),
        id=f"video-cleanup-test-{uuid.uuid4()}",
        task_queue=MAINTENANCE_QUEUE,
        execution_timeout=timedelta(minutes=2),
    )

    assert isinstance(result, VideoCleanupResult)
    assert result.root == str(stack.settings.video_temp_dir_resolved)
    assert (result.max_age_days, result.max_gb) == (7, 50)
    assert (result.files_removed, result.bytes_freed, result.error_count) == (2, 4000, 0)
    assert result.dirs_removed >= 1
    assert result.files_remaining >= 1 and result.bytes_remaining >= 500
    assert await asyncio.to_thread(_state, job) == (False, False, False, True)


async def _clear_samples(stack: Stack) -> None:
    async with stack.sessions.begin() as session:
        await session.execute(delete(ResourceSample))


async def _monitor(stack: Stack, request: MonitorRequest) -> ResourceReport:
    return await stack.client.execute_workflow(
        MonitorResourcesWorkflow.run,
        request,
        id=f"video-monitor-test-{uuid.uuid4()}",
        task_queue=MAINTENANCE_QUEUE,
        execution_timeout=timedelta(minutes=2),
    )


async def test_resources_endpoint_serves_stored_samples_only_and_takes_none_itself(stack: Stack) -> None:
    await _clear_samples(stack)
    _user_id, key = await stack.new_user(admin=True)

    async with stack.http(key) as http:
        response = await http.get("/api/system/resources")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["latest"], body["history"]) == ([], [])  # nothing stored yet: no live sample in its place
    assert body["thresholds"] == {"warn_percent": stack.settings.resource_warn_percent}
    async with stack.sessions() as session:
        assert list(await session.scalars(select(ResourceSample.id))) == []  # and the request stored none


async def test_monitor_workflow_stores_samples_that_the_endpoint_returns(stack: Stack) -> None:
    await _clear_samples(stack)
    first = await _monitor(stack, MonitorRequest())
    second = await _monitor(stack, MonitorRequest(warn_percent=0.001))

    assert isinstance(second, ResourceReport)
    assert second.sample_id > first.sample_id
    assert second.snapshot.host == socket.gethostname()
    assert any(w.startswith("memory ") and w.endswith("(above 0.001%)") for w in second.warnings)
    ours = {first.sample_id, second.sample_id}  # a schedule on the shared server may add samples of its own
    async with stack.sessions() as session:
        rows = list(await session.scalars(select(ResourceSample).order_by(ResourceSample.id)))
    assert [r.id for r in rows if r.id in ours] == [first.sample_id, second.sample_id]
    assert next(r for r in rows if r.id == second.sample_id).warnings == second.warnings

    _user_id, key = await stack.new_user(admin=True)
    async with stack.http(key) as http:
        response = await http.get("/api/system/resources", params={"minutes": 5})
        too_long = await http.get("/api/system/resources", params={"minutes": 1441})
    async with stack.http(None) as anonymous:
        unauthenticated = await anonymous.get("/api/system/resources")

    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["id"] for s in body["history"] if s["id"] in ours] == [first.sample_id, second.sample_id]
    assert [(s["id"], s["host"]) for s in body["latest"]] == [(max(r.id for r in rows), socket.gethostname())]
    stored = next(s for s in body["history"] if s["id"] == second.sample_id)
    assert stored["warnings"] == second.warnings
    assert stored["memory_total_bytes"] == second.snapshot.memory_total_bytes
    assert stored["disk_path"] == second.snapshot.disk_path
    assert too_long.status_code == 422
    assert unauthenticated.status_code == 401
