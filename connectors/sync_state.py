"""Durable sync state in the relational store: watermarks, the per-record ledger, the batch journal, pending links,
and sync run records (counts and timings).

The ledger holds, per (connector, entity, record key), the twin uid the record feeds, the digest of what the record
was mapped to and that mapped payload (class, properties, links). It is what makes runs idempotent and resumable:
a replayed record whose digest is unchanged is skipped, links a record no longer produces are found by comparing
payloads, deletions are the ledger keys a full read did not see, and a twin is deleted only when no ledger entry
of any connector feeds it any more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import batched
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    cast,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from connectors.source import Watermark
from governance.personal_seal import PersonalSeal
from graph.personal_values import is_sealed
from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender

metadata = MetaData()

sync_watermark_table = Table(
    "sync_watermark",
    metadata,
    Column("connector", String(128), primary_key=True),
    Column("entity", String(128), primary_key=True),
    Column("value", String(40), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

sync_record_table = Table(
    "sync_record",
    metadata,
    Column("connector", String(128), primary_key=True),
    Column("entity", String(128), primary_key=True),
    Column("record_key", String(512), primary_key=True),
    Column("uid", String(512), nullable=False),
    Column("digest", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("run_id", String(64), nullable=False),
    Index("ix_sync_record_uid", "uid"),
)

sync_batch_table = Table(
    "sync_batch",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("connector", String(128), nullable=False),
    Column("entity", String(128), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("keys", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

sync_pending_link_table = Table(
    "sync_pending_link",
    metadata,
    Column("type", String(128), primary_key=True),
    Column("source", String(512), primary_key=True),
    Column("target", String(512), primary_key=True),
    Column("connector", String(128), nullable=False),
    Column("system", String(128), nullable=False),
    Column("entity", String(128), nullable=False),
    Column("record_key", String(512), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("properties", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("since", String(40), nullable=False),
)

sync_run_table = Table(
    "sync_run",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("connector", String(128), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=True),
    Column("counts", Text, nullable=False),
    Column("timings", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("resumed", Boolean, nullable=False, default=False),
    Index("ix_sync_run_connector", "connector", "started_at"),
)

_CHUNK = 2_000  # keys per IN (...) query
_LEDGER_COLUMNS = ("connector", "entity", "record_key", "uid", "digest", "payload")  # and the run id, shared
_PENDING_COLUMNS = (
    "type",
    "source",
    "target",
    "connector",
    "system",
    "entity",
    "record_key",
    "rule",
    "properties",
    "reason",
)  # and the time they began to wait, shared


@dataclass(frozen=True)
class LedgerEntry:
    """What one source record was last mapped to: the uid it feeds, the payload's digest and the payload."""

    connector: str
    entity: str
    record_key: str
    uid: str
    digest: str
    payload: Mapping[str, Any]
    payload_text: str | None = None  # the payload's canonical JSON when the caller already has it


def payload_text(payload: Mapping[str, Any]) -> str:
    """The canonical JSON of a ledger payload (the text its digest is taken of): sorted keys, no spaces, UTF-8.

    orjson, about 12x the standard library's speed (one payload per synced record); what it refuses (integers
    beyond 64 bits, non-text keys) goes through the standard library. A ledger written by a build that encoded
    payloads differently sees every record as changed once: that run rewrites nothing in the graph (the writer
    compares values) and records lineage only for values that changed.
    """
    try:
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str, ensure_ascii=False)


def payload_of(text: str) -> Any:
    """A ledger payload read back from its JSON text (orjson; the standard library for what orjson refuses, such as
    integers beyond 64 bits): incremental runs read one per record they re-read."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass(frozen=True)
class PendingLink:
    """A link whose endpoint twin did not exist yet when its record was synced; retried at the end of each run."""

    type: str
    source: str
    target: str
    connector: str
    system: str
    entity: str
    record_key: str
    rule: str
    properties: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class SyncRunRecord:
    """One sync run: mode, status, counts (read, created, updated, unchanged, deleted, quarantined ...), timings."""

    run_id: str
    connector: str
    mode: str
    status: str
    started_at: str
    ended_at: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


def now_text() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(UTC).isoformat()


def upsert_statement(engine: Engine, table: Table, keys: Sequence[str], columns: Sequence[str]) -> Any:
    """An INSERT that updates `columns` when a row with the same `keys` exists (SQLite and PostgreSQL)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(index_elements=list(keys), set_={c: statement.excluded[c] for c in columns})


