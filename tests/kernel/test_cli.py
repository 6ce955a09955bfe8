"""The `conveyor` command line against the real test stack: users, analyze, status, cancel, schedules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError

from tests.helpers.stack import Stack
from workers.pipelines import PIPELINES

pytestmark = pytest.mark.process

SCHEDULES = [s for p in PIPELINES for s in p.schedules]

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "analysis"


async def conveyor(stack: Stack, *args: str, within_s: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI with the stack's settings (without blocking the loop the test's workers run on)."""
    env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(stack.settings.var_dir),
        "CONVEYOR_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "CONVEYOR_API_PORT": str(stack.settings.api_port),
        "CONVEYOR_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), within_s)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


async def test_users_create_then_analyze_then_status(stack: Stack) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = await conveyor(stack, "users", "create", name, "--credits", "30", "--json")
    assert created.returncode == 0, created.stderr
    assert as_json(created)["api_key"].startswith("cvy_")
    duplicate = await conveyor(stack, "users", "create", name, "--json")
    assert duplicate.returncode == 1 and as_json(duplicate)["error"]["code"] == "USER_EXISTS"

    run = await conveyor(
        stack, "analyze", "profile-my-data", str(SAMPLES / "orders_2024.csv"), "--user", name, "--json"
    )
    assert run.returncode == 0, run.stderr
    task = as_json(run)
    assert task["status"] == "completed"
    assert Path(task["local_outputs"]["profile.json"]).is_file()

    status = await conveyor(stack, "status", task["workflow_id"], "--json")
    assert status.returncode == 0, status.stderr
    assert as_json(status)["status"] == "completed"
    assert as_json(status)["progress"]["stage"] == "completed"

    cancel = await conveyor(stack, "cancel", task["workflow_id"], "--json")
    assert as_json(cancel)["result"] == "already completed"

    human = await conveyor(
        stack,
        "analyze",
        "profile-my-data",
        str(SAMPLES / "orders_2024.csv"),
        "--user",
        name,
        "--agents",
        "unified-profiler",
    )
    assert human.returncode == 0, human.stderr
    assert "completed" in human.stdout and "profile.json" in human.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["analyze", "predict-my-data", str(SAMPLES / "orders_2024.csv")], "UNKNOWN_TOOL"),
        (["analyze", "profile-my-data", "/nonexistent/file.csv"], "FILE_NOT_FOUND"),
        (["analyze", "profile-my-data", str(SAMPLES / "orders_2024.csv"), "--user", "nobody-here"], "USER_NOT_FOUND"),
        (["status", "analysis-does-not-exist"], "WORKFLOW_NOT_FOUND"),
    ],
)
async def test_bad_input_gives_one_readable_line_and_non_zero_exit(stack: Stack, args: list[str], code: str) -> None:
    result = await conveyor(stack, *args)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error {code}:"), result.stderr
    assert "Traceback" not in result.stderr
    json_result = await conveyor(stack, *args, "--json")
    assert as_json(json_result)["error"]["code"] == code


async def test_schedules_sync_is_idempotent_and_listed(stack: Stack) -> None:
    try:
        first = await conveyor(stack, "schedules", "sync", "--json")
        second = await conveyor(stack, "schedules", "sync", "--json")
        assert first.returncode == 0, first.stderr
        assert {r["action"] for r in as_json(second)} == {"updated"}
        listed = as_json(await conveyor(stack, "schedules", "list", "--json"))
        purge = next(r for r in listed if r["id"] == "analysis-purge-work")
        assert len(purge["next_runs"]) >= 1
        assert {r["id"] for r in listed} >= {s.id for s in SCHEDULES}
    finally:
        # the shared test server must not keep firing them (one runs every minute) into later tests
        for spec in SCHEDULES:
            with contextlib.suppress(RPCError):
                await stack.client.get_schedule_handle(spec.id).delete()


async def test_worker_rejects_unknown_queue_or_group(stack: Stack) -> None:
    result = await conveyor(stack, "worker", "--queue", "nope")
    assert result.returncode == 2
    assert "UNKNOWN_QUEUE" in result.stderr
    result = await conveyor(stack, "worker", "--group", "nope")
    assert result.returncode == 2
    assert "UNKNOWN_GROUP" in result.stderr


async def test_pipelines_lists_every_manifest(stack: Stack) -> None:
    result = await conveyor(stack, "pipelines", "--json")
    assert result.returncode == 0, result.stderr
    listed = {row["name"]: row for row in as_json(result)}
    assert list(listed) == [p.name for p in PIPELINES]
    assert listed["video"]["queues"]["video.render"] == 2  # the seed's render concurrency
    assert "CrawlSessionWorkflow" in listed["crawl"]["workflows"]
    assert listed["analysis"]["schedules"] == {"analysis-purge-work": "30 3 * * *"}
