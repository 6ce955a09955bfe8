"""The seed's start/stop scripts: one background worker per group with a pid file and log, stopped gracefully."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import psutil
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.helpers import assert_eventually

pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_start_workers_video_only_then_stop_workers(dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(tmp_path),
        "CONVEYOR_TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "CONVEYOR_LOG_JSON": "true",
    }
    started = await asyncio.to_thread(_script, "start-workers.sh", "--video-only", env=env)
    assert started.returncode == 0, started.stderr
    pidfile = tmp_path / "run" / "worker-video.pid"
    pid = int(pidfile.read_text())
    log = tmp_path / "logs" / "worker-video.log"

    async def serving() -> None:
        text = log.read_text()
        assert '"workers started"' in text and "render" in text and "caption" in text, text

    await assert_eventually(serving, within_s=60)
    assert "--group" in psutil.Process(pid).cmdline() and "video" in psutil.Process(pid).cmdline()
    again = await asyncio.to_thread(_script, "start-workers.sh", "--video-only", env=env)
    assert again.returncode == 0 and "already running" in again.stdout  # no second copy

    stopped = await asyncio.to_thread(_script, "stop-workers.sh", env=env)
    assert stopped.returncode == 0 and "worker-video: stopped" in stopped.stdout, stopped.stdout
    assert not pidfile.exists() and not psutil.pid_exists(pid)
    assert '"workers stopped"' in log.read_text()  # SIGTERM let it shut down cleanly


def test_unknown_options_and_groups_are_refused(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_VAR_DIR": str(tmp_path)}
    refused = _script("start-workers.sh", "--bogus", env=env)
    assert refused.returncode == 2 and "unknown option --bogus" in refused.stderr
    bad_group = _script("start-workers.sh", "--group", "nope", env=env)
    assert bad_group.returncode == 2 and "unknown worker group nope" in bad_group.stderr
    assert "video" in bad_group.stderr.split("known:")[1]
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())
