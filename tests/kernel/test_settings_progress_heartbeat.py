"""Settings from the environment, the shared Progress shape, and run_blocking's heartbeats and cancellation."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from conveyor.heartbeat import ProgressBox, run_blocking
from conveyor.progress import Progress
from conveyor.settings import Settings

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No CONVEYOR_* variables and no .env file in the working directory."""
    for name in list(os.environ):
        if name.upper().startswith("CONVEYOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# ------------------------------------------------------------------------------------------------ settings


def test_settings_read_conveyor_prefixed_env_vars(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("CONVEYOR_VAR_DIR", str(tmp_path / "state"))
    clean_env.setenv("CONVEYOR_TEMPORAL_ADDRESS", "temporal.internal:7233")
    clean_env.setenv("CONVEYOR_TEMPORAL_NAMESPACE", "prod")
    clean_env.setenv("CONVEYOR_API_PORT", "9001")
    clean_env.setenv("CONVEYOR_MAX_UPLOAD_BYTES", "1024")
    clean_env.setenv("CONVEYOR_LOG_JSON", "true")
    clean_env.setenv("CONVEYOR_WORKER_QUEUES", '["analysis", "crawl"]')
    clean_env.setenv("TEMPORAL_ADDRESS", "ignored:1")  # no prefix: not ours
    settings = Settings()
    assert settings.var_dir == tmp_path / "state"
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.temporal_namespace == "prod"
    assert settings.api_port == 9001
    assert settings.max_upload_bytes == 1024
    assert settings.log_json is True
    assert settings.worker_queues == ["analysis", "crawl"]


def test_settings_reject_a_malformed_number(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CONVEYOR_API_PORT", "eighty")
    with pytest.raises(ValidationError):
        Settings()


def test_settings_read_a_dotenv_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CONVEYOR_LOCAL_USER=grace\nCONVEYOR_LOCAL_USER_CREDITS=7\n")
    settings = Settings()
    assert (settings.local_user, settings.local_user_credits) == ("grace", 7)


def test_defaults_put_state_under_var_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("CONVEYOR_VAR_DIR", str(tmp_path / "state"))
    settings = Settings()
    state = (tmp_path / "state").resolve()
    assert settings.database_url_resolved == f"sqlite+aiosqlite:///{state / 'conveyor.db'}"
    assert settings.blob_url_resolved == str(state / "blobs")
    assert settings.temporal_db_path == tmp_path / "state" / "temporal.db"
    assert settings.api_url == "http://127.0.0.1:8000"


def test_relative_default_var_dir_resolves_against_the_working_directory(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.var_dir == Path("var")
    assert settings.database_url_resolved == f"sqlite+aiosqlite:///{Path.cwd().resolve() / 'var' / 'conveyor.db'}"
    assert settings.blob_url_resolved == str(Path.cwd().resolve() / "var" / "blobs")


def test_explicit_urls_win_over_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CONVEYOR_DATABASE_URL", "postgresql+asyncpg://u:p@db/conveyor")
    clean_env.setenv("CONVEYOR_BLOB_URL", "s3://bucket/prefix")
    clean_env.setenv("CONVEYOR_TEMPORAL_DB_FILENAME", "/data/t.db")
    clean_env.setenv("CONVEYOR_API_PUBLIC_URL", "https://conveyor.example.com")
    settings = Settings()
    assert settings.database_url_resolved == "postgresql+asyncpg://u:p@db/conveyor"
    assert settings.blob_url_resolved == "s3://bucket/prefix"
    assert settings.temporal_db_path == Path("/data/t.db")
    assert settings.api_url == "https://conveyor.example.com"


def test_workflow_ui_url_links_to_the_workflow(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().workflow_ui_url("analysis-123") == (
        "http://127.0.0.1:8233/namespaces/default/workflows/analysis-123"
    )
    clean_env.setenv("CONVEYOR_TEMPORAL_UI_URL", "https://ui.example.com")
    clean_env.setenv("CONVEYOR_TEMPORAL_NAMESPACE", "prod")
    assert Settings().workflow_ui_url("wf-1") == "https://ui.example.com/namespaces/prod/workflows/wf-1"


# ------------------------------------------------------------------------------------------------ progress


def test_progress_starts_empty() -> None:
    p = Progress()
    assert (p.stage, p.percent, p.done, p.total, p.message) == ("starting", 0.0, 0, 0, "")
    assert p.started_at is None and p.updated_at is None


def test_advance_sets_started_at_once_and_updated_at_every_time() -> None:
    first = Progress().advance(T0, stage="profiling", percent=10, done=1, total=4, message="file 1")
    assert (first.stage, first.percent, first.done, first.total, first.message) == (
        "profiling",
        10.0,
        1,
        4,
        "file 1",
    )
    assert first.started_at == T0 and first.updated_at == T0
    later = T0 + timedelta(minutes=3)
    second = first.advance(later, percent=50, done=2)
    assert second.started_at == T0
    assert second.updated_at == later
    assert (second.stage, second.percent, second.done, second.message) == ("profiling", 50.0, 2, "file 1")


def test_advance_returns_a_copy_and_leaves_the_original() -> None:
    before = Progress().advance(T0, percent=20)
    before.advance(T0 + timedelta(seconds=1), percent=90)
    assert before.percent == 20.0
    assert before.updated_at == T0


@pytest.mark.parametrize(("asked", "shown"), [(-5, 0.0), (0, 0.0), (42.5, 42.5), (100, 100.0), (250, 100.0)])
def test_advance_clamps_percent(asked: float, shown: float) -> None:
    assert Progress().advance(T0, percent=asked).percent == shown


def test_progress_is_frozen() -> None:
    p = Progress().advance(T0, percent=5)
    with pytest.raises(ValidationError):
        p.percent = 99  # type: ignore[misc]
    assert p.percent == 5.0


def test_progress_round_trips_as_json() -> None:
    p = Progress().advance(T0, stage="agents", percent=33.3, done=1, total=3)
    assert Progress.model_validate_json(p.model_dump_json()) == p


# ------------------------------------------------------------------------------------------- run_blocking


def test_progress_box_holds_the_latest_value() -> None:
    box = ProgressBox({"files_done": 0})
    assert box.get() == {"files_done": 0}
    box.set({"files_done": 3})
    assert box.get() == {"files_done": 3}


async def test_run_blocking_returns_the_result_without_waiting_for_a_heartbeat() -> None:
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)

    async def act() -> int:
        return await run_blocking(lambda: 6 * 7, interval=60)

    assert await env.run(act) == 42
    assert beats == []


async def test_run_blocking_heartbeats_progress_while_the_work_runs() -> None:
    env = ActivityEnvironment()
    beats: list[Any] = []
    enough = threading.Event()
    box = ProgressBox({"rows": 0})

    def on_heartbeat(*details: Any) -> None:
        beats.append(details)
        if len(beats) >= 3:
            enough.set()

    env.on_heartbeat = on_heartbeat

    def work() -> str:
        box.set({"rows": 500})
        assert enough.wait(10), "no heartbeats while the work ran"
        return "done"

    async def act() -> str:
        return await run_blocking(work, progress=box, interval=0.01)

    assert await env.run(act) == "done"
    assert len(beats) >= 3
    assert beats[-1] == ({"rows": 500},)


async def test_run_blocking_propagates_the_work_error() -> None:
    env = ActivityEnvironment()

    def work() -> None:
        raise ValueError("bad column")

    async def act() -> None:
        await run_blocking(work, interval=60)

    with pytest.raises(ValueError, match="bad column"):
        await env.run(act)


async def test_cancellation_stops_the_work_and_propagates() -> None:
    env = ActivityEnvironment()
    stop = threading.Event()
    work_ended: list[bool] = []
    env.on_heartbeat = lambda *_details: env.cancel()  # Temporal cancels once the activity is running

    def work() -> bool:
        stopped = stop.wait(10)
        work_ended.append(stopped)
        return stopped

    async def act() -> bool:
        return await run_blocking(work, on_cancel=stop.set, interval=0.01)

    with pytest.raises(asyncio.CancelledError):
        await env.run(act)
    assert stop.is_set(), "on_cancel was not called"
    assert work_ended == [True], "the blocking work was not awaited before the cancellation propagated"


async def test_cancellation_without_on_cancel_still_waits_for_the_work() -> None:
    env = ActivityEnvironment()
    release = threading.Event()
    work_ended: list[bool] = []

    def on_heartbeat(*_details: Any) -> None:
        env.cancel()
        release.set()  # the work finishes by itself shortly after the cancel

    env.on_heartbeat = on_heartbeat

    def work() -> None:
        work_ended.append(release.wait(10))

    async def act() -> None:
        await run_blocking(work, interval=0.01)

    with pytest.raises(asyncio.CancelledError):
        await env.run(act)
    assert work_ended == [True]
