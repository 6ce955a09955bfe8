"""The video workers' housekeeping: working-folder cleanup, resource sampling and warnings, their schedules."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import ScheduleOverlapPolicy
from temporalio.testing import ActivityEnvironment

from activities.video import maintenance, system
from activities.video.contract import MAINTENANCE_QUEUE, PIPELINE
from activities.video.maintenance import VideoMaintenanceActivities
from activities.video.models import ResourceSample
from activities.video.schemas import GpuStat, MonitorRequest, VideoCleanupRequest
from activities.video.system import CleanupReport, cleanup_temp, parse_nvidia_smi, read_gpus, usage_warnings
from conveyor.settings import Settings
from workflows.video import MonitorResourcesWorkflow, VideoCleanupWorkflow

HOUR = 3600.0
DAY = 86_400.0
NOW = 1_700_000_000.0

NVIDIA_SMI_SAMPLE = """\
0, NVIDIA H100 80GB HBM3, 97, 71234, 81559, 64
1, Tesla T4, [N/A], 120, 15360, [Not Supported]

garbage line without commas
"""


def _file(path: Path, size: int, age_s: float, now: float = NOW) -> Path:
    """A file of ``size`` bytes last modified ``age_s`` before ``now``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def _age(path: Path, age_s: float, now: float = NOW) -> None:
    os.utime(path, (now - age_s, now - age_s), follow_symlinks=False)


# --------------------------------------------------------------------------------- cleanup_temp
def test_files_older_than_the_age_limit_are_deleted_and_their_bytes_counted(tmp_path: Path) -> None:
    old = _file(tmp_path / "job-1" / "render.mp4", 1000, 8 * DAY)
    older = _file(tmp_path / "frame.png", 250, 30 * DAY)
    recent = _file(tmp_path / "job-2" / "render.mp4", 400, 2 * DAY)
    _age(tmp_path / "job-2", 2 * DAY)

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=10**9, now=NOW)

    assert (report.files_removed, report.bytes_freed) == (2, 1250)
    assert (report.files_remaining, report.bytes_remaining) == (1, 400)
    assert not old.exists() and not older.exists()
    assert recent.read_bytes() == b"x" * 400
    assert report.errors == []


def test_over_the_cap_the_oldest_files_go_first_until_it_fits(tmp_path: Path) -> None:
    files = {hours: _file(tmp_path / f"part-{hours}h.ts", 1000, hours * HOUR) for hours in (2, 3, 4, 5)}

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=2500, now=NOW)

    assert sorted(h for h, f in files.items() if f.exists()) == [2, 3]
    assert (report.files_removed, report.bytes_freed) == (2, 2000)
    assert (report.files_remaining, report.bytes_remaining) == (2, 2000)


def test_the_cap_never_deletes_files_a_running_job_may_still_write(tmp_path: Path) -> None:
    fresh = [_file(tmp_path / f"encoding-{i}.mp4", 5000, 10 * 60) for i in range(3)]
    settled = _file(tmp_path / "settled.mp4", 1000, 2 * HOUR)

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=0, now=NOW)

    assert all(f.exists() for f in fresh)
    assert not settled.exists()
    assert (report.files_removed, report.bytes_freed) == (1, 1000)
    assert report.bytes_remaining == 15_000 and report.files_remaining == 3


def test_a_custom_min_age_protects_younger_files_only(tmp_path: Path) -> None:
    young = _file(tmp_path / "a.mp4", 100, 20 * 60)
    older = _file(tmp_path / "b.mp4", 100, 40 * 60)

    report = cleanup_temp(tmp_path, max_age_s=DAY, max_bytes=0, now=NOW, min_age_s=30 * 60)

    assert young.exists() and not older.exists()
    assert report.files_removed == 1


