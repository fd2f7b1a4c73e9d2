"""Valid time beside transaction time: the twin_valid_time table (graph/valid_time.py).

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-03 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table of valid-time versions."""
    op.create_table(
        "twin_valid_time",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("twin_valid_time", schema=None) as batch_op:
        batch_op.create_index("ix_twin_valid_time_recorded_at", ["recorded_at"], unique=False)
        batch_op.create_index("ix_twin_valid_time_uid", ["uid"], unique=False)


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("twin_valid_time", schema=None) as batch_op:
        batch_op.drop_index("ix_twin_valid_time_uid")
        batch_op.drop_index("ix_twin_valid_time_recorded_at")
    op.drop_table("twin_valid_time")
