"""The lineage store: where every twin property value came from (source record, field, run, mapping) and runs.

Stored as one row per (twin, source record, run) holding that record's property map — each property's source field,
mapping rule, transform, value digest and value (its canonical JSON, sealed when personal) — and read back as one
`ProvenanceRecord` per property value, as it was when each value had a row of its own (issue 25).
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError

from governance.canonical import canonical_json, parse_utc_text, sha256_digest, utc_text
from governance.digest_key import keyed_text_digest
from governance.errors import LineageError, RunNotFound
from governance.personal_seal import PersonalSeal
from graph.personal_values import is_sealed
from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender
from ontology.errors import quoted

metadata = MetaData()

lineage_run_table = Table(
    "lineage_run",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(256), nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("ended_at", String(32), nullable=True),
    Column("status", String(16), nullable=False),
    Column("counts", Text, nullable=False),
    Column("inputs", Text, nullable=False),
    Column("outputs", Text, nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_lineage_run_name", "kind", "name"),
)

lineage_source_table = Table(
    "lineage_source_record",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("twin_uid", String(256), nullable=False),
    Column("source_system", String(256), nullable=False),
    Column("source_object", String(256), nullable=False),
    Column("record_key", String(512), nullable=False),
    Column("run_id", String(64), ForeignKey("lineage_run.run_id"), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("erased_at", String(32), nullable=True),
    # the property map: a JSON array of [property, source field, mapping rule, transform, value digest, value], the
    # value as its canonical JSON text, its sealed token (personal values) or null (not kept, or erased)
    Column("properties", Text, nullable=False),
    Index("ix_lineage_source_record_twin", "twin_uid"),
    Index("ix_lineage_source_record_source", "source_system", "record_key"),
    Index("ix_lineage_source_record_run", "run_id"),
)
"""One row per (twin, source record, run): what one source record fed into one twin in one run (issue 25)."""


class RunKind(StrEnum):
    """What produced values: a connector sync or a scenario study."""

    CONNECTOR = "connector"
    SCENARIO = "scenario"


class RunStatus(StrEnum):
    """Where a run is in its life."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run read or wrote, named the OpenLineage way (namespace = system, name = table/model)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class RunRecord:
    """One connector or scenario run and its outcome."""

    run_id: str
    kind: RunKind
    name: str
    started_at: datetime
    status: RunStatus = RunStatus.RUNNING
    ended_at: datetime | None = None
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    inputs: tuple[DatasetRef, ...] = ()
    outputs: tuple[DatasetRef, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ProvenanceRecord:
    """Where one twin property value came from: source system/object/record/field, run, mapping rule, transform."""

    twin_uid: str
    property: str
    value_digest: str
    source_system: str
    source_object: str
    record_key: str
    run_id: str
    source_field: str | None = None
    mapping_rule: str | None = None
    transform: str | None = None
    value: Any = None
    has_value: bool = False
    recorded_at: datetime | None = None
    erased_at: datetime | None = None
    record_id: int | None = None  # the stored source-record row (shared by the values it holds)
    canonical_value: str | None = field(default=None, repr=False, compare=False)  # what a keyed store digests

    @classmethod
    def of(
        cls,
        twin_uid: str,
        property: str,
        value: Any,
        *,
        source_system: str,
        source_object: str,
        record_key: str,
        run_id: str,
        source_field: str | None = None,
        mapping_rule: str | None = None,
        transform: str | None = None,
        keep_value: bool = True,
        recorded_at: datetime | None = None,
    ) -> ProvenanceRecord:
        """A record for `value`, its digest computed; `keep_value=False` stores the digest only (a store with a
        deployment digest key stores its keyed digest instead)."""
        text = canonical_json(value)
        return cls(
            twin_uid=twin_uid,
            property=property,
            value_digest=keyed_text_digest(text, None),
            canonical_value=text,
            source_system=source_system,
            source_object=source_object,
            record_key=record_key,
            run_id=run_id,
            source_field=source_field,
            mapping_rule=mapping_rule,
            transform=transform,
            value=value if keep_value else None,
            has_value=keep_value,
            recorded_at=recorded_at,
        )

    @builtins.property  # the class has a field named `property`
    def erased(self) -> bool:
        """Whether the stored value was erased (the digest remains)."""
        return self.erased_at is not None

    def matches(self, value: Any) -> bool:
        """Whether `value` is the value this record was made for (checked by its plain digest, so works after erasure;
        records of a store with a digest key: `LineageStore.matches`)."""
        return sha256_digest(value) == self.value_digest


class PropertyLineage(NamedTuple):
    """One value a source record fed into one twin property (or a link), with the mapping rule that produced it."""

    property: str
    value: Any
    source_field: str | None = None
    mapping_rule: str | None = None
    transform: str | None = None


@dataclass(frozen=True, slots=True)
class RecordLineage:
    """What one source record fed into one twin in one run: each property's value and mapping, in the order fed.

    The lineage writer's unit (one stored row); plain data, so worker processes can make it and pickle it.
    """

    twin_uid: str
    record_key: str
    properties: Sequence[PropertyLineage]


@dataclass(frozen=True, slots=True)
class LineageBatch:
    """The source records one run took from one source object (a connector's batch), with their shared provenance;
    `keep_values=False` stores the digests only."""

    run_id: str
    source_system: str
    source_object: str
    records: Sequence[RecordLineage]
    keep_values: bool = True

    def __len__(self) -> int:
        return sum(len(record.properties) for record in self.records)


class FedValue(NamedTuple):
    """One value a source record fed into a twin property (or a link), with the mapping rule that produced it."""

    twin_uid: str
    property: str
    value: Any
    record_key: str
    source_field: str | None = None
    mapping_rule: str | None = None
    transform: str | None = None


@dataclass(frozen=True)
class FedValues:
    """The values one run took from one source object, one by one (the flat form of a `LineageBatch`: consecutive
    values of one twin and source record make one `RecordLineage`)."""

    run_id: str
    source_system: str
    source_object: str
    values: Sequence[FedValue]
    keep_values: bool = True

    def batch(self) -> LineageBatch:
        """The values grouped by source record (consecutive values of one twin and record key)."""
        records: list[RecordLineage] = []
        last: tuple[str, str] | None = None
        current: list[PropertyLineage] = []
        for uid, prop, value, key, source_field, rule, transform in self.values:
            if (uid, key) != last:
                current = []
                records.append(RecordLineage(uid, key, current))
                last = (uid, key)
            current.append(PropertyLineage(prop, value, source_field, rule, transform))
        return LineageBatch(self.run_id, self.source_system, self.source_object, records, self.keep_values)


class PropertyRename(NamedTuple):
    """A property of one twin renamed (by an ontology migration): its lineage follows it."""

    twin_uid: str
    old: str
    new: str


class FedProperty(NamedTuple):
    """A twin property fed by a source record."""

    twin_uid: str
    property: str


_INSERT_CHUNK = 2_000  # source-record rows per statement (each holds its property map)
# lineage_source_record's columns (all but the id and erased_at) in the order rows of `record` are built as tuples
_COLUMNS = ("twin_uid", "source_system", "source_object", "record_key", "run_id", "recorded_at", "properties")
# of a LineageBatch: what each source record has of its own, and what the batch's records share
_BATCH_COLUMNS = ("twin_uid", "record_key", "properties")
_SHARED_COLUMNS = ("run_id", "source_system", "source_object", "recorded_at")
# a property map entry: [property, source field, mapping rule, transform, value digest, stored value]
_PROPERTY, _FIELD, _RULE, _TRANSFORM, _DIGEST, _VALUE = range(6)


class LineageStore:
    """Provenance and runs in one relational store (sqlite:/// or postgresql:// URL): one row per (twin, source
    record, run) holding the property map, read back as one `ProvenanceRecord` per property value."""

    def __init__(self, url: str, digest_key: bytes | None = None, seal: PersonalSeal | None = None) -> None:
        self.url = url
        self.digest_key = digest_key  # keys the value digests (see governance/digest_key.py)
        self.seal = seal  # seals kept personal values under their subject's key (governance/personal_seal.py)
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self._records = RowAppender(self.engine, lineage_source_table, _COLUMNS)
        self._batches = RowAppender(self.engine, lineage_source_table, _BATCH_COLUMNS, _SHARED_COLUMNS)
        # on SQLite a property map goes into the appender's JSON rows as it is (stored as its JSON text by SQLite
        # itself); elsewhere it is encoded here
        self._nested_maps = self.engine.dialect.name == "sqlite"
        # run ids found committed in lineage_run (runs are never deleted): a run's batches check it once, not per batch
        self._known_runs: set[str] = set()

    def start_run(
        self,
        kind: RunKind | str,
        name: str,
        *,
        inputs: Iterable[DatasetRef] = (),
        outputs: Iterable[DatasetRef] = (),
        run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> RunRecord:
        """Record the start of a connector or scenario run and return it (a fresh UUID unless `run_id` is given)."""
        try:
            run_kind = RunKind(kind)
        except ValueError:
            raise LineageError(f"run kind {kind!r} is not one of {', '.join(RunKind)}") from None
        if not name:
            raise LineageError("a run needs a name (the connector or scenario it belongs to)")
        run = RunRecord(
            run_id=run_id or str(uuid.uuid4()),
            kind=run_kind,
            name=name,
            started_at=_truncate(started_at or datetime.now(UTC)),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(lineage_run_table).values(**_run_row(run)))
        except IntegrityError:
            raise LineageError(f"run id {run.run_id!r} already exists") from None
        return run

    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.COMPLETED,
        counts: Mapping[str, int] | None = None,
        *,
        error: str | None = None,
        outputs: Iterable[DatasetRef] | None = None,
        ended_at: datetime | None = None,
    ) -> RunRecord:
        """Record how a running run ended (status, counts such as read/written/rejected, error) and return it."""
        final = RunStatus(status)
        if final is RunStatus.RUNNING:
            raise LineageError(f"run {run_id!r} cannot finish with status 'running'")
        values: dict[str, Any] = {
            "status": final.value,
            "ended_at": utc_text(ended_at or datetime.now(UTC)),
            "counts": canonical_json({k: int(v) for k, v in (counts or {}).items()}),
            "error": error,
        }
        if outputs is not None:
            values["outputs"] = _datasets_json(outputs)
        t = lineage_run_table
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t).where(t.c.run_id == run_id, t.c.status == RunStatus.RUNNING.value).values(**values)
            )
            if done.rowcount != 1:
                row = conn.execute(select(t.c.status).where(t.c.run_id == run_id)).first()
                if row is None:
                    raise LineageError(f"run {run_id!r} does not exist")
                raise LineageError(f"run {run_id!r} already finished with status {row[0]!r}")
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        """The run with id `run_id`."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lineage_run_table).where(lineage_run_table.c.run_id == run_id)).first()
        if row is None:
            raise RunNotFound(f"run {run_id[:80]!r} does not exist")
        return _to_run(row._mapping)

    def runs(self, kind: RunKind | str | None = None, name: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Runs, newest first, optionally of one kind and name."""
        t = lineage_run_table
        query = select(t)
        if kind is not None:
            query = query.where(t.c.kind == RunKind(kind).value)
        if name is not None:
            query = query.where(t.c.name == name)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.started_at.desc()).limit(limit))
            return [_to_run(row._mapping) for row in rows]

    def record(self, records: Sequence[ProvenanceRecord]) -> int:
        """Store provenance records in one transaction (consecutive records of one twin, source record, run and time
        share one row); returns how many were stored."""
        if not records:
            return 0
        now = utc_text(datetime.now(UTC))
        heads: list[tuple[str, ...]] = []
        maps: list[list[list[Any]]] = []
        last: tuple[str, ...] | None = None
        for given in records:
            r = self._keyed(given)
            recorded = utc_text(r.recorded_at) if r.recorded_at else now
            head = (r.twin_uid, r.source_system, r.source_object, r.record_key, r.run_id, recorded)
            entry = [
                r.property,
                r.source_field,
                r.mapping_rule,
                r.transform,
                r.value_digest,
                canonical_json(r.value) if r.has_value else None,
            ]
            if head == last:
                maps[-1].append(entry)
            else:
                heads.append(head)
                maps.append([entry])
                last = head
        self._seal([head[0] for head in heads], maps)
        rows = [(*head, _map_text(entries)) for head, entries in zip(heads, maps, strict=True)]
        self._store(None, {r.run_id for r in records}, lambda conn, chunk: self._records.append(conn, chunk), rows)
        return len(records)

    def record_lineage(self, batch: LineageBatch, conn: Connection | None = None) -> int:
        """Store one row per source record of `batch` (each value's digest of its canonical JSON, the value too when
        kept, personal values sealed); returns how many property values were stored.

        With `conn` (a transaction on this store's database) the rows commit with the caller's other writes — a
        connector commits its batch's lineage and its sync ledger at once; without, in a transaction of their own.
        """
        key = self.digest_key
        keep = batch.keep_values
        uids: list[str] = []
        maps: list[list[list[Any]]] = []
        for record in batch.records:
            if not record.properties:
                continue
            entries = []
            for prop, value, source_field, rule, transform in record.properties:
                text = canonical_json(value)  # encoded once: hashed, and stored when kept
                entries.append(
                    [prop, source_field, rule, transform, keyed_text_digest(text, key), text if keep else None]
                )
            uids.append(record.twin_uid)
            maps.append(entries)
        if not maps:
            return 0
        if keep:
            self._seal(uids, maps)
        nested = self._nested_maps
        rows = [
            (uid, record_key, entries if nested else _map_text(entries))
            for uid, record_key, entries in zip(
                uids, (r.record_key for r in batch.records if r.properties), maps, strict=True
            )
        ]
        shared = (batch.run_id, batch.source_system, batch.source_object, utc_text(datetime.now(UTC)))
        self._store(conn, {batch.run_id}, lambda conn, chunk: self._batches.append(conn, chunk, shared), rows)
        return sum(len(entries) for entries in maps)

    def record_values(self, fed: FedValues, conn: Connection | None = None) -> int:
        """Store values given one by one (`FedValues.batch` groups them by source record); returns how many."""
        return self.record_lineage(fed.batch(), conn)

    def _seal(self, uids: Sequence[str], maps: Sequence[list[list[Any]]]) -> None:
        """Seal, in place, the kept personal values of the property maps (map i belongs to twin `uids[i]`)."""
        seal = self.seal
        if seal is None:
            return
        personal = seal.personal
        wanted = {
            uid
            for uid, entries in zip(uids, maps, strict=True)
            if any(e[_VALUE] is not None and e[_PROPERTY] in personal for e in entries)
        }
        if not wanted:
            return
        keys = seal.ring.keys_for(wanted, create=True)
        for uid, entries in zip(uids, maps, strict=True):
            if uid not in wanted:
                continue
            for e in entries:
                if e[_VALUE] is not None and e[_PROPERTY] in personal:
                    e[_VALUE] = seal.seal_text(uid, e[_PROPERTY], e[_VALUE], keys)

    def _keyed(self, record: ProvenanceRecord) -> ProvenanceRecord:
        """`record` with its digest keyed by this store's digest key (as it is without one)."""
        if self.digest_key is None or record.canonical_value is None:
            return record
        return replace(record, value_digest=keyed_text_digest(record.canonical_value, self.digest_key))

    def matches(self, record: ProvenanceRecord, value: Any) -> bool:
        """Whether `value` is the value `record` was made for, by this store's (keyed) digest; works after erasure."""
        return keyed_text_digest(canonical_json(value), self.digest_key) == record.value_digest

    def _store(
        self,
        conn: Connection | None,
        run_ids: set[str],
        append: Callable[[Connection, list[tuple[Any, ...]]], int],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Insert rows with `append`, in chunks, after checking their runs exist."""
        try:
            if conn is None:
                with self.engine.begin() as own:
                    self._insert(own, run_ids, append, rows)
            else:
                self._insert(conn, run_ids, append, rows)
        except DBAPIError as error:
            raise LineageError(
                f"storing the provenance of {len(rows)} source records failed: {type(error.orig).__name__}"
            ) from error

    def _insert(
        self,
        conn: Connection,
        run_ids: set[str],
        append: Callable[[Connection, list[tuple[Any, ...]]], int],
        rows: list[tuple[Any, ...]],
    ) -> None:
        t = lineage_run_table
        unchecked = run_ids - self._known_runs
        if unchecked:
            known = set(conn.scalars(select(t.c.run_id).where(t.c.run_id.in_(unchecked))))
            missing = sorted(unchecked - known)
            if missing:
                raise LineageError(f"provenance refers to unknown run id(s) {missing[:5]}; start_run first")
            if len(self._known_runs) > 10_000:
                self._known_runs.clear()
            self._known_runs |= known
        for start in range(0, len(rows), _INSERT_CHUNK):
            append(conn, rows[start : start + _INSERT_CHUNK])

    def where_from(
        self, twin_uid: str, property: str | None = None, limit: int | None = None
    ) -> list[ProvenanceRecord]:
        """Where a twin's values (or one property's) came from, latest first."""
        t = lineage_source_table
        query = select(t).where(t.c.twin_uid == twin_uid).order_by(t.c.recorded_at.desc(), t.c.id.desc())
        found: list[ProvenanceRecord] = []
        if limit is not None and limit <= 0:
            return found
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                source = _Source.of(row._mapping)
                for entry in reversed(_entries(source.properties)):
                    if property is not None and entry[_PROPERTY] != property:
                        continue
                    found.append(self._record(source, entry))
                    if limit is not None and len(found) >= limit:
                        return found
        return found

    def fed_by(self, source_system: str, record_key: str, source_object: str | None = None) -> list[FedProperty]:
        """Which twin properties a source record fed (what to revisit when that record changes or was wrong)."""
        t = lineage_source_table
        query = select(t.c.twin_uid, t.c.properties).where(
            t.c.source_system == source_system, t.c.record_key == record_key
        )
        if source_object is not None:
            query = query.where(t.c.source_object == source_object)
        with self.engine.connect() as conn:
            fed = {FedProperty(uid, entry[_PROPERTY]) for uid, text in conn.execute(query) for entry in _entries(text)}
        return sorted(fed)

    def records_of_run(self, run_id: str, limit: int | None = None) -> list[ProvenanceRecord]:
        """The provenance records a run wrote, in the order written."""
        t = lineage_source_table
        query = select(t).where(t.c.run_id == run_id).order_by(t.c.id)
        found: list[ProvenanceRecord] = []
        if limit is not None and limit <= 0:
            return found
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                source = _Source.of(row._mapping)
                for entry in _entries(source.properties):
                    found.append(self._record(source, entry))
                    if limit is not None and len(found) >= limit:
                        return found
        return found

    def has_records(self, run_id: str, source_system: str, record_keys: Sequence[str]) -> bool:
        """Whether run `run_id` stored lineage for any of these record keys of `source_system` (a crashed attempt's)."""
        t = lineage_source_table
        with self.engine.connect() as conn:
            for start in range(0, len(record_keys), 1_000):
                chunk = record_keys[start : start + 1_000]
                hit = conn.execute(
                    select(t.c.id)
                    .where(t.c.run_id == run_id, t.c.source_system == source_system, t.c.record_key.in_(chunk))
                    .limit(1)
                ).first()
                if hit is not None:
                    return True
        return False

    def erase_values(self, twin_uid: str) -> int:
        """Blank every stored value of a twin (erasure), keeping digests and sources; returns the property values
        blanked (of its source records not erased before)."""
        t = lineage_source_table
        blanked = 0
        changes = []
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.c.id, t.c.properties).where(t.c.twin_uid == twin_uid, t.c.erased_at.is_(None)))
            for row_id, text in rows.all():
                entries = _entries(text)
                for entry in entries:
                    entry[_VALUE] = None
                blanked += len(entries)
                changes.append({"row_id": row_id, "blank": _map_text(entries)})
            if changes:
                conn.execute(
                    update(t)
                    .where(t.c.id == bindparam("row_id"))
                    .values(properties=bindparam("blank"), erased_at=utc_text(datetime.now(UTC))),
                    changes,
                )
        return blanked

    def rename_properties(self, renames: Sequence[PropertyRename]) -> int:
        """Give the lineage of renamed properties their new names, twin by twin (an ontology migration's renames), so
        each value's lineage still leads to its source record; sealed values are sealed again under the new name (a
        value whose key was destroyed stays unreadable). Returns the property values renamed."""
        wanted: dict[str, list[PropertyRename]] = {}
        for rename in renames:
            if rename.old != rename.new:
                wanted.setdefault(rename.twin_uid, []).append(rename)
        t = lineage_source_table
        renamed = 0
        uids = sorted(wanted)
        with self.engine.begin() as conn:
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                changes = []
                for row_id, uid, text in conn.execute(
                    select(t.c.id, t.c.twin_uid, t.c.properties).where(t.c.twin_uid.in_(chunk)).order_by(t.c.id)
                ):
                    entries = _entries(text)
                    count = sum(self._rename(uid, entries, rename) for rename in wanted[uid])
                    if count:
                        renamed += count
                        changes.append({"row_id": row_id, "renamed": _map_text(entries)})
                if changes:
                    conn.execute(
                        update(t).where(t.c.id == bindparam("row_id")).values(properties=bindparam("renamed")), changes
                    )
        return renamed

    def _rename(self, uid: str, entries: list[list[Any]], rename: PropertyRename) -> int:
        """Rename one property in a twin's property map, in place; returns the entries renamed."""
        count = 0
        for entry in entries:
            if entry[_PROPERTY] != rename.old:
                continue
            entry[_PROPERTY] = rename.new
            stored = entry[_VALUE]
            seal = self.seal
            if is_sealed(stored):  # sealed with the property as associated data: seal it again under the new name
                if seal is None:
                    raise LineageError(
                        f"the lineage of {quoted(uid)} holds sealed values; renaming {quoted(rename.old)} needs the "
                        "key ring (a store opened with its seal)"
                    )
                text = seal.open_text(uid, rename.old, stored)  # None: its key is gone, it stays unreadable
                entry[_VALUE] = seal.seal_text(uid, rename.new, text) if text is not None else None
            elif stored is not None and seal is not None and seal.is_personal(rename.new):
                entry[_VALUE] = seal.seal_text(uid, rename.new, stored)
            count += 1
        return count

    def _record(self, source: _Source, entry: list[Any]) -> ProvenanceRecord:
        """One property value of a stored source record, its sealed value opened (a value whose key is gone reads as
        not kept)."""
        prop, source_field, rule, transform, digest, stored = entry
        if is_sealed(stored):  # without a seal (no key ring) a sealed value cannot be read
            stored = self.seal.open_text(source.twin_uid, prop, stored) if self.seal is not None else None
        return ProvenanceRecord(
            twin_uid=source.twin_uid,
            property=prop,
            value_digest=digest,
            source_system=source.source_system,
            source_object=source.source_object,
            record_key=source.record_key,
            run_id=source.run_id,
            source_field=source_field,
            mapping_rule=rule,
            transform=transform,
            value=json.loads(stored) if stored is not None else None,
            has_value=stored is not None,
            recorded_at=source.recorded_at,
            erased_at=source.erased_at,
            record_id=source.row_id,
        )