def test_empty_folders_are_removed_bottom_up_but_not_root_fresh_or_busy_ones(tmp_path: Path) -> None:
    _file(tmp_path / "job-1" / "frames" / "0001.png", 10, 9 * DAY)
    (tmp_path / "job-1" / "empty" / "deeper").mkdir(parents=True)
    for folder in ("job-1/frames", "job-1/empty/deeper", "job-1/empty", "job-1"):
        _age(tmp_path / folder, 9 * DAY)
    (tmp_path / "just-made").mkdir()
    _age(tmp_path / "just-made", 60)
    _file(tmp_path / "busy" / "out.mp4", 10, 60)
    _age(tmp_path / "busy", 9 * DAY)
    _age(tmp_path, 9 * DAY)

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=10**9, now=NOW)

    assert report.dirs_removed == 4
    assert tmp_path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "just-made"]
    assert (tmp_path / "busy" / "out.mp4").exists()


def test_a_missing_folder_gives_an_empty_report(tmp_path: Path) -> None:
    assert cleanup_temp(tmp_path / "never-made", max_age_s=DAY, max_bytes=0) == CleanupReport()


def test_symlinks_are_not_followed_and_go_as_links_only_when_old(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    target_file = _file(outside / "keep.mp4", 500, 30 * DAY)
    _file(outside / "inner" / "old.mp4", 500, 30 * DAY)
    root = tmp_path / "tmp"
    root.mkdir()
    old_link = root / "old-link.mp4"
    old_link.symlink_to(target_file)
    _age(old_link, 30 * DAY)
    dir_link = root / "dir-link"
    dir_link.symlink_to(outside / "inner", target_is_directory=True)
    _age(dir_link, 30 * DAY)
    new_link = root / "new-link"
    new_link.symlink_to(target_file)
    _age(new_link, 60)

    report = cleanup_temp(root, max_age_s=7 * DAY, max_bytes=0, now=NOW)

    assert not old_link.is_symlink() and not dir_link.is_symlink()
    assert new_link.is_symlink()
    assert target_file.exists() and (outside / "inner" / "old.mp4").exists()
    assert (report.files_removed, report.bytes_freed) == (2, 0)


def test_files_vanishing_during_the_pass_are_neither_errors_nor_counted(tmp_path: Path) -> None:
    first = _file(tmp_path / "a.mp4", 100, 9 * DAY)
    second = _file(tmp_path / "b.mp4", 100, 9 * DAY)

    def remove_the_other(_counts: dict[str, int]) -> None:
        for path in (first, second):
            path.unlink(missing_ok=True)

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=10**9, now=NOW, on_progress=remove_the_other)

    assert (report.files_removed, report.bytes_freed, report.errors) == (1, 100, [])
    assert list(tmp_path.iterdir()) == []


def test_progress_reports_running_counts(tmp_path: Path) -> None:
    for i in range(3):
        _file(tmp_path / f"{i}.mp4", 10, 9 * DAY)
    seen: list[dict[str, int]] = []

    cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=10**9, now=NOW, on_progress=seen.append)

    assert seen == [{"files_removed": n, "bytes_freed": 10 * n} for n in (1, 2, 3)]


def test_a_stopped_pass_removes_nothing_more(tmp_path: Path) -> None:
    files = [_file(tmp_path / f"{i}.mp4", 10, 9 * DAY) for i in range(3)]
    stop = threading.Event()
    stop.set()

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=0, now=NOW, stop=stop)

    assert all(f.exists() for f in files)
    assert (report.files_removed, report.files_remaining, report.bytes_remaining) == (0, 3, 30)


def test_files_that_cannot_be_deleted_are_reported_and_counted_as_remaining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = _file(tmp_path / "locked" / "stuck.mp4", 100, 9 * DAY)
    _age(tmp_path / "locked", 9 * DAY)
    real_unlink = Path.unlink

    def refuse(path: Path, missing_ok: bool = False) -> None:
        if path == stuck:
            raise PermissionError(1, "Operation not permitted")
        real_unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)

    report = cleanup_temp(tmp_path, max_age_s=7 * DAY, max_bytes=10**9, now=NOW)

    assert stuck.exists() and (tmp_path / "locked").is_dir()
    assert (report.files_removed, report.files_remaining, report.bytes_remaining) == (0, 1, 100)
    assert report.errors == [f"{stuck}: Operation not permitted"]


# --------------------------------------------------------------------------------- GPUs
def test_nvidia_smi_output_is_parsed_with_unreported_values_as_none() -> None:
    assert parse_nvidia_smi(NVIDIA_SMI_SAMPLE) == [
        GpuStat(0, "NVIDIA H100 80GB HBM3", 97.0, 71234.0, 81559.0, 64.0),
        GpuStat(1, "Tesla T4", None, 120.0, 15360.0, None),
    ]
    assert parse_nvidia_smi("") == []


