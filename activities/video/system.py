"""The video workers' housekeeping: cleaning the working folder and sampling CPU, memory, disk and GPU use."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from activities.video.schemas import GpuStat, ResourceSnapshot

#: Files younger than this are never deleted to meet the size cap: a running FFmpeg may still write them.
MIN_AGE_S = 3600.0
#: The columns ``nvidia-smi`` is asked for, in the order :func:`parse_nvidia_smi` reads them.
NVIDIA_SMI_QUERY = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu"
NVIDIA_SMI_TIMEOUT_S = 10.0
#: ``psutil.cpu_percent`` measures over this window (the seed samples once a minute).
CPU_SAMPLE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class CleanupReport:
    """What one pass over the working folder removed and what it left."""

    files_removed: int = 0
    bytes_freed: int = 0
    dirs_removed: int = 0
    bytes_remaining: int = 0
    files_remaining: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    path: Path
    size: int
    mtime: float
    is_link: bool


@dataclass
class _Tally:
    files_removed: int = 0
    bytes_freed: int = 0
    errors: list[str] = field(default_factory=list)


def cleanup_temp(
    root: Path,
    *,
    max_age_s: float,
    max_bytes: int,
    now: float | None = None,
    min_age_s: float = MIN_AGE_S,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    stop: threading.Event | None = None,
) -> CleanupReport:
    """Delete old files under ``root``, then the oldest until it fits ``max_bytes``, then empty folders.

    Files whose modification time is more than ``max_age_s`` ago go first. If what is left still exceeds
    ``max_bytes``, regular files are deleted oldest first until it fits — but never a file modified less
    than ``min_age_s`` ago, because it may be the output of an FFmpeg job that is still running (the cap
    may then stay exceeded; ``bytes_remaining`` says by how much). Empty folders are removed bottom-up,
    except ``root`` itself and folders modified less than ``min_age_s`` ago (a job may just have made
    its working folder). Symbolic links are never followed: a link is deleted, as a link, only when it is
    itself old. Files that vanish during the pass are skipped; other failures are listed in ``errors``.
    ``on_progress`` receives the running counts; setting ``stop`` ends the pass early. A missing
    ``root`` gives an empty report.
    """
    clock = time.time() if now is None else now
    tally = _Tally()
    if not root.is_dir():
        return CleanupReport()
    files, dirs = _scan(root, tally.errors)

    def report_progress() -> None:
        if on_progress is not None:
            on_progress({"files_removed": tally.files_removed, "bytes_freed": tally.bytes_freed})

    def stopped() -> bool:
        return stop is not None and stop.is_set()

    remaining: list[_Entry] = []
    for entry in files:
        if not stopped() and clock - entry.mtime > max_age_s and _unlink(entry, tally):
            report_progress()
            continue
        remaining.append(entry)

    total = sum(e.size for e in remaining)
    if total > max_bytes:
        kept: list[_Entry] = []
        for entry in sorted(remaining, key=lambda e: e.mtime):
            deletable = not entry.is_link and clock - entry.mtime >= min_age_s
            if total > max_bytes and deletable and not stopped() and _unlink(entry, tally):
                total -= entry.size
                report_progress()
                continue
            kept.append(entry)
        remaining = kept

    dirs_removed = 0
    if not stopped():
        for path, mtime in sorted(dirs, key=lambda d: len(d[0].parts), reverse=True):
            if clock - mtime >= min_age_s and _rmdir_if_empty(path, tally.errors):
                dirs_removed += 1

    return CleanupReport(
        files_removed=tally.files_removed,
        bytes_freed=tally.bytes_freed,
        dirs_removed=dirs_removed,
        bytes_remaining=sum(e.size for e in remaining),
        files_remaining=len(remaining),
        errors=tally.errors,
    )


def _scan(root: Path, errors: list[str]) -> tuple[list[_Entry], list[tuple[Path, float]]]:
    """Every non-folder entry under ``root`` and every sub-folder with its mtime, without following links."""
    files: list[_Entry] = []
    dirs: list[tuple[Path, float]] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except FileNotFoundError:
            continue
        except OSError as err:
            errors.append(f"{folder}: {err.strerror or err}")
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as err:
                errors.append(f"{entry.path}: {err.strerror or err}")
                continue
            path = Path(entry.path)
            if stat.S_ISDIR(info.st_mode):
                dirs.append((path, info.st_mtime))
                pending.append(path)
                continue
            is_link = stat.S_ISLNK(info.st_mode)
            files.append(_Entry(path, 0 if is_link else info.st_size, info.st_mtime, is_link))
    return files, dirs


def _unlink(entry: _Entry, tally: _Tally) -> bool:
    """Delete one file or link; True if it is gone because of us (or vanished meanwhile)."""
    try:
        entry.path.unlink()
    except FileNotFoundError:
        return True
    except OSError as err:
        tally.errors.append(f"{entry.path}: {err.strerror or err}")
        return False
    tally.files_removed += 1
    tally.bytes_freed += entry.size
    return True


def _rmdir_if_empty(path: Path, errors: list[str]) -> bool:
    """Remove a folder if it is empty; a folder that is not empty or already gone is left alone."""
    try:
        path.rmdir()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            errors.append(f"{path}: {err.strerror or err}")
        return False
    return True


def parse_nvidia_smi(text: str) -> list[GpuStat]:
    """GPUs from ``nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv,noheader,nounits`` output."""
    gpus: list[GpuStat] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6 or not fields[0].isdigit():
            continue
        index, name, util, used, total, temp = fields
        gpus.append(GpuStat(int(index), name, _number(util), _number(used), _number(total), _number(temp)))
    return gpus


def _number(text: str) -> float | None:
    """A reported value, or None for ``[N/A]``, ``[Not Supported]`` and the like."""
    try:
        return float(text)
    except ValueError:
        return None


def read_gpus() -> list[GpuStat]:
    """The machine's NVIDIA GPUs; empty when ``nvidia-smi`` is absent or fails."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        done = subprocess.run(
            [binary, f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []


def usage_warnings(
    *, cpu_percent: float, memory_percent: float, disk_percent: float, gpus: list[GpuStat], warn_percent: float
) -> list[str]:
    """One line per measure above ``warn_percent``, e.g. ``memory 93.1% used (above 90%)``."""
    limit = f"(above {warn_percent:g}%)"
    measures: list[tuple[str, float | None]] = [
        ("cpu", cpu_percent),
        ("memory", memory_percent),
        ("disk", disk_percent),
    ]
    for gpu in gpus:
        measures.append((f"gpu {gpu.index} ({gpu.name}) utilization", gpu.utilization_percent))
        measures.append((f"gpu {gpu.index} ({gpu.name}) memory", gpu.memory_percent))
    return [
        f"{what} {value:.1f}% used {limit}" for what, value in measures if value is not None and value > warn_percent
    ]


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest parent that exists (the working folder may not be made yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or os.sep)


def sample_resources(disk_path: Path, *, warn_percent: float) -> ResourceSnapshot:
    """CPU, memory, the disk holding ``disk_path``, load and GPUs now, with warnings above ``warn_percent``.

    Blocks for about half a second while CPU use is measured.
    """
    cpu = float(psutil.cpu_percent(interval=CPU_SAMPLE_INTERVAL_S))
    memory = psutil.virtual_memory()
    disk_at = existing_ancestor(disk_path)
    disk = psutil.disk_usage(str(disk_at))
    try:
        load_1m: float | None = float(psutil.getloadavg()[0])
    except (AttributeError, OSError):
        load_1m = None
    gpus = read_gpus()
    return ResourceSnapshot(
        host=socket.gethostname(),
        cpu_percent=cpu,
        memory_percent=float(memory.percent),
        memory_used_bytes=int(memory.used),
        memory_total_bytes=int(memory.total),
        disk_path=str(disk_at),
        disk_percent=float(disk.percent),
        disk_free_bytes=int(disk.free),
        load_1m=load_1m,
        gpus=gpus,
        warnings=usage_warnings(
            cpu_percent=cpu,
            memory_percent=float(memory.percent),
            disk_percent=float(disk.percent),
            gpus=gpus,
            warn_percent=warn_percent,
        ),
    )
