"""The kernel's run lifecycle on a real SQLite database: one writer of run rows for every pipeline."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.crawl.models import CrawlSession
from activities.video.models import Video
from conveyor.auth import create_user
from conveyor.errors import BadInput
from conveyor.records import RUN_TABLES, RunBook, row_writer
from conveyor.runs import RunError, RunStatus, RunUpdate
from workers.pipelines import PIPELINES

TABLE = "crawl_sessions"


async def _new_run(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions.begin() as session:
        user, _ = await create_user(session, f"u-{uuid.uuid4().hex[:8]}", 0)
        run = CrawlSession(id=str(uuid.uuid4()), user_id=user.id, url="http://127.0.0.1/", config={})
        session.add(run)
    return run.id


async def _row(sessions: async_sessionmaker[AsyncSession], run_id: str) -> CrawlSession:
    async with sessions() as session:
        return await session.get_one(CrawlSession, run_id)


def test_every_run_table_of_every_pipeline_is_registered_by_its_manifest() -> None:
    for pipeline in PIPELINES:  # as a worker does before it serves the bookkeeping activity
        pipeline.load_models()
    assert {"analysis_tasks", "crawl_sessions", "personas", "ingestion_jobs", "videos", "video_jobs"} <= set(RUN_TABLES)
    assert RUN_TABLES["videos"] is Video


async def test_a_run_goes_queued_running_completed_with_its_times(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id, book = await _new_run(sessions), RunBook(sessions)
    assert (await _row(sessions, run_id)).status == RunStatus.QUEUED

    await book.write(RunUpdate.of(TABLE, run_id, status=RunStatus.RUNNING, stage="crawling", progress=40))
    running = await _row(sessions, run_id)
    assert (running.status, running.stage, running.progress) == ("running", "crawling", 40.0)
    assert running.started_at is not None and running.completed_at is None

    await book.write(RunUpdate.of(TABLE, run_id, status=RunStatus.COMPLETED, truncated=True))
    done = await _row(sessions, run_id)
    assert (done.status, done.progress, done.truncated) == ("completed", 100.0, True)
    assert done.started_at == running.started_at and done.completed_at is not None


async def test_a_failure_keeps_its_kind_code_and_message(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id = await _new_run(sessions)
    error = RunError(kind="BadInput", code="START_URL_UNREACHABLE", message="connection refused")
    await RunBook(sessions).write(RunUpdate.of(TABLE, run_id, status=RunStatus.FAILED, error=error))
    row = await _row(sessions, run_id)
    assert (row.error_kind, row.error_code, row.error_message) == ("BadInput", "START_URL_UNREACHABLE", error.message)
    assert row.error == error


async def test_the_first_end_wins(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id, book = await _new_run(sessions), RunBook(sessions)
    await book.write(RunUpdate.of(TABLE, run_id, status=RunStatus.COMPLETED))
    ended = await _row(sessions, run_id)

    # a late progress write, a bookkeeping activity run again, another end: none changes a finished run
    await book.write(RunUpdate.of(TABLE, run_id, progress=10, stage="crawling", current_url="http://127.0.0.1/x"))
    await book.write(RunUpdate.of(TABLE, run_id, status=RunStatus.RUNNING))
    await book.write(RunUpdate.of(TABLE, run_id, status=RunStatus.CANCELLED))
    row = await _row(sessions, run_id)
    assert (row.status, row.progress, row.stage, row.current_url) == ("completed", 100.0, None, None)
    assert row.completed_at == ended.completed_at


async def test_progress_is_clamped_and_a_missing_run_is_ignored(sessions: async_sessionmaker[AsyncSession]) -> None:
    run_id, book = await _new_run(sessions), RunBook(sessions)
    await book.write(RunUpdate.of(TABLE, run_id, progress=250))
    assert (await _row(sessions, run_id)).progress == 100.0
    await book.write(RunUpdate.of(TABLE, str(uuid.uuid4()), status=RunStatus.FAILED))  # no row, no error


@pytest.mark.parametrize(
    ("update", "code"),
    [
        (RunUpdate.of("no_such_table", "x", progress=1), "UNKNOWN_RUN_TABLE"),
        (RunUpdate.of(TABLE, "x", no_such_column=1), "BAD_RUN_UPDATE"),
        (RunUpdate.of(TABLE, "x", error_code="SNEAKY"), "BAD_RUN_UPDATE"),  # lifecycle columns go through status
        (RunUpdate.of(TABLE, "x", id="other"), "BAD_RUN_UPDATE"),  # never the key
    ],
)
async def test_bad_updates_are_refused_by_name(
    sessions: async_sessionmaker[AsyncSession], update: RunUpdate, code: str
) -> None:
    with pytest.raises(BadInput) as raised:
        await RunBook(sessions).write(update)
    assert raised.value.code == code


async def test_the_progress_writer_copies_details_onto_an_unfinished_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    run_id = await _new_run(sessions)
    write = row_writer(sessions, TABLE, run_id, lambda detail: {"progress": detail["percent"], "stage": "crawling"})
    await write({"percent": 33.3})
    assert ((await _row(sessions, run_id)).progress, (await _row(sessions, run_id)).stage) == (33.3, "crawling")

    await RunBook(sessions).write(RunUpdate.of(TABLE, run_id, status=RunStatus.CANCELLED))
    await write({"percent": 80})  # a heartbeat after the end
    assert (await _row(sessions, run_id)).progress == 33.3
