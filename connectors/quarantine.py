"""The quarantine: source rows a sync could not take, with the reason, kept until a later run takes them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import batched
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)

from connectors.sync_state import now_text
from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender

metadata = MetaData()

quarantine_table = Table(
    "sync_quarantine",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("connector", String(128), nullable=False),
    Column("entity", String(128), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("record_key", String(512), nullable=True),
    Column("field", String(256), nullable=True),
    Column("rule", String(256), nullable=False),
    Column("message", Text, nullable=False),
    Column("raw_digest", String(64), nullable=False),
    Column("raw", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("resolved_at", String(40), nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Index("ix_sync_quarantine_open", "connector", "entity", "record_key"),
)


@dataclass(frozen=True)
class QuarantinedRow:
    """A row a sync refused: where (connector, entity, record key, field), why (rule, message), and the raw row."""

    connector: str
    entity: str
    record_key: str | None
    field: str | None
    rule: str
    message: str
    raw: Mapping[str, Any]
    run_id: str = ""
    raw_digest: str = ""
    created_at: str = ""
    resolved_at: str | None = None
    id: int | None = None


def raw_digest(raw: Mapping[str, Any]) -> str:
    """SHA-256 of the raw row's canonical JSON."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class QuarantineStore:
    """Quarantined rows in the relational store; a row is resolved when a later run takes its record."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self._appender = RowAppender(
            self.engine,
            quarantine_table,
            ("connector", "entity", "record_key", "field", "rule", "message", "raw_digest", "raw"),
            ("run_id", "created_at"),
        )

    def add(self, conn: Connection, rows: Sequence[QuarantinedRow], run_id: str) -> None:
        """Store quarantined rows inside the caller's transaction."""
        self._appender.append(
            conn,
            [
                (
                    r.connector,
                    r.entity,
                    r.record_key,
                    r.field,
                    r.rule,
                    r.message[:4000],
                    raw_digest(r.raw),
                    json.dumps(r.raw, sort_keys=True, default=str),
                )
                for r in rows
            ],
            (run_id, now_text()),
        )

    def resolve(self, conn: Connection, connector: str, entity: str, keys: Sequence[str], run_id: str) -> None:
        """Mark open entries of these record keys resolved (their records were taken by `run_id`)."""
        t = quarantine_table
        for chunk in batched(keys, 2_000):
            conn.execute(
                update(t)
                .where(
                    t.c.connector == connector,
                    t.c.entity == entity,
                    t.c.resolved_at.is_(None),
                    t.c.record_key.in_(chunk),
                    t.c.run_id != run_id,
                )
                .values(resolved_at=now_text(), resolved_by=run_id)
            )

    def open_keys(self, connector: str) -> dict[str, set[str]]:
        """Record keys with open entries, by entity (so a run resolves only what needs it)."""
        t = quarantine_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.entity, t.c.record_key)
                .where(t.c.connector == connector, t.c.resolved_at.is_(None))
                .distinct()
            )
            found: dict[str, set[str]] = {}
            for entity, key in rows:
                found.setdefault(entity, set()).add(key)
            return found

    def rows(
        self, connector: str, *, include_resolved: bool = False, run_id: str | None = None, limit: int = 1000
    ) -> list[QuarantinedRow]:
        """Quarantined rows of a connector, newest first (open ones only unless `include_resolved`)."""
        t = quarantine_table
        query = select(t).where(t.c.connector == connector)
        if not include_resolved:
            query = query.where(t.c.resolved_at.is_(None))
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [
                QuarantinedRow(
                    r.connector,
                    r.entity,
                    r.record_key,
                    r.field,
                    r.rule,
                    r.message,
                    json.loads(r.raw),
                    r.run_id,
                    r.raw_digest,
                    r.created_at,
                    r.resolved_at,
                    r.id,
                )
                for r in conn.execute(query.order_by(t.c.id.desc()).limit(limit))
            ]

    def count(self, connector: str, *, open_only: bool = True) -> int:
        """Number of quarantined rows of a connector."""
        t = quarantine_table
        query = select(func.count()).select_from(t).where(t.c.connector == connector)
        if open_only:
            query = query.where(t.c.resolved_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)


INVALID_FIELD = "__invalid__"
"""A source puts this field into a record it could not parse (with the reason); the sync quarantines the record."""
