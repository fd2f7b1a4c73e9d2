"""Tables of the sixth session: experiments, forecasts and model versions, the privacy budget, ontology versions
and migrations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:15:23.396211
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables of the sixth session."""
    op.create_table(
        "forecast_run",
        sa.Column("forecast_id", sa.String(length=32), nullable=False),
        sa.Column("series", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("model_kind", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("code_version", sa.String(length=32), nullable=False),
        sa.Column("input_digest", sa.String(length=64), nullable=False),
        sa.Column("freq", sa.String(length=4), nullable=False),
        sa.Column("season_length", sa.Integer(), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("interval", sa.String(length=16), nullable=False),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("forecast", sa.Text(), nullable=False),
        sa.Column("backtests", sa.Text(), nullable=False),
        sa.Column("lineage", sa.Text(), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("forecast_id"),
    )
    with op.batch_alter_table("forecast_run", schema=None) as batch_op:
        batch_op.create_index("ix_forecast_run_series_created", ["series", "created_at"], unique=False)

    op.create_table(
        "model_alert",
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("series", sa.String(length=512), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("raised_at", sa.String(length=32), nullable=False),
        sa.Column("raised_by", sa.String(length=256), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    with op.batch_alter_table("model_alert", schema=None) as batch_op:
        batch_op.create_index("ix_model_alert_series_status", ["series", "status"], unique=False)

    op.create_table(
        "model_version",
        sa.Column("version_id", sa.String(length=32), nullable=False),
        sa.Column("series", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("train_start", sa.String(length=40), nullable=False),
        sa.Column("train_end", sa.String(length=40), nullable=False),
        sa.Column("train_points", sa.Integer(), nullable=False),
        sa.Column("input_digest", sa.String(length=64), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("trained_by", sa.String(length=256), nullable=False),
        sa.Column("trained_at", sa.String(length=32), nullable=False),
        sa.Column("approved_by", sa.String(length=256), nullable=True),
        sa.Column("approved_at", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("version_id"),
    )
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.create_index("ix_model_version_series_status", ["series", "status"], unique=False)

    op.create_table(
        "ontology_migration_quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("migration", sa.String(length=256), nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("cls", sa.String(length=256), nullable=False),
        sa.Column("property", sa.String(length=256), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ontology_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("breaking", sa.Boolean(), nullable=False),
        sa.Column("migration", sa.String(length=256), nullable=True),
        sa.Column("renames", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "privacy_budget_spend",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("role", sa.String(length=128), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("query", sa.String(length=512), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("privacy_budget_spend", schema=None) as batch_op:
        batch_op.create_index("ix_privacy_budget_role_period", ["role", "period_start"], unique=False)

    op.create_table(
        "sim_experiment",
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("twin_state_time", sa.String(length=40), nullable=False),
        sa.Column("slice", sa.Text(), nullable=False),
        sa.Column("slice_digest", sa.String(length=64), nullable=False),
        sa.Column("seeds", sa.Text(), nullable=False),
        sa.Column("executor", sa.String(length=16), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("evaluations", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("experiment_id"),
    )


def downgrade() -> None:
    """Drop the tables of the sixth session."""
    op.drop_table("sim_experiment")
    with op.batch_alter_table("privacy_budget_spend", schema=None) as batch_op:
        batch_op.drop_index("ix_privacy_budget_role_period")

    op.drop_table("privacy_budget_spend")
    op.drop_table("ontology_versions")
    op.drop_table("ontology_migration_quarantine")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_index("ix_model_version_series_status")

    op.drop_table("model_version")
    with op.batch_alter_table("model_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_model_alert_series_status")

    op.drop_table("model_alert")
    with op.batch_alter_table("forecast_run", schema=None) as batch_op:
        batch_op.drop_index("ix_forecast_run_series_created")

    op.drop_table("forecast_run")
