"""`conveyor up` as a user runs it: a real process tree that serves, refuses a second copy and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import free_port

pytestmark = [pytest.mark.process, pytest.mark.slow]


def _env(var: Path) -> dict[str, str]:
    grpc, ui, api = free_port(), free_port(), free_port()
    return {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(var),
        "CONVEYOR_TEMPORAL_ADDRESS": f"127.0.0.1:{grpc}",
        "CONVEYOR_TEMPORAL_UI_PORT": str(ui),
        "CONVEYOR_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}",
        "CONVEYOR_API_PORT": str(api),
    }


def _wait_healthy(url: str, within_s: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{url}/api/health", timeout=2)
            last = resp.json()
            if resp.status_code == 200:
                return dict(resp.json())
        except httpx.TransportError as err:
            last = err
        time.sleep(0.5)
    raise AssertionError(f"stack not healthy: {last}")


def test_up_serves_refuses_a_second_copy_and_stops_without_orphans(tmp_path: Path) -> None:
    env = _env(tmp_path / "var")
    cmd = [sys.executable, "-m", "cli", "up", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        api = f"http://127.0.0.1:{env['CONVEYOR_API_PORT']}"
        health = _wait_healthy(api)
        assert health["status"] == "ok"
        ui = httpx.get(env["CONVEYOR_TEMPORAL_UI_URL"], timeout=5, follow_redirects=True)
        assert ui.status_code == 200
        assert proc.stdout is not None
        info = json.loads(proc.stdout.read1().decode())  # type: ignore[attr-defined]
        assert info["api"] == api and set(info["pids"]) == {"temporal", "worker", "api"}
        children = psutil.Process(proc.pid).children(recursive=True)
        assert {c.pid for c in children} >= set(info["pids"].values())

        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "already running" in second.stderr + second.stdout

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "var" / "temporal.db").exists()
    assert (tmp_path / "var" / "conveyor.db").exists()


SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "analysis" / "orders_2024.csv"


def _up(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_history_and_app_data_survive_a_restart(tmp_path: Path) -> None:
    env = _env(tmp_path / "var")
    api = f"http://127.0.0.1:{env['CONVEYOR_API_PORT']}"
    created = subprocess.run(
        [sys.executable, "-m", "cli", "users", "create", "keeper", "--credits", "20", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    headers = {"X-API-Key": json.loads(created.stdout)["api_key"]}
    proc = _up(env)
    try:
        _wait_healthy(api)
        task = httpx.post(
            f"{api}/api/tasks",
            headers=headers,
            data={"tool_id": "profile-my-data", "agents": "unified-profiler"},
            files={"files": ("orders_2024.csv", SAMPLE.read_bytes())},
            timeout=30,
        ).json()
        workflow_id = httpx.post(f"{api}/api/tasks/{task['task_id']}/process", headers=headers).json()["workflow_id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{api}/api/tasks/{task['task_id']}", headers=headers).json()["status"] != "completed":
            assert time.monotonic() < deadline, "task did not complete"
            time.sleep(0.3)
    finally:
        _stop(proc)
    proc = _up(env)
    try:
        _wait_healthy(api)
        after = httpx.get(f"{api}/api/tasks/{task['task_id']}", headers=headers).json()
        assert after["status"] == "completed" and "profile.json" in {o["name"] for o in after["outputs"]}
        progress = httpx.get(f"{api}/api/workflows/{workflow_id}/progress", headers=headers).json()
        assert progress["status"] == "completed" and progress["progress"]["stage"] == "completed"
        assert httpx.get(f"{api}/api/tasks/{task['task_id']}/outputs/profile.json", headers=headers).status_code == 200
    finally:
        _stop(proc)