def insert_ignore_statement(engine: Engine, table: Table, keys: Sequence[str]) -> Any:
    """An INSERT that skips rows whose `keys` already exist (SQLite and PostgreSQL)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))


class SyncState:
    """Watermarks, ledger, batch journal, pending links and run records of every connector in one store."""

    def __init__(self, url: str, seal: PersonalSeal | None = None) -> None:
        self.url = url
        self.seal = seal  # seals the personal values of ledger payloads under their twin's key
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self._ledger = RowAppender(
            self.engine,
            sync_record_table,
            _LEDGER_COLUMNS,
            ("run_id",),
            conflict_keys=("connector", "entity", "record_key"),
            update_columns=("uid", "digest", "payload", "run_id"),
        )
        self._pending = RowAppender(
            self.engine,
            sync_pending_link_table,
            _PENDING_COLUMNS,
            ("since",),
            conflict_keys=("type", "source", "target"),
            update_columns=_PENDING_COLUMNS[3:],
        )

    # --------------------------------------------------------------------------------------- watermarks
    def watermark(self, connector: str, entity: str) -> Watermark | None:
        """The committed watermark of a connector's entity, or None before its first complete read."""
        t = sync_watermark_table
        with self.engine.connect() as conn:
            value = conn.scalar(select(t.c.value).where(t.c.connector == connector, t.c.entity == entity))
        return Watermark(datetime.fromisoformat(value)) if value else None

    def watermarks(self, connector: str) -> dict[str, Watermark]:
        """Every committed watermark of a connector, by entity."""
        t = sync_watermark_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.entity, t.c.value).where(t.c.connector == connector)).all()
        return {entity: Watermark(datetime.fromisoformat(value)) for entity, value in rows}

    def commit_watermark(self, conn: Connection, connector: str, entity: str, value: Watermark, run_id: str) -> None:
        """Store the watermark inside the caller's transaction (only after everything before it is durable)."""
        statement = upsert_statement(
            self.engine, sync_watermark_table, ["connector", "entity"], ["value", "run_id", "updated_at"]
        )
        conn.execute(
            statement,
            {
                "connector": connector,
                "entity": entity,
                "value": value.value.isoformat(),
                "run_id": run_id,
                "updated_at": now_text(),
            },
        )

    def clear_watermarks(self, connector: str) -> None:
        """Forget a connector's watermarks (the next incremental run reads everything)."""
        with self.engine.begin() as conn:
            conn.execute(delete(sync_watermark_table).where(sync_watermark_table.c.connector == connector))

    # ------------------------------------------------------------------------------------------- ledger
    def ledger(self, connector: str, entity: str, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Ledger entries of these record keys (missing keys: never synced)."""
        t = sync_record_table
        found: dict[str, LedgerEntry] = {}
        with self.engine.connect() as conn:
            for chunk in batched(keys, _CHUNK):
                rows = conn.execute(
                    select(t.c.record_key, t.c.uid, t.c.digest, t.c.payload).where(
                        t.c.connector == connector, t.c.entity == entity, t.c.record_key.in_(chunk)
                    )
                )
                for key, uid, digest, payload in rows:
                    found[key] = LedgerEntry(connector, entity, key, uid, digest, payload_of(payload))
        return self._opened(found) if self.seal is not None else found

    def ledger_changes(
        self, connector: str, entity: str, digests: Mapping[str, str]
    ) -> tuple[dict[str, LedgerEntry], set[str]]:
        """The ledger entries of these record keys whose digest differs from the one given (payloads read), and the
        keys whose digest is the same (their payloads not parsed: a page re-read at the watermark is mostly these)."""
        t = sync_record_table
        found: dict[str, LedgerEntry] = {}
        same: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in batched(digests, _CHUNK):
                rows = conn.execute(
                    select(t.c.record_key, t.c.uid, t.c.digest, t.c.payload).where(
                        t.c.connector == connector, t.c.entity == entity, t.c.record_key.in_(chunk)
                    )
                ).all()
                for key, uid, digest, payload in rows:
                    if digests[key] == digest:
                        same.add(key)
                    else:
                        found[key] = LedgerEntry(connector, entity, key, uid, digest, payload_of(payload))
        return found, same

    def ledger_keys(self, connector: str, entity: str) -> set[str]:
        """Every record key of the entity the ledger holds."""
        t = sync_record_table
        with self.engine.connect() as conn:
            # .all() fetches in one call; iterating fetches row by row (a ledger may hold hundreds of thousands)
            return set(
                conn.scalars(select(t.c.record_key).where(t.c.connector == connector, t.c.entity == entity)).all()
            )

    def ledger_count(self, connector: str | None = None) -> int:
        """Number of ledger entries (of one connector, or all)."""
        return self._count(sync_record_table, connector)

    def ledger_key_buckets(self, connector: str, entity: str, low: int, width: int) -> dict[int, int]:
        """How many ledger keys of the entity fall in each bucket ``(int(key) - low) // width`` (integer keys; see
        connectors.sql_source.SqlSource.key_buckets, which numbers the source's keys the same way)."""
        t = sync_record_table
        bucket = (cast(t.c.record_key, BigInteger) - low) // width
        with self.engine.connect() as conn:
            return {
                int(b): int(n)
                for b, n in conn.execute(
                    select(bucket, func.count())
                    .where(t.c.connector == connector, t.c.entity == entity)
                    .group_by(bucket)
                )
            }

    def ledger_keys_in_buckets(
        self, connector: str, entity: str, low: int, width: int, buckets: Sequence[int]
    ) -> set[str]:
        """The ledger keys of the entity in these buckets (numbered as by `ledger_key_buckets`)."""
        t = sync_record_table
        bucket = (cast(t.c.record_key, BigInteger) - low) // width
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in batched(sorted(buckets), 500):
                found.update(
                    conn.scalars(
                        select(t.c.record_key).where(
                            t.c.connector == connector, t.c.entity == entity, bucket.in_(chunk)
                        )
                    )
                )
        return found

    def ledger_entity_counts(self, connector: str) -> dict[str, int]:
        """Number of ledger entries of each entity of a connector (one index-only query)."""
        t = sync_record_table
        with self.engine.connect() as conn:
            return {
                entity: int(n)
                for entity, n in conn.execute(
                    select(t.c.entity, func.count()).where(t.c.connector == connector).group_by(t.c.entity)
                )
            }

    def pending_count(self, connector: str | None = None) -> int:
        """Number of links waiting for an endpoint (of one connector, or all)."""
        return self._count(sync_pending_link_table, connector)

    def _count(self, table: Table, connector: str | None) -> int:
        query = select(func.count()).select_from(table)
        if connector is not None:
            query = query.where(table.c.connector == connector)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def entries_for_uids(self, uids: Iterable[str]) -> dict[str, list[LedgerEntry]]:
        """Every ledger entry (any connector) feeding each of these twins."""
        t = sync_record_table
        found: dict[str, list[LedgerEntry]] = {}
        with self.engine.connect() as conn:
            for chunk in batched(sorted(set(uids)), _CHUNK):
                rows = conn.execute(select(t).where(t.c.uid.in_(chunk)))
                for row in rows:
                    m = row._mapping
                    found.setdefault(m["uid"], []).append(
                        LedgerEntry(
                            m["connector"],
                            m["entity"],
                            m["record_key"],
                            m["uid"],
                            m["digest"],
                            payload_of(m["payload"]),
                        )
                    )
        if self.seal is not None:
            for uid, entries in found.items():
                found[uid] = list(self._opened({str(n): e for n, e in enumerate(entries)}).values())
        return found

    def write_ledger(self, conn: Connection, entries: Sequence[LedgerEntry], run_id: str) -> None:
        """Upsert ledger entries inside the caller's transaction."""
        if not entries:
            return
        rows: list[tuple[str, ...]] = [
            (e.connector, e.entity, e.record_key, e.uid, e.digest, e.payload_text or payload_text(e.payload))
            for e in entries
        ]
        if self.seal is not None:
            rows = self._sealed(entries, rows, self.seal)
        for chunk in batched(rows, 5_000):
            self._ledger.append(conn, chunk, (run_id,))

    @staticmethod
    def _sealed(
        entries: Sequence[LedgerEntry], rows: list[tuple[str, ...]], seal: PersonalSeal
    ) -> list[tuple[str, ...]]:
        """Ledger rows with the personal values of their payloads (`p`) sealed under the twin's key."""
        personal = seal.personal
        marked = []
        for i, e in enumerate(entries):
            props = e.payload.get("p")
            if isinstance(props, Mapping) and any(props.get(name) is not None for name in personal & props.keys()):
                marked.append(i)
        if not marked:
            return rows
        keys = seal.ring.keys_for({entries[i].uid for i in marked}, create=True)
        for i in marked:
            e = entries[i]
            props = e.payload["p"]
            sealed = {
                name: seal.seal_value(e.uid, name, value, keys) if name in personal and value is not None else value
                for name, value in props.items()
            }
            rows[i] = (*rows[i][:5], payload_text({**e.payload, "p": sealed}))
        return rows

    def _opened(self, found: dict[str, LedgerEntry]) -> dict[str, LedgerEntry]:
        """Ledger entries with their payloads' sealed values opened (a value whose key is gone reads as absent)."""
        seal = self.seal
        assert seal is not None
        sealed = [
            (key, e)
            for key, e in found.items()
            if isinstance(props := e.payload.get("p"), dict) and any(is_sealed(v) for v in props.values())
        ]
        if not sealed:
            return found
        states = seal.open_states([(e.uid, e.payload["p"]) for _, e in sealed])
        for (key, e), props in zip(sealed, states, strict=True):
            found[key] = replace(e, payload={**e.payload, "p": props})
        return found

    def drop_ledger(self, conn: Connection, connector: str, entity: str, keys: Sequence[str]) -> None:
        """Remove ledger entries inside the caller's transaction."""
        t = sync_record_table
        for chunk in batched(keys, _CHUNK):
            conn.execute(delete(t).where(t.c.connector == connector, t.c.entity == entity, t.c.record_key.in_(chunk)))

    def forget_entry(self, connector: str, entity: str, key: str) -> None:
        """Remove one ledger entry so the record is written afresh by the next run."""
        with self.engine.begin() as conn:
            self.drop_ledger(conn, connector, entity, [key])

    # ------------------------------------------------------------------------------------------ journal
    def journal(self, batch_id: str) -> tuple[str, list[str]] | None:
        """(run id, record keys) of an uncommitted attempt at this batch, if a crashed run left one."""
        t = sync_batch_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.run_id, t.c["keys"]).where(t.c.batch_id == batch_id)).first()
        return (row[0], json.loads(row[1])) if row else None

    def open_batch(self, batch_id: str, connector: str, entity: str, run_id: str, keys: Sequence[str]) -> None:
        """Note that a batch is about to be written (its lineage may become durable before its ledger)."""
        statement = insert_ignore_statement(self.engine, sync_batch_table, ["batch_id"])
        with self.engine.begin() as conn:
            conn.execute(
                statement,
                {
                    "batch_id": batch_id,
                    "connector": connector,
                    "entity": entity,
                    "run_id": run_id,
                    "keys": json.dumps(list(keys)),
                    "created_at": now_text(),
                },
            )

    def close_batch(self, conn: Connection, batch_id: str) -> None:
        """Forget the batch's journal entry inside the committing transaction."""
        conn.execute(delete(sync_batch_table).where(sync_batch_table.c.batch_id == batch_id))

    def clear_journal(self, connector: str) -> int:
        """Drop journal entries a connector's crashed runs left behind (after a complete run)."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(sync_batch_table).where(sync_batch_table.c.connector == connector))
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------------------------ pending links
    def add_pending(self, conn: Connection, links: Sequence[PendingLink]) -> None:
        """Remember links whose endpoints are missing, inside the caller's transaction."""
        if not links:
            return
        rows = [
            (
                p.type,
                p.source,
                p.target,
                p.connector,
                p.system,
                p.entity,
                p.record_key,
                p.rule,
                json.dumps(dict(p.properties), sort_keys=True),
                p.reason,
            )
            for p in links
        ]
        since = now_text()
        for chunk in batched(rows, 5_000):
            self._pending.append(conn, chunk, (since,))

    def pending(self, connector: str | None = None) -> list[PendingLink]:
        """Links still waiting for an endpoint (of one connector, or all)."""
        t = sync_pending_link_table
        query = select(t)
        if connector is not None:
            query = query.where(t.c.connector == connector)
        with self.engine.connect() as conn:
            return [
                PendingLink(
                    r.type,
                    r.source,
                    r.target,
                    r.connector,
                    r.system,
                    r.entity,
                    r.record_key,
                    r.rule,
                    json.loads(r.properties),
                    r.reason,
                )
                for r in conn.execute(query.order_by(t.c.since, t.c.source))
            ]

    def drop_pending(self, conn: Connection, links: Iterable[tuple[str, str, str]]) -> None:
        """Forget pending links given as (type, source, target), inside the caller's transaction."""
        t = sync_pending_link_table
        for chunk in batched(links, 500):
            conn.execute(delete(t).where(tuple_(t.c.type, t.c.source, t.c.target).in_(list(chunk))))

    # --------------------------------------------------------------------------------------------- runs
    def start_run(self, run_id: str, connector: str, mode: str, resumed: bool = False) -> None:
        """Record that a run started."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(sync_run_table).values(
                    run_id=run_id,
                    connector=connector,
                    mode=mode,
                    status="running",
                    started_at=now_text(),
                    counts="{}",
                    timings="{}",
                    resumed=resumed,
                )
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        counts: Mapping[str, int],
        timings: Mapping[str, float],
        error: str | None = None,
    ) -> None:
        """Record how a run ended."""
        with self.engine.begin() as conn:
            conn.execute(
                update(sync_run_table)
                .where(sync_run_table.c.run_id == run_id)
                .values(
                    status=status,
                    ended_at=now_text(),
                    counts=json.dumps(dict(counts), sort_keys=True),
                    timings=json.dumps({k: round(v, 4) for k, v in timings.items()}, sort_keys=True),
                    error=error,
                )
            )

    def runs(self, connector: str | None = None, limit: int = 50) -> list[SyncRunRecord]:
        """Runs, newest first."""
        t = sync_run_table
        query = select(t).order_by(t.c.started_at.desc()).limit(limit)
        if connector is not None:
            query = query.where(t.c.connector == connector)
        with self.engine.connect() as conn:
            return [
                SyncRunRecord(
                    r.run_id,
                    r.connector,
                    r.mode,
                    r.status,
                    r.started_at,
                    r.ended_at,
                    json.loads(r.counts),
                    json.loads(r.timings),
                    r.error,
                )
                for r in conn.execute(query)
            ]

    def interrupted_runs(self, connector: str) -> list[str]:
        """Ids of this connector's runs still marked running (their process died)."""
        t = sync_run_table
        with self.engine.connect() as conn:
            return list(conn.scalars(select(t.c.run_id).where(t.c.connector == connector, t.c.status == "running")))

    def erase_personal(self, uid: str, fields: Sequence[str], values: Sequence[Any]) -> int:
        """Blank `fields` in the ledger payloads of the records feeding twin `uid` (right to erasure); returns how
        many payloads changed. The source digest stays, so an unchanged source record is not synced back in."""
        t = sync_record_table
        changed = 0
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.c.connector, t.c.entity, t.c.record_key, t.c.payload).where(t.c.uid == uid))
            for connector, entity, key, text in rows.all():
                payload = json.loads(text)
                props = payload.get("p") if isinstance(payload, dict) else None
                if not isinstance(props, dict):
                    continue
                hit = [name for name in fields if props.get(name) is not None]
                if not hit:
                    continue
                payload["p"] = {**props, **dict.fromkeys(hit)}
                conn.execute(
                    update(t)
                    .where(t.c.connector == connector, t.c.entity == entity, t.c.record_key == key)
                    .values(payload=payload_text(payload))
                )
                changed += 1
        return changed

    def mark_interrupted(self, run_ids: Sequence[str]) -> None:
        """Mark runs whose process died as aborted."""
        if not run_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(sync_run_table)
                .where(sync_run_table.c.run_id.in_(list(run_ids)))
                .values(status="aborted", ended_at=now_text(), error="the run's process ended before it finished")
            )
