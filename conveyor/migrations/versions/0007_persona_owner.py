"""personas are unique per owner

A persona gets ``slug``, the id its owner sees, unique per owner (two users may each have ``alice``); ``id``
stays the row's key (new personas get a UUID). Existing personas keep their key and get it as their slug, so
their workflows and Chroma collections keep their names. Their documents now live in
``<persona_data_root>/<owner>/<slug>/`` (move an old ``data/<slug>/`` there, or upload them again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    """Add ``personas.slug`` (filled from the key) and make it unique per owner."""
    with op.batch_alter_table("personas") as batch:
        batch.add_column(sa.Column("slug", sa.String(64), nullable=True))
    op.execute(sa.text("UPDATE personas SET slug = id"))
    with op.batch_alter_table("personas") as batch:
        batch.alter_column("slug", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_personas_user_slug", ["user_id", "slug"])


def downgrade() -> None:
    """Drop the per-owner slug (personas made since then keep their UUID keys as ids)."""
    with op.batch_alter_table("personas") as batch:
        batch.drop_constraint("uq_personas_user_slug", type_="unique")
        batch.drop_column("slug")
