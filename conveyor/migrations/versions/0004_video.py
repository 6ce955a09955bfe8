"""videos, video jobs and resource samples

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from conveyor.migrations.columns import (
    TS,
    job_columns,
    optional,
    parent_fk,
    required,
    run_columns,
    status,
    user_fk,
    uuid_pk,
)

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "videos",
        uuid_pk(),
        user_fk(),
        *required(title=sa.String(200), origin=sa.String(16)),
        status(16),
        *optional(blob_key=sa.String(500)),
        *required(filename=sa.String(255), size_bytes=sa.BigInteger),
        *optional(duration_s=sa.Float, width=sa.Integer, height=sa.Integer),
        *optional(video_codec=sa.String(32), audio_codec=sa.String(32), timeline=sa.JSON),
        *run_columns(times=False),
    )
    op.create_table(
        "video_jobs",
        uuid_pk(),
        parent_fk("video_id", sa.String(36), "videos.id", index=False),
        *required(kind=sa.String(16), status=sa.String(16), params=sa.JSON, progress=sa.Float),
        *optional(fps=sa.Float, eta_s=sa.Float),
        *required(attempt=sa.Integer),
        *optional(encoder=sa.String(32), encoder_reason=sa.Text),
        *required(outputs=sa.JSON),
        *job_columns(),
    )
    op.create_index("ix_video_jobs_video_id", "video_jobs", ["video_id"])
    op.create_table(
        "resource_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *required(host=sa.String(200), sampled_at=TS, cpu_percent=sa.Float, memory_percent=sa.Float),
        *required(memory_used_bytes=sa.BigInteger, memory_total_bytes=sa.BigInteger),
        *required(disk_percent=sa.Float, disk_free_bytes=sa.BigInteger, disk_path=sa.String(500)),
        *optional(load_1m=sa.Float),
        *required(gpus=sa.JSON, warnings=sa.JSON),
    )
    op.create_index("ix_resource_samples_sampled_at", "resource_samples", ["sampled_at"])


def downgrade() -> None:
    op.drop_table("resource_samples")
    op.drop_table("video_jobs")
    op.drop_table("videos")