def _fake_nvidia_smi(folder: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", str(folder))


def test_gpus_are_read_from_nvidia_smi_with_the_query_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = tmp_path / "args.txt"
    _fake_nvidia_smi(tmp_path / "bin", f'echo "$@" > {args}\nprintf "%s" "{NVIDIA_SMI_SAMPLE}"', monkeypatch)

    gpus = read_gpus()

    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "Tesla T4"]
    assert args.read_text().split() == [f"--query-gpu={system.NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"]


def test_no_gpus_without_nvidia_smi_or_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert read_gpus() == []
    _fake_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA-SMI has failed" >&2\nexit 9', monkeypatch)
    assert read_gpus() == []


# --------------------------------------------------------------------------------- warnings
def test_warnings_name_each_measure_strictly_above_the_threshold() -> None:
    gpus = [GpuStat(0, "H100", 95.5, 79_000.0, 80_000.0, 70.0), GpuStat(1, "T4", None, 100.0, 0.0, None)]

    warnings = usage_warnings(cpu_percent=90.0, memory_percent=93.14, disk_percent=99.0, gpus=gpus, warn_percent=90)

    assert warnings == [
        "memory 93.1% used (above 90%)",
        "disk 99.0% used (above 90%)",
        "gpu 0 (H100) utilization 95.5% used (above 90%)",
        "gpu 0 (H100) memory 98.8% used (above 90%)",
    ]
    assert usage_warnings(cpu_percent=10, memory_percent=20, disk_percent=30, gpus=gpus[1:], warn_percent=90) == []


def test_a_sample_carries_psutil_values_and_their_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("psutil.cpu_percent", lambda interval: 97.0)
    monkeypatch.setattr(
        "psutil.virtual_memory", lambda: SimpleNamespace(percent=93.1, used=15 * 2**30, total=16 * 2**30)
    )
    monkeypatch.setattr("psutil.disk_usage", lambda path: SimpleNamespace(percent=40.0, free=2**40))
    monkeypatch.setattr(system, "read_gpus", lambda: [GpuStat(0, "H100", 10.0, 1.0, 80_000.0, 40.0)])

    snapshot = system.sample_resources(tmp_path / "video-tmp" / "not-made-yet", warn_percent=90)

    assert snapshot.warnings == ["cpu 97.0% used (above 90%)", "memory 93.1% used (above 90%)"]
    assert snapshot.disk_path == str(tmp_path)
    assert (snapshot.memory_used_bytes, snapshot.memory_total_bytes, snapshot.disk_free_bytes) == (
        15 * 2**30,
        16 * 2**30,
        2**40,
    )
    assert snapshot.gpus[0].name == "H100"


def test_a_real_sample_has_sane_values(tmp_path: Path) -> None:
    snapshot = system.sample_resources(tmp_path, warn_percent=90)

    assert snapshot.host == socket.gethostname()
    assert 0 <= snapshot.cpu_percent <= 100
    assert 0 < snapshot.memory_percent <= 100
    assert 0 < snapshot.memory_used_bytes < snapshot.memory_total_bytes
    assert 0 <= snapshot.disk_percent <= 100 and snapshot.disk_free_bytes > 0
    assert snapshot.load_1m is None or snapshot.load_1m >= 0
    assert all(g.memory_total_mb is None or g.memory_total_mb > 0 for g in snapshot.gpus)
    assert all("(above 90%)" in w for w in snapshot.warnings)


