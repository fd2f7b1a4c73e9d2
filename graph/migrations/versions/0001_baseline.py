"""The schema of the release before Alembic: every store's tables, as their `create_all` made them.

Revision ID: 0001
Revises:
Create Date: 2026-12-03 15:13:16.663936
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create every store's tables."""
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("time", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("time", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("operation", sa.String(length=512), nullable=False),
        sa.Column("variables_digest", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("policy_version", sa.String(length=128), nullable=False),
        sa.Column("rows_returned", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_subject", ["subject"], unique=False)
        batch_op.create_index("ix_audit_log_time", ["time"], unique=False)

    op.create_table(
        "connector_lease",
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("connector"),
    )
    op.create_table(
        "decision_alert",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("automation", sa.String(length=256), nullable=False),
        sa.Column("rule_version", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("open_key", sa.String(length=512), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("twin_uid", sa.String(length=512), nullable=False),
        sa.Column("twin_class", sa.String(length=256), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("fired", sa.BigInteger(), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    with op.batch_alter_table("decision_alert", schema=None) as batch_op:
        batch_op.create_index("ix_decision_alert_state", ["state"], unique=False)

    op.create_table(
        "decision_approval",
        sa.Column("proposal_id", sa.String(length=16), nullable=False),
        sa.Column("approver", sa.String(length=512), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id", "approver"),
    )
    op.create_table(
        "decision_cursor",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "decision_execution",
        sa.Column("proposal_id", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=256), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=512), nullable=False),
        sa.Column("actor_roles", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recorded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("proposal_id"),
    )
    with op.batch_alter_table("decision_execution", schema=None) as batch_op:
        batch_op.create_index("ix_decision_execution_state", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "decision_proposal",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("automation", sa.String(length=256), nullable=False),
        sa.Column("rule_version", sa.String(length=32), nullable=False),
        sa.Column("action_type", sa.String(length=128), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("twin_uid", sa.String(length=512), nullable=False),
        sa.Column("twin_class", sa.String(length=256), nullable=False),
        sa.Column("open_key", sa.String(length=600), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("proposer", sa.String(length=512), nullable=False),
        sa.Column("proposer_roles", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    with op.batch_alter_table("decision_proposal", schema=None) as batch_op:
        batch_op.create_index("ix_decision_proposal_state", ["state"], unique=False)

    op.create_table(
        "identity_block",
        sa.Column("uid_a", sa.String(length=512), nullable=False),
        sa.Column("uid_b", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("uid_a", "uid_b"),
    )
    op.create_table(
        "identity_key",
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("system", sa.String(length=128), nullable=False),
        sa.Column("org", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("domain", "kind", "value", "uid"),
    )
    with op.batch_alter_table("identity_key", schema=None) as batch_op:
        batch_op.create_index("ix_identity_key_org", ["domain", "kind", "org"], unique=False)
        batch_op.create_index("ix_identity_key_uid", ["uid"], unique=False)

    op.create_table(
        "identity_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("canonical_uid", sa.String(length=512), nullable=False),
        sa.Column("source_system", sa.String(length=128), nullable=False),
        sa.Column("source_key", sa.String(length=512), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("ended_at", sa.String(length=40), nullable=True),
        sa.Column("ended_reason", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.create_index("ix_identity_links_canonical", ["canonical_uid", "active"], unique=False)
        batch_op.create_index("ix_identity_links_source", ["source_key", "active"], unique=False)

    op.create_table(
        "lineage_run",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("started_at", sa.String(length=32), nullable=False),
        sa.Column("ended_at", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("lineage_run", schema=None) as batch_op:
        batch_op.create_index("ix_lineage_run_name", ["kind", "name"], unique=False)

    op.create_table(
        "openlineage_delivery",
        sa.Column("route", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("sent", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("route", "run_id"),
    )
    op.create_table(
        "route_cursor",
        sa.Column("route", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("route"),
    )
    op.create_table(
        "sim_study",
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("twin_state_time", sa.String(length=40), nullable=False),
        sa.Column("slice", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("slice_digest", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.String(length=24), nullable=False),
        sa.Column("replications", sa.Integer(), nullable=False),
        sa.Column("seeds", sa.Text(), nullable=False),
        sa.Column("executor", sa.String(length=16), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("agent_steps", sa.Integer(), nullable=False),
        sa.Column("calibration", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("study_id"),
    )
    op.create_table(
        "sync_batch",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("keys", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_table(
        "sync_pending_link",
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("system", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("record_key", sa.String(length=512), nullable=False),
        sa.Column("rule", sa.String(length=256), nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("type", "source", "target"),
    )
    op.create_table(
        "sync_quarantine",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.String(length=512), nullable=True),
        sa.Column("field", sa.String(length=256), nullable=True),
        sa.Column("rule", sa.String(length=256), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raw_digest", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("resolved_at", sa.String(length=40), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sync_quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_sync_quarantine_open", ["connector", "entity", "record_key"], unique=False)

    op.create_table(
        "sync_record",
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("record_key", sa.String(length=512), nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("digest", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("connector", "entity", "record_key"),
    )
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.create_index("ix_sync_record_uid", ["uid"], unique=False)

    op.create_table(
        "sync_run",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.String(length=40), nullable=False),
        sa.Column("ended_at", sa.String(length=40), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("timings", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("resumed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index("ix_sync_run_connector", ["connector", "started_at"], unique=False)

    op.create_table(
        "sync_watermark",
        sa.Column("connector", sa.String(length=128), nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("connector", "entity"),
    )
    op.create_table(
        "telemetry",
        sa.Column("asset_uid", sa.String(length=512), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("asset_uid", "metric", "ts"),
    )
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_metric_ts", ["metric", "ts"], unique=False)

    op.create_table(
        "twin_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("link_type", sa.String(length=128), nullable=True),
        sa.Column("target", sa.String(length=512), nullable=True),
        sa.Column("cls", sa.String(length=256), nullable=True),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("write_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("twin_history", schema=None) as batch_op:
        batch_op.create_index("ix_twin_history_target", ["target"], unique=False)
        batch_op.create_index("ix_twin_history_uid_at", ["uid", "at"], unique=False)

    op.create_table(
        "twin_history_sequence",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "twin_history_write",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("after_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("seq_start", sa.BigInteger(), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq_start"),
    )
    with op.batch_alter_table("twin_history_write", schema=None) as batch_op:
        batch_op.create_index("ix_twin_history_write_state", ["state"], unique=False)

    op.create_table(
        "lineage_record",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("twin_uid", sa.String(length=256), nullable=False),
        sa.Column("property", sa.String(length=256), nullable=False),
        sa.Column("value_digest", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("erased_at", sa.String(length=32), nullable=True),
        sa.Column("source_system", sa.String(length=256), nullable=False),
        sa.Column("source_object", sa.String(length=256), nullable=False),
        sa.Column("record_key", sa.String(length=512), nullable=False),
        sa.Column("source_field", sa.String(length=256), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("mapping_rule", sa.String(length=256), nullable=True),
        sa.Column("transform", sa.String(length=512), nullable=True),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["lineage_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lineage_record", schema=None) as batch_op:
        batch_op.create_index("ix_lineage_record_run", ["run_id"], unique=False)
        batch_op.create_index("ix_lineage_record_source", ["source_system", "record_key"], unique=False)
        batch_op.create_index("ix_lineage_record_twin", ["twin_uid", "property"], unique=False)

    op.create_table(
        "sim_run",
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("scenario", sa.String(length=256), nullable=False),
        sa.Column("replication", sa.Integer(), nullable=False),
        sa.Column("seed", sa.String(length=24), nullable=False),
        sa.Column("kpi_values", sa.Text(), nullable=False),
        sa.Column("kpi_series", sa.Text(), nullable=False),
        sa.Column("agents", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["sim_study.study_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("study_id", "scenario", "replication"),
    )
    op.create_table(
        "sim_summary",
        sa.Column("study_id", sa.String(length=32), nullable=False),
        sa.Column("scenario", sa.String(length=256), nullable=False),
        sa.Column("kpi", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["sim_study.study_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("study_id", "scenario", "kpi"),
    )


def downgrade() -> None:
    """Drop every store's tables."""
    op.drop_table("sim_summary")
    op.drop_table("sim_run")
    with op.batch_alter_table("lineage_record", schema=None) as batch_op:
        batch_op.drop_index("ix_lineage_record_twin")
        batch_op.drop_index("ix_lineage_record_source")
        batch_op.drop_index("ix_lineage_record_run")

    op.drop_table("lineage_record")
    with op.batch_alter_table("twin_history_write", schema=None) as batch_op:
        batch_op.drop_index("ix_twin_history_write_state")

    op.drop_table("twin_history_write")
    op.drop_table("twin_history_sequence")
    with op.batch_alter_table("twin_history", schema=None) as batch_op:
        batch_op.drop_index("ix_twin_history_uid_at")
        batch_op.drop_index("ix_twin_history_target")

    op.drop_table("twin_history")
    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_metric_ts")

    op.drop_table("telemetry")
    op.drop_table("sync_watermark")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_run_connector")

    op.drop_table("sync_run")
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_record_uid")

    op.drop_table("sync_record")
    with op.batch_alter_table("sync_quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_quarantine_open")

    op.drop_table("sync_quarantine")
    op.drop_table("sync_pending_link")
    op.drop_table("sync_batch")
    op.drop_table("sim_study")
    op.drop_table("route_cursor")
    op.drop_table("openlineage_delivery")
    with op.batch_alter_table("lineage_run", schema=None) as batch_op:
        batch_op.drop_index("ix_lineage_run_name")

    op.drop_table("lineage_run")
    with op.batch_alter_table("identity_links", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_links_source")
        batch_op.drop_index("ix_identity_links_canonical")

    op.drop_table("identity_links")
    with op.batch_alter_table("identity_key", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_key_uid")
        batch_op.drop_index("ix_identity_key_org")

    op.drop_table("identity_key")
    op.drop_table("identity_block")
    with op.batch_alter_table("decision_proposal", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_proposal_state")

    op.drop_table("decision_proposal")
    with op.batch_alter_table("decision_execution", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_execution_state")

    op.drop_table("decision_execution")
    op.drop_table("decision_cursor")
    op.drop_table("decision_approval")
    with op.batch_alter_table("decision_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_alert_state")

    op.drop_table("decision_alert")
    op.drop_table("connector_lease")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_time")
        batch_op.drop_index("ix_audit_log_subject")

    op.drop_table("audit_log")
    op.drop_table("audit_head")
    op.drop_table("audit_checkpoint")
