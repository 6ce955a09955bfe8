"""crawl sessions, pages, bugs, bug pages and tickets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from conveyor.migrations.columns import (
    TS,
    Column,
    created_at,
    optional,
    parent_fk,
    pk,
    required,
    run_columns,
    status,
    user_fk,
    uuid_pk,
)

revision = "0002"
down_revision = "0001"


def _session_fk() -> Column:
    return parent_fk("session_id", sa.String(36), "crawl_sessions.id")


def _bug_fk(*, unique: bool = False) -> Column:
    return parent_fk("bug_id", sa.Integer, "crawl_bugs.id", index=not unique, unique=unique)


def upgrade() -> None:
    op.create_table(
        "crawl_sessions",
        uuid_pk(),
        user_fk(),
        *required(url=sa.Text, config=sa.JSON),
        status(),
        sa.Column("pages_crawled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bugs_found", sa.Integer, nullable=False, server_default="0"),
        *optional(current_url=sa.Text),
        sa.Column("progress", sa.Float, nullable=False, server_default="0"),
        sa.Column("truncated", sa.Boolean, nullable=False, server_default=sa.false()),
        *optional(stop_reason=sa.String(32)),
        *run_columns(created_index=True),
    )
    op.create_table(
        "crawl_pages",
        pk(),
        _session_fk(),
        *required(url=sa.Text, url_key=sa.Text, depth=sa.Integer),
        *optional(http_status=sa.Integer),
        *required(load_ms=sa.Integer, title=sa.Text, links=sa.Integer, bugs=sa.Integer),
        *optional(error=sa.Text),
        *required(visited_at=TS),
        sa.UniqueConstraint("session_id", "url_key", name="uq_crawl_pages_session_url"),
    )
    op.create_table(
        "crawl_bugs",
        pk(),
        _session_fk(),
        *required(fingerprint=sa.String(32)),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("severity", sa.String(16), nullable=False, index=True),
        *required(title=sa.Text, description=sa.Text, page_url=sa.Text, evidence=sa.JSON),
        *optional(screenshot_key=sa.Text, ticket_error=sa.Text),
        created_at(),
        sa.UniqueConstraint("session_id", "fingerprint", name="uq_crawl_bugs_session_fingerprint"),
    )
    op.create_table(
        "crawl_bug_pages",
        pk(),
        _bug_fk(),
        *required(url=sa.Text, url_key=sa.Text, count=sa.Integer),
        sa.UniqueConstraint("bug_id", "url_key", name="uq_crawl_bug_pages_bug_url"),
    )
    op.create_table(
        "tickets",
        pk(),
        user_fk(),
        _session_fk(),
        _bug_fk(unique=True),
        *required(fingerprint=sa.String(32), provider=sa.String(16), key=sa.String(64)),
        *optional(external_id=sa.String(64)),
        *required(url=sa.Text, title=sa.Text, description=sa.Text, severity=sa.String(16), status=sa.String(16)),
        created_at(),
        sa.UniqueConstraint("session_id", "fingerprint", name="uq_tickets_session_fingerprint"),
    )


def downgrade() -> None:
    for table in ("tickets", "crawl_bug_pages", "crawl_bugs", "crawl_pages", "crawl_sessions"):
        op.drop_table(table)
