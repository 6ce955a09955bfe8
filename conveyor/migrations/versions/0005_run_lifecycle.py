"""one run lifecycle: every run table gets the kernel's run columns and the one status set

Rows keep everything they had: old status words become ``created | queued | running | completed | failed |
cancelled`` with the old word's meaning kept as the ``stage`` (processing, starting, crawling, ingesting,
rendering); progress becomes a float 0-100 everywhere; failures gain their error kind where the code says it;
a persona's ``status_reason`` becomes its error message; ingestion jobs and personas that were recorded
``failed`` because they were cancelled become ``cancelled``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from conveyor.migrations.columns import TS, error_columns, optional, run_times, updated_at

revision = "0005"
down_revision = "0004"

RUN_TABLES = ("analysis_tasks", "crawl_sessions", "personas", "ingestion_jobs", "videos", "video_jobs")

#: The error kind a failure's code implies (codes the pipelines recorded before kinds were kept).
ERROR_KIND = """CASE
    WHEN error_code IS NULL THEN NULL
    WHEN error_code = 'TIMEOUT' THEN 'Timeout'
    WHEN error_code = 'INSUFFICIENT_CREDITS' THEN 'PaymentRequired'
    WHEN error_code LIKE '%NOT_FOUND' THEN 'NotFound'
    WHEN error_code IN ('TEMPORAL_UNAVAILABLE', 'START_URL_TIMEOUT') THEN 'ExternalService'
    WHEN error_code IN ('START_URL_UNREACHABLE', 'NO_VIDEO', 'TRIM_PAST_END', 'TRANSITION_TOO_LONG',
                        'OVERLAY_PAST_END', 'EMPTY_FILE', 'TOO_MANY_FILES')
        OR error_code LIKE 'BAD_%' OR error_code LIKE 'INVALID_%' OR error_code LIKE 'UNKNOWN_%' THEN 'BadInput'
    WHEN error_code IN ('TERMINATED', 'INTERNAL_ERROR') THEN 'Internal'
    ELSE NULL
