"""credits and caps for every pipeline: a hold names the run it is settled against

``credit_holds`` gains the pipeline, the run row (table and id) the hold is settled against when that row ends,
the run's group (its workflow; the per-user cap counts distinct groups with an active hold) and the details its
price was computed from. Holds taken before stay as they were (NULLs): their workflows charge them themselves.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    """Add the run columns of a hold and the index admission counts with."""
    with op.batch_alter_table("credit_holds") as batch:
        batch.add_column(sa.Column("pipeline", sa.String(32), nullable=True))
        batch.add_column(sa.Column("run_table", sa.String(64), nullable=True))
        batch.add_column(sa.Column("run_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("run_group", sa.String(200), nullable=True))
        batch.add_column(sa.Column("details", sa.JSON, nullable=True))
        batch.create_index("ix_credit_holds_run", ["run_table", "run_id"])
        batch.create_index("ix_credit_holds_user_pipeline_status", ["user_id", "pipeline", "status"])


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("credit_holds") as batch:
        batch.drop_index("ix_credit_holds_user_pipeline_status")
        batch.drop_index("ix_credit_holds_run")
        for column in ("details", "run_group", "run_id", "run_table", "pipeline"):
            batch.drop_column(column)
