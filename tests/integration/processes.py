"""Worker processes for crash tests: start ``conveyor worker`` as a child, and read retries back from history."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import WorkflowHistory

from conveyor.settings import Settings


def spawn_worker(
    settings: Settings, queues: Sequence[str], log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``conveyor worker`` for ``queues`` against the settings' var dir and Temporal address, logging to ``log``."""
    env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(settings.var_dir),
        "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
        **(extra_env or {}),
    }
    args = [arg for q in queues for arg in ("--queue", q)]
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "conveyor", "worker", *args], env=env, stdout=out, stderr=out)


def stop_all(*procs: subprocess.Popen[bytes] | None) -> None:
    """Terminate the processes still running and reap them."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def max_activity_attempt(history: WorkflowHistory) -> int:
    """The highest attempt number any activity of the run started with (2+ means one was retried)."""
    return max(
        (
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
        ),
        default=0,
    )
