"""personas and ingestion jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from conveyor.migrations.columns import (
    TS,
    created_at,
    job_columns,
    optional,
    parent_fk,
    pk,
    required,
    status,
    updated_at,
    user_fk,
    uuid_pk,
    workflow_id,
)

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "personas",
        pk(sa.String(64)),
        user_fk(),
        *required(name=sa.String(200), description=sa.Text),
        status(),
        *optional(status_reason=sa.Text),
        workflow_id(),
        *required(current_jobs=sa.JSON),
        created_at(),
        updated_at(),
        *optional(last_ingested_at=TS),
    )
    op.create_table(
        "ingestion_jobs",
        uuid_pk(),
        parent_fk("persona_id", sa.String(64), "personas.id", index=False),
        *required(collection=sa.String(16), status=sa.String(16), progress=sa.Integer, total_vectors=sa.Integer),
        *required(added=sa.Integer, removed=sa.Integer, files_done=sa.Integer, files_total=sa.Integer),
        *required(warnings=sa.JSON),
        *job_columns(),
    )
    op.create_index("ix_ingestion_jobs_persona_id", "ingestion_jobs", ["persona_id"])


def downgrade() -> None:
    op.drop_table("ingestion_jobs")
    op.drop_table("personas")
