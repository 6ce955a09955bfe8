"""videos, video jobs and resource samples

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("blob_key", sa.String(500), nullable=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("video_codec", sa.String(32), nullable=True),
        sa.Column("audio_codec", sa.String(32), nullable=True),
        sa.Column("timeline", sa.JSON, nullable=True),
        sa.Column("workflow_id", sa.String(100), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "video_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("video_id", sa.String(36), sa.ForeignKey("videos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("fps", sa.Float, nullable=True),
        sa.Column("eta_s", sa.Float, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("encoder", sa.String(32), nullable=True),
        sa.Column("encoder_reason", sa.Text, nullable=True),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("workflow_id", sa.String(100), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
    )
    op.create_index("ix_video_jobs_video_id", "video_jobs", ["video_id"])
    op.create_table(
        "resource_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("sampled_at", TS, nullable=False),
        sa.Column("cpu_percent", sa.Float, nullable=False),
        sa.Column("memory_percent", sa.Float, nullable=False),
        sa.Column("memory_used_bytes", sa.BigInteger, nullable=False),
        sa.Column("memory_total_bytes", sa.BigInteger, nullable=False),
        sa.Column("disk_percent", sa.Float, nullable=False),
        sa.Column("disk_free_bytes", sa.BigInteger, nullable=False),
        sa.Column("disk_path", sa.String(500), nullable=False),
        sa.Column("load_1m", sa.Float, nullable=True),
        sa.Column("gpus", sa.JSON, nullable=False),
        sa.Column("warnings", sa.JSON, nullable=False),
    )
    op.create_index("ix_resource_samples_sampled_at", "resource_samples", ["sampled_at"])


def downgrade() -> None:
    op.drop_table("resource_samples")
    op.drop_table("video_jobs")
    op.drop_table("videos")
