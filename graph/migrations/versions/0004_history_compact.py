"""Compact history for bulk loads: a twin's history row may hold the links its load created from it.

`twin_history` gains `links` (the links, as JSON), `linked_from` (the twins of the same load whose links end at this
one: the index by target) and `link_end` (a link's place in the change feed); `twin_history_write` gains `links` (how
many of a write's changes are links held in compact rows). Existing rows keep NULL in every new column and read as
before: one change per row. Nothing is rewritten.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the compact columns (nullable: old rows stay one change each)."""
    with op.batch_alter_table("twin_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("links", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("linked_from", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("link_end", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("twin_history_write", schema=None) as batch_op:
        batch_op.add_column(sa.Column("links", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop the compact columns (a store holding compact rows loses the links they carry)."""
    with op.batch_alter_table("twin_history_write", schema=None) as batch_op:
        batch_op.drop_column("links")
    with op.batch_alter_table("twin_history", schema=None) as batch_op:
        batch_op.drop_column("link_end")
        batch_op.drop_column("linked_from")
        batch_op.drop_column("links")