END"""


def _add_run_columns(table: str, *, progress: bool, error: bool, started: bool, updated: bool) -> None:
    """Add the run columns ``table`` lacks (``stage`` and ``error_kind`` always)."""
    columns = optional(stage=sa.String(64), error_kind=sa.String(32))
    if progress:
        columns.append(sa.Column("progress", sa.Float, nullable=False, server_default="0"))
    columns += (error_columns() if error else []) + (run_times() if started else [])
    if updated:
        columns.append(updated_at(nullable=True))
    with op.batch_alter_table(table) as batch:
        for column in columns:
            batch.add_column(column)


def _float_progress(table: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.alter_column(
            "progress",
            type_=sa.Float,
            existing_type=sa.Integer,
            existing_nullable=False,
            postgresql_using="progress::double precision",
        )


def _status_column(table: str, length: int = 20) -> None:
    with op.batch_alter_table(table) as batch:
        batch.alter_column("status", type_=sa.String(length), existing_type=sa.String(16), existing_nullable=False)


def _run(sql: str) -> None:
    op.execute(sa.text(sql))


def upgrade() -> None:
    # analysis: processing -> running, the agent (or "processing") as the stage
    _add_run_columns("analysis_tasks", progress=False, error=False, started=False, updated=False)
    _float_progress("analysis_tasks")
    _run(
        "UPDATE analysis_tasks SET status = 'running', stage = COALESCE(current_agent, 'processing') "
        "WHERE status = 'processing'"
    )

    # crawl: starting and running are both running; the old word is the stage
    _add_run_columns("crawl_sessions", progress=False, error=False, started=False, updated=False)
    _run("UPDATE crawl_sessions SET stage = 'starting', status = 'running' WHERE status = 'starting'")
    _run("UPDATE crawl_sessions SET stage = 'crawling' WHERE status = 'running' AND stage IS NULL")

    # personas: draft -> created, ingesting -> running, active -> completed, failed (cancelled) -> cancelled
    _add_run_columns("personas", progress=True, error=True, started=True, updated=False)
    _run("UPDATE personas SET status = 'created' WHERE status = 'draft'")
    _run("UPDATE personas SET status = 'running', stage = 'ingesting' WHERE status = 'ingesting'")
    _run(
        "UPDATE personas SET status = 'completed', progress = 100, completed_at = last_ingested_at "
        "WHERE status = 'active'"
    )
    _run(
        "UPDATE personas SET status = 'cancelled', completed_at = updated_at "
        "WHERE status = 'failed' AND status_reason LIKE '%cancelled%'"
    )
    _run(
        "UPDATE personas SET error_code = 'INGESTION_FAILED', error_message = status_reason, "
        "completed_at = updated_at WHERE status = 'failed'"
    )
    with op.batch_alter_table("personas") as batch:
        batch.drop_column("status_reason")

    # ingestion jobs: pending -> queued, processing -> running, failed with CANCELLED -> cancelled
    _add_run_columns("ingestion_jobs", progress=False, error=False, started=False, updated=True)
    _float_progress("ingestion_jobs")
    _status_column("ingestion_jobs")
    _run("UPDATE ingestion_jobs SET status = 'queued' WHERE status = 'pending'")
    _run("UPDATE ingestion_jobs SET status = 'running', stage = 'ingesting' WHERE status = 'processing'")
    _run(
        "UPDATE ingestion_jobs SET status = 'cancelled', error_code = NULL, error_message = NULL "
        "WHERE status = 'failed' AND error_code = 'CANCELLED'"
    )
    _run("UPDATE ingestion_jobs SET updated_at = COALESCE(completed_at, started_at, created_at)")

    # videos: rendering -> running, ready -> completed (an upload is complete once stored)
    _add_run_columns("videos", progress=True, error=False, started=True, updated=False)
    _status_column("videos")
    _run(
        "UPDATE videos SET status = 'running', stage = 'rendering', started_at = created_at WHERE status = 'rendering'"
    )
    _run(
        "UPDATE videos SET status = 'completed', progress = 100, completed_at = updated_at, "
        "stage = CASE WHEN origin = 'upload' THEN 'uploaded' ELSE 'rendered' END WHERE status = 'ready'"
    )
    _run("UPDATE videos SET completed_at = updated_at WHERE status IN ('failed', 'cancelled')")

    # video jobs: already on the status set; they gain the other run columns
    _add_run_columns("video_jobs", progress=False, error=False, started=False, updated=True)
    _status_column("video_jobs")
    _run("UPDATE video_jobs SET updated_at = COALESCE(completed_at, started_at, created_at)")

    for table in RUN_TABLES:
        _run(f"UPDATE {table} SET error_kind = {ERROR_KIND} WHERE status = 'failed'")
    for table in ("ingestion_jobs", "video_jobs"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("updated_at", existing_type=TS, nullable=False)
        op.create_index(f"ix_{table}_status", table, ["status"])


def downgrade() -> None:
    for table in ("ingestion_jobs", "video_jobs"):
        op.drop_index(f"ix_{table}_status", table_name=table)
    _run("UPDATE videos SET status = 'rendering' WHERE status = 'running'")
    _run("UPDATE videos SET status = 'ready' WHERE status = 'completed'")
    _run("UPDATE ingestion_jobs SET status = 'pending' WHERE status IN ('created', 'queued')")
    _run("UPDATE ingestion_jobs SET status = 'processing' WHERE status = 'running'")
    _run(
        "UPDATE ingestion_jobs SET status = 'failed', error_code = 'CANCELLED', error_message = 'ingestion cancelled' "
        "WHERE status = 'cancelled'"
    )
    with op.batch_alter_table("personas") as batch:
        batch.add_column(sa.Column("status_reason", sa.Text, nullable=True))
    _run("UPDATE personas SET status_reason = error_message")
    _run("UPDATE personas SET status = 'draft' WHERE status = 'created'")
    _run("UPDATE personas SET status = 'ingesting' WHERE status IN ('queued', 'running')")
    _run("UPDATE personas SET status = 'active' WHERE status = 'completed'")
    _run("UPDATE personas SET status = 'failed', status_reason = 'ingestion cancelled' WHERE status = 'cancelled'")
    _run("UPDATE crawl_sessions SET status = 'starting' WHERE status = 'running' AND stage = 'starting'")
    _run("UPDATE analysis_tasks SET status = 'processing' WHERE status = 'running'")
    drops = {
        "analysis_tasks": ["stage", "error_kind"],
        "crawl_sessions": ["stage", "error_kind"],
        "personas": ["stage", "error_kind", "progress", "error_code", "error_message", "started_at", "completed_at"],
        "ingestion_jobs": ["stage", "error_kind", "updated_at"],
        "videos": ["stage", "error_kind", "progress", "started_at", "completed_at"],
        "video_jobs": ["stage", "error_kind", "updated_at"],
    }
    for table, columns in drops.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column)
    for table in ("analysis_tasks", "ingestion_jobs"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "progress", type_=sa.Integer, existing_type=sa.Float, postgresql_using="round(progress)::integer"
            )
