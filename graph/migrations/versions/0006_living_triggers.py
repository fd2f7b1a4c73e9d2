"""The telemetry readings of a sync run are found by an index (anomaly detection reads them as they arrive).

Revision ID: 0006
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index telemetry by run (unless a store's tables were made with it already)."""
    if "ix_telemetry_run" not in {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("telemetry")}:
        op.create_index("ix_telemetry_run", "telemetry", ["run_id"], unique=False)


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_telemetry_run", table_name="telemetry")