# --------------------------------------------------------------------------------- activities
class _RecordingLog:
    """Stands in for the module's structlog logger to see what it logged."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.records.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.records.append(("warning", event, kw))


async def test_the_cleanup_activity_uses_the_configured_folder_and_limits(
    tmp_path: Path, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(var_dir=tmp_path, video_cleanup_age_days=7, video_max_temp_gb=50)
    root = settings.video_temp_dir_resolved
    now = time.time()
    gone = _file(root / "job" / "old.mp4", 2048, 8 * DAY, now)
    kept = _file(root / "job" / "new.mp4", 1024, 3 * DAY, now)
    log = _RecordingLog()
    monkeypatch.setattr(maintenance, "log", log)
    acts = VideoMaintenanceActivities(sessions, settings)

    result = await ActivityEnvironment().run(acts.cleanup_temp, VideoCleanupRequest())

    assert (result.root, result.max_age_days, result.max_gb) == (str(root), 7, 50)
    assert (result.files_removed, result.bytes_freed, result.files_remaining, result.bytes_remaining) == (
        1,
        2048,
        1,
        1024,
    )
    assert not gone.exists() and kept.exists()
    assert [(level, event, kw["freed"]) for level, event, kw in log.records] == [
        ("info", "video temp folder cleaned", "2.0 KiB")
    ]

    shorter = await ActivityEnvironment().run(acts.cleanup_temp, VideoCleanupRequest(max_age_days=1))
    assert (shorter.files_removed, shorter.max_age_days, list(root.iterdir())) == (1, 1, [root / "job"])


async def test_the_monitor_activity_stores_a_sample_prunes_old_ones_and_logs_warnings(
    tmp_path: Path, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(var_dir=tmp_path, resource_retention_hours=24)
    async with sessions.begin() as session:
        for hours_ago in (30, 1):
            session.add(_row(datetime.now(UTC) - timedelta(hours=hours_ago)))
    log = _RecordingLog()
    monkeypatch.setattr(maintenance, "log", log)
    acts = VideoMaintenanceActivities(sessions, settings)

    report = await ActivityEnvironment().run(acts.monitor_resources, MonitorRequest(warn_percent=0.001))

    assert report.samples_pruned == 1
    assert report.warn_percent == 0.001
    assert any(w.startswith("memory ") for w in report.warnings)
    assert [kw["warning"] for level, _e, kw in log.records if level == "warning"] == report.warnings
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ResourceSample)) == 2
        stored = (await session.scalars(select(ResourceSample).where(ResourceSample.id == report.sample_id))).one()
    assert stored.warnings == report.warnings
    assert (stored.host, stored.memory_total_bytes) == (report.snapshot.host, report.snapshot.memory_total_bytes)

    quiet = await ActivityEnvironment().run(acts.monitor_resources, MonitorRequest(warn_percent=100))
    assert (quiet.warn_percent, quiet.warnings, quiet.samples_pruned) == (100, [], 0)


def _row(at: datetime) -> ResourceSample:
    return ResourceSample(
        host="elsewhere",
        sampled_at=at,
        cpu_percent=1.0,
        memory_percent=2.0,
        memory_used_bytes=1,
        memory_total_bytes=2,
        disk_percent=3.0,
        disk_free_bytes=4,
        disk_path="/",
        load_1m=None,
        gpus=[],
        warnings=[],
    )


# --------------------------------------------------------------------------------- schedules
def test_cleanup_runs_daily_at_two_and_monitoring_every_minute_on_the_maintenance_queue() -> None:
    by_id = {s.id: s for s in PIPELINE.schedules}
    cleanup, monitor = by_id["video-cleanup"], by_id["video-monitor-resources"]

    assert MAINTENANCE_QUEUE == "video.maintenance"
    assert (cleanup.cron, cleanup.workflow, cleanup.queue) == ("0 2 * * *", "VideoCleanupWorkflow", MAINTENANCE_QUEUE)
    assert (monitor.cron, monitor.workflow, monitor.queue) == (
        "* * * * *",
        "MonitorResourcesWorkflow",
        MAINTENANCE_QUEUE,
    )
    assert monitor.overlap == ScheduleOverlapPolicy.SKIP
    assert monitor.execution_timeout <= timedelta(minutes=2)
    assert isinstance(cleanup.arg, VideoCleanupRequest) and isinstance(monitor.arg, MonitorRequest)


def test_the_maintenance_queue_serves_both_workflows() -> None:
    queue = PIPELINE.queue(MAINTENANCE_QUEUE)
    assert set(queue.load_workflows()) == {VideoCleanupWorkflow, MonitorResourcesWorkflow}
    assert queue.legacy == ("maintenance",)  # runs started on the old queue name still finish
