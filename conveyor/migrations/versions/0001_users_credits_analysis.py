"""users, api keys, credits ledger and holds, analysis tasks

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from conveyor.migrations.columns import (
    TS,
    created_at,
    optional,
    pk,
    required,
    run_columns,
    status,
    updated_at,
    user_fk,
    uuid_pk,
)

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "users",
        pk(),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("credits", sa.Integer, nullable=False, server_default="0"),
        sa.Column("credits_held", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "api_keys",
        pk(),
        user_fk(),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        *required(prefix=sa.String(16), created_at=TS),
        *optional(revoked_at=TS),
    )
    op.create_table(
        "credit_ledger",
        pk(),
        user_fk(),
        *required(amount=sa.Integer, kind=sa.String(20)),
        sa.Column("reason", sa.String(200), nullable=False, server_default=""),
        sa.Column("reference", sa.String(200), nullable=True, index=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        *required(balance_after=sa.Integer, created_at=TS),
    )
    op.create_table(
        "credit_holds",
        pk(sa.String(200), "reference"),
        user_fk(),
        *required(amount=sa.Integer, status=sa.String(20)),
        created_at(),
        updated_at(),
    )
    op.create_table(
        "analysis_tasks",
        uuid_pk("task_id"),
        user_fk(),
        *required(tool_id=sa.String(64), agents=sa.JSON),
        status(),
        sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
        *optional(current_agent=sa.String(64)),
        *required(input_files=sa.JSON, params=sa.JSON, outputs=sa.JSON),
        *optional(result=sa.JSON),
        sa.Column("credits_cost", sa.Integer, nullable=False, server_default="0"),
        *run_columns(),
    )
    op.create_index("ix_analysis_tasks_user_created", "analysis_tasks", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_analysis_tasks_user_created", "analysis_tasks")
    for table in ("analysis_tasks", "credit_holds", "credit_ledger", "api_keys", "users"):
        op.drop_table(table)
