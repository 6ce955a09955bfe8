"""Processes for tests: ``conveyor worker`` children for crash tests, CLI runs, and retries read from history."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        return subprocess.Popen([sys.executable, "-m", "cli", "worker", *args], env=env, stdout=out, stderr=out)


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


async def run_cli(settings: Settings, *args: str, within_s: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m cli ARGS`` against the settings' var dir, Temporal and API port (the caller's loop keeps running)."""
    env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(settings.var_dir),
        "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONVEYOR_API_PORT": str(settings.api_port),
        "CONVEYOR_LOG_LEVEL": "warning",
        # the CLI checks a crawl's start URL itself: the same allow-list as the stack
        "CONVEYOR_CRAWL_ALLOWED_HOSTS": json.dumps(settings.crawl_allowed_hosts),
        "CONVEYOR_CRAWL_ONLY_ALLOWED_HOSTS": str(settings.crawl_only_allowed_hosts).lower(),
    }
    if settings.hubspot_client_secret is not None:  # webhooks replay signs with the stack's secret
        env["CONVEYOR_HUBSPOT_CLIENT_SECRET"] = settings.hubspot_client_secret.get_secret_value()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


def cli_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a ``--json`` CLI run printed."""
    return json.loads(result.stdout)