@dataclass(frozen=True, slots=True)
class _Source:
    """A stored source-record row: what its property values share."""

    row_id: int
    twin_uid: str
    source_system: str
    source_object: str
    record_key: str
    run_id: str
    recorded_at: datetime
    erased_at: datetime | None
    properties: str

    @classmethod
    def of(cls, row: RowMapping) -> _Source:
        """The row as read."""
        return cls(
            int(row["id"]),
            row["twin_uid"],
            row["source_system"],
            row["source_object"],
            row["record_key"],
            row["run_id"],
            parse_utc_text(row["recorded_at"]),
            parse_utc_text(row["erased_at"]) if row["erased_at"] else None,
            row["properties"],
        )


def _map_text(entries: list[list[Any]]) -> str:
    """A property map as stored (JSON text)."""
    try:
        return orjson.dumps(entries).decode()
    except orjson.JSONEncodeError:  # a lone surrogate (kept by canonical JSON) is no valid UTF-8 for orjson
        return json.dumps(entries, ensure_ascii=False)


def _entries(text: str) -> list[list[Any]]:
    """A stored property map read back."""
    try:
        entries: list[list[Any]] = orjson.loads(text)
    except orjson.JSONDecodeError:
        entries = json.loads(text)
    return entries


def _truncate(moment: datetime) -> datetime:
    """`moment` as it reads back from storage (UTC, microseconds)."""
    return parse_utc_text(utc_text(moment))


def _datasets_json(datasets: Iterable[DatasetRef]) -> str:
    return canonical_json([[d.namespace, d.name] for d in datasets])


def _run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "kind": run.kind.value,
        "name": run.name,
        "started_at": utc_text(run.started_at),
        "ended_at": utc_text(run.ended_at) if run.ended_at else None,
        "status": run.status.value,
        "counts": canonical_json(dict(run.counts)),
        "inputs": _datasets_json(run.inputs),
        "outputs": _datasets_json(run.outputs),
        "error": run.error,
    }


def _to_run(row: RowMapping) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        kind=RunKind(row["kind"]),
        name=row["name"],
        started_at=parse_utc_text(row["started_at"]),
        status=RunStatus(row["status"]),
        ended_at=parse_utc_text(row["ended_at"]) if row["ended_at"] else None,
        counts=MappingProxyType(json.loads(row["counts"])),
        inputs=tuple(DatasetRef(ns, name) for ns, name in json.loads(row["inputs"])),
        outputs=tuple(DatasetRef(ns, name) for ns, name in json.loads(row["outputs"])),
        error=row["error"],
    )
