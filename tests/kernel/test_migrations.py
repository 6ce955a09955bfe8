"""Migration 0005 moves rows of every old status to the one run lifecycle without losing any.

A database is built by the old migrations (up to 0004), filled with a row in every status each pipeline used to
record, then upgraded to head; every row must still be there, on the new status set, with its old meaning kept
as the stage or the error, and readable through the pipelines' models. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.analysis.models import AnalysisTask
from activities.crawl.models import CrawlSession
from activities.persona.models import IngestionJob, Persona
from activities.video.models import Video, VideoJob
from conveyor.db import create_engine, migrate, session_factory
from conveyor.runs import RunStatus
from tests.helpers.postgres import throwaway_postgres

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

#: (table, primary key, old values) -> what the row must look like after the upgrade.
OLD_ROWS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # analysis: created, queued, processing (with and without an agent), completed, failed, cancelled
    ("analysis_tasks", "a-created", {"status": "created"}, {"status": "created"}),
    ("analysis_tasks", "a-queued", {"status": "queued"}, {"status": "queued"}),
    (
        "analysis_tasks",
        "a-processing",
        {"status": "processing", "current_agent": "score-risk", "progress": 47},
        {"status": "running", "stage": "score-risk", "progress": 47.0},
    ),
    ("analysis_tasks", "a-loading", {"status": "processing"}, {"status": "running", "stage": "processing"}),
    ("analysis_tasks", "a-completed", {"status": "completed", "progress": 100}, {"status": "completed"}),
    (
        "analysis_tasks",
        "a-failed",
        {"status": "failed", "error_code": "INSUFFICIENT_CREDITS", "error_message": "needs 9 credits"},
        {"status": "failed", "error_kind": "PaymentRequired", "error_message": "needs 9 credits"},
    ),
    ("analysis_tasks", "a-timeout", {"status": "failed", "error_code": "TIMEOUT"}, {"error_kind": "Timeout"}),
    ("analysis_tasks", "a-cancelled", {"status": "cancelled"}, {"status": "cancelled"}),
    # crawl: queued, starting, running, completed, failed, cancelled
    ("crawl_sessions", "c-queued", {"status": "queued"}, {"status": "queued"}),
    ("crawl_sessions", "c-starting", {"status": "starting"}, {"status": "running", "stage": "starting"}),
    (
        "crawl_sessions",
        "c-running",
        {"status": "running", "pages_crawled": 7, "progress": 35.0},
        {"status": "running", "stage": "crawling", "pages_crawled": 7, "progress": 35.0},
    ),
    ("crawl_sessions", "c-completed", {"status": "completed", "truncated": True}, {"truncated": True}),
    (
        "crawl_sessions",
        "c-failed",
        {"status": "failed", "error_code": "START_URL_UNREACHABLE", "error_message": "connection refused"},
        {"status": "failed", "error_kind": "BadInput", "error_code": "START_URL_UNREACHABLE"},
    ),
    ("crawl_sessions", "c-cancelled", {"status": "cancelled"}, {"status": "cancelled"}),
    # personas: draft, ingesting, active, failed, failed because it was cancelled
    ("personas", "p-draft", {"status": "draft"}, {"status": "created", "progress": 0.0}),
    ("personas", "p-ingesting", {"status": "ingesting"}, {"status": "running", "stage": "ingesting"}),
    (
        "personas",
        "p-active",
        {"status": "active", "last_ingested_at": NOW},
        {"status": "completed", "progress": 100.0, "completed_at": NOW},
    ),
    (
        "personas",
        "p-failed",
        {"status": "failed", "status_reason": "works: data folder not found"},
        {
            "status": "failed",
            "error_code": "INGESTION_FAILED",
            "error_message": "works: data folder not found",
            "completed_at": NOW,
        },
    ),
    (
        "personas",
        "p-cancelled",
        {"status": "failed", "status_reason": "ingestion cancelled"},
        {"status": "cancelled", "error_code": None},
    ),
    # ingestion jobs: pending, processing, completed, failed, failed as CANCELLED
    ("ingestion_jobs", "j-pending", {"status": "pending"}, {"status": "queued"}),
    (
        "ingestion_jobs",
        "j-processing",
        {"status": "processing", "progress": 40, "files_done": 2, "files_total": 5},
        {"status": "running", "stage": "ingesting", "progress": 40.0, "files_done": 2},
    ),
    ("ingestion_jobs", "j-completed", {"status": "completed", "total_vectors": 12}, {"total_vectors": 12}),
    (
        "ingestion_jobs",
        "j-failed",
        {"status": "failed", "error_code": "DATA_NOT_FOUND", "error_message": "no works folder"},
        {"status": "failed", "error_kind": "NotFound", "error_message": "no works folder"},
    ),
    (
        "ingestion_jobs",
        "j-cancelled",
        {"status": "failed", "error_code": "CANCELLED", "error_message": "ingestion cancelled"},
        {"status": "cancelled", "error_code": None, "error_message": None},
    ),
    # videos: queued, rendering, ready (upload and render), failed, cancelled
    ("videos", "v-queued", {"status": "queued", "origin": "render"}, {"status": "queued"}),
    (
        "videos",
        "v-rendering",
        {"status": "rendering", "origin": "render"},
        {"status": "running", "stage": "rendering", "started_at": NOW},
    ),
    (
        "videos",
        "v-uploaded",
        {"status": "ready", "origin": "upload"},
        {"status": "completed", "stage": "uploaded", "progress": 100.0},
    ),
    ("videos", "v-rendered", {"status": "ready", "origin": "render"}, {"status": "completed", "stage": "rendered"}),
    (
        "videos",
        "v-failed",
        {"status": "failed", "origin": "render", "error_code": "TRIM_PAST_END", "error_message": "clip 2"},
        {"status": "failed", "error_kind": "BadInput", "completed_at": NOW},
    ),
    ("videos", "v-cancelled", {"status": "cancelled", "origin": "render"}, {"status": "cancelled"}),
    # video jobs: queued, running, completed, failed, cancelled
    ("video_jobs", "vj-queued", {"status": "queued", "kind": "preview"}, {"status": "queued"}),
    ("video_jobs", "vj-running", {"status": "running", "kind": "render", "progress": 12.5}, {"progress": 12.5}),
    ("video_jobs", "vj-completed", {"status": "completed", "kind": "caption"}, {"status": "completed"}),
    (
        "video_jobs",
        "vj-failed",
        {"status": "failed", "kind": "transcode", "error_code": "BAD_SPEC", "error_message": "no such codec"},
        {"status": "failed", "error_kind": "BadInput", "error_code": "BAD_SPEC"},
    ),
    ("video_jobs", "vj-cancelled", {"status": "cancelled", "kind": "render"}, {"status": "cancelled"}),
]
MODELS: dict[str, type[Any]] = {
    "analysis_tasks": AnalysisTask,
    "crawl_sessions": CrawlSession,
    "personas": Persona,
    "ingestion_jobs": IngestionJob,
    "videos": Video,
    "video_jobs": VideoJob,
}
#: Parents every row points at.
PARENTS = {"personas": "p-parent", "videos": "v-parent"}


def _filler(column: sa.Column[Any]) -> Any:
    """A plain value for a required column the test does not care about."""
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return NOW
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Float | sa.Numeric):
        return 0
    if isinstance(kind, sa.JSON):
        return []
    return f"{column.name}-x"


def _insert(sync: sa.Connection, table_name: str, key: str, values: dict[str, Any]) -> None:
    table = sa.Table(table_name, sa.MetaData(), autoload_with=sync)
    primary = next(iter(table.primary_key.columns)).name
    row: dict[str, Any] = {primary: key}
    for column in table.columns:
        if column.name in row or column.nullable or column.server_default is not None:
            continue
        row[column.name] = _filler(column)
    row.update({"user_id": 1} if "user_id" in table.columns else {})
    row.update({"persona_id": PARENTS["personas"]} if "persona_id" in table.columns else {})
    row.update({"video_id": PARENTS["videos"]} if "video_id" in table.columns else {})
    for name in ("workflow_id",):
        if name in table.columns:
            row[name] = f"wf-{key}"
    row.update(values)
    sync.execute(table.insert().values(**row))


def _fill_old_database(sync: sa.Connection) -> None:
    sync.execute(sa.text("INSERT INTO users (id, name, credits, credits_held) VALUES (1, 'old-user', 5, 0)"))
    _insert(sync, "personas", PARENTS["personas"], {"status": "active"})
    _insert(sync, "videos", PARENTS["videos"], {"status": "ready", "origin": "upload"})
    for table, key, old, _ in OLD_ROWS:
        _insert(sync, table, key, old)


def _counts(sync: sa.Connection) -> dict[str, int]:
    return {t: int(sync.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in MODELS}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs_postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind Conveyor supports."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
async def upgraded(database_url: str) -> AsyncIterator[tuple[AsyncEngine, dict[str, int]]]:
    """A database built by migrations 0001–0004, filled with old rows, then upgraded to head."""
    await migrate(database_url, "0004")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_fill_old_database)
            before = await conn.run_sync(_counts)
        await migrate(database_url)
        yield engine, before
    finally:
        await engine.dispose()


async def test_every_old_row_survives_on_the_new_status_set(upgraded: tuple[AsyncEngine, dict[str, int]]) -> None:
    engine, before = upgraded
    async with engine.connect() as conn:
        assert await conn.run_sync(_counts) == before  # no row lost
    async with session_factory(engine)() as session:
        for table, key, _, expected in OLD_ROWS:
            row = await session.get_one(MODELS[table], key)
            assert row.run_status in set(RunStatus), key  # every status parses as the kernel's
            for name, value in expected.items():
                actual = getattr(row, name)
                if isinstance(actual, datetime) and actual.tzinfo is None:
                    actual = actual.replace(tzinfo=UTC)
                assert actual == value, f"{key}.{name}: {actual!r} != {value!r}"
            assert row.workflow_id == f"wf-{key}", key


async def test_every_failed_row_keeps_its_code_and_gains_a_kind_when_known(
    upgraded: tuple[AsyncEngine, dict[str, int]],
) -> None:
    engine, _ = upgraded
    async with session_factory(engine)() as session:
        for table, key, old, _ in OLD_ROWS:
            row = await session.get_one(MODELS[table], key)
            if row.status == RunStatus.FAILED and old.get("error_code"):
                assert row.error_code == old["error_code"], key
                assert row.error is not None and row.error.code == old["error_code"], key
