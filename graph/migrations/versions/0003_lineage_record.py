"""Lineage per source record and run (issue 25): `lineage_source_record` holds one row per (twin, source record, run)
with its property map, instead of `lineage_record`'s one row per property value; existing rows are carried over.

Consecutive rows of `lineage_record` (in id order) of one twin, source system, object, record key, run, recording
time and erasure time become one row whose property map lists them in order, each as [property, source field,
mapping rule, transform, value digest, stored value] — the stored value exactly as it was (canonical JSON text, a
sealed token, or null), so sealed values stay sealed under the same key and associated data. Reads expand a row back
in that order, so every answer (latest first, per run in the order written) stays what it was. Downgrading expands
the rows back into `lineage_record`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 18:15:00
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 10_000
# what a property's row has of its own, in the order of a property map entry
_ENTRY = ("property", "source_field", "mapping_rule", "transform", "value_digest", "value")
# what the property rows of one source-record row share
_SHARED = ("twin_uid", "source_system", "source_object", "record_key", "run_id", "recorded_at", "erased_at")

_old = sa.table(
    "lineage_record",
    sa.column("id", sa.BigInteger()),
    *(sa.column(name, sa.Text()) for name in (*_SHARED, *_ENTRY)),
)
_new = sa.table(
    "lineage_source_record",
    sa.column("id", sa.BigInteger()),
    *(sa.column(name, sa.Text()) for name in (*_SHARED, "properties")),
)


def _rows(connection: sa.Connection, table: Any, columns: Sequence[str]) -> Iterator[sa.Row[Any]]:
    """Every row of `table` in id order, read in chunks."""
    last = None
    while True:
        query = sa.select(table.c.id, *(table.c[name] for name in columns)).order_by(table.c.id).limit(_CHUNK)
        if last is not None:
            query = query.where(table.c.id > last)
        chunk = connection.execute(query).all()
        if not chunk:
            return
        yield from chunk
        last = chunk[-1][0]


def _create_source_record_table() -> None:
    op.create_table(
        "lineage_source_record",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("twin_uid", sa.String(length=256), nullable=False),
        sa.Column("source_system", sa.String(length=256), nullable=False),
        sa.Column("source_object", sa.String(length=256), nullable=False),
        sa.Column("record_key", sa.String(length=512), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.Column("erased_at", sa.String(length=32), nullable=True),
        sa.Column("properties", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["lineage_run.run_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lineage_source_record", schema=None) as batch_op:
        batch_op.create_index("ix_lineage_source_record_run", ["run_id"], unique=False)
        batch_op.create_index("ix_lineage_source_record_source", ["source_system", "record_key"], unique=False)
        batch_op.create_index("ix_lineage_source_record_twin", ["twin_uid"], unique=False)


def _create_property_table() -> None:
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


def _drop(table: str, indexes: Sequence[str]) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for index in indexes:
            batch_op.drop_index(index)
    op.drop_table(table)


def _map_text(entries: list[list[Any]]) -> str:
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def upgrade() -> None:
    """Group the per-property lineage rows into one row per twin, source record and run."""
    _create_source_record_table()
    connection = op.get_bind()
    pending: list[dict[str, Any]] = []
    head: tuple[Any, ...] | None = None
    entries: list[list[Any]] = []

    def close() -> None:
        if head is not None:
            pending.append({**dict(zip(_SHARED, head, strict=True)), "properties": _map_text(entries)})
        if len(pending) >= _CHUNK:
            flush()

    def flush() -> None:
        if pending:
            connection.execute(_new.insert(), pending)
            pending.clear()

    for row in _rows(connection, _old, (*_SHARED, *_ENTRY)):
        shared = tuple(row[1 : 1 + len(_SHARED)])
        if shared != head:
            close()
            head, entries = shared, []
        entries.append(list(row[1 + len(_SHARED) :]))
    close()
    flush()
    _drop("lineage_record", ("ix_lineage_record_twin", "ix_lineage_record_source", "ix_lineage_record_run"))


def downgrade() -> None:
    """Expand each source-record row back into one lineage row per property value, in order."""
    _create_property_table()
    connection = op.get_bind()
    pending: list[dict[str, Any]] = []
    for row in _rows(connection, _new, (*_SHARED, "properties")):
        shared = dict(zip(_SHARED, row[1 : 1 + len(_SHARED)], strict=True))
        for entry in json.loads(row[-1]):
            pending.append({**shared, **dict(zip(_ENTRY, entry, strict=True))})
        if len(pending) >= _CHUNK:
            connection.execute(_old.insert(), pending)
            pending.clear()
    if pending:
        connection.execute(_old.insert(), pending)
    _drop(
        "lineage_source_record",
        ("ix_lineage_source_record_twin", "ix_lineage_source_record_source", "ix_lineage_source_record_run"),
    )
