"""API keys: roles, expiry, rotation

``users.role`` (``user`` | ``admin``; every existing user stays a ``user``), ``api_keys.expires_at`` (NULL: never
expires) and an index on ``api_keys.prefix`` (revoking a key by the prefix an operator sees).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    """Add the role, the expiry and the prefix index."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="user"))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_api_keys_prefix", ["prefix"])


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_prefix")
        batch.drop_column("expires_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("role")
