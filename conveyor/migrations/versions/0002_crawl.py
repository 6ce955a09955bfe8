"""crawl sessions, pages, bugs, bug pages and tickets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crawl_sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("pages_crawled", sa.Integer, nullable=False, server_default="0"),
        sa.Column("bugs_found", sa.Integer, nullable=False, server_default="0"),
        sa.Column("current_url", sa.Text, nullable=True),
        sa.Column("progress", sa.Float, nullable=False, server_default="0"),
        sa.Column("truncated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("stop_reason", sa.String(32), nullable=True),
        sa.Column("workflow_id", sa.String(100), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False, index=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
    )
    op.create_table(
        "crawl_pages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("crawl_sessions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("url_key", sa.Text, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("load_ms", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("links", sa.Integer, nullable=False),
        sa.Column("bugs", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("visited_at", TS, nullable=False),
        sa.UniqueConstraint("session_id", "url_key", name="uq_crawl_pages_session_url"),
    )
    op.create_table(
        "crawl_bugs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("crawl_sessions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("severity", sa.String(16), nullable=False, index=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("page_url", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("screenshot_key", sa.Text, nullable=True),
        sa.Column("ticket_error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("session_id", "fingerprint", name="uq_crawl_bugs_session_fingerprint"),
    )
    op.create_table(
        "crawl_bug_pages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bug_id", sa.Integer, sa.ForeignKey("crawl_bugs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("url_key", sa.Text, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.UniqueConstraint("bug_id", "url_key", name="uq_crawl_bug_pages_bug_url"),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("crawl_sessions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "bug_id", sa.Integer, sa.ForeignKey("crawl_bugs.id", ondelete="CASCADE"), nullable=False, unique=True
        ),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("session_id", "fingerprint", name="uq_tickets_session_fingerprint"),
    )


def downgrade() -> None:
    for table in ("tickets", "crawl_bug_pages", "crawl_bugs", "crawl_pages", "crawl_sessions"):
        op.drop_table(table)
