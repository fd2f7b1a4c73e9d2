"""The lineage store: where every twin property value came from (source record, field, run, mapping) and runs."""

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

lineage_record_table = Table(
    "lineage_record",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("twin_uid", String(256), nullable=False),
    Column("property", String(256), nullable=False),
    Column("value_digest", String(64), nullable=False),
    Column("value", Text, nullable=True),
    Column("erased_at", String(32), nullable=True),
    Column("source_system", String(256), nullable=False),
    Column("source_object", String(256), nullable=False),
    Column("record_key", String(512), nullable=False),
    Column("source_field", String(256), nullable=True),
    Column("run_id", String(64), ForeignKey("lineage_run.run_id"), nullable=False),
    Column("mapping_rule", String(256), nullable=True),
    Column("transform", String(512), nullable=True),
    Column("recorded_at", String(32), nullable=False),
    Index("ix_lineage_record_twin", "twin_uid", "property"),
    Index("ix_lineage_record_source", "source_system", "record_key"),
    Index("ix_lineage_record_run", "run_id"),
)


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
    record_id: int | None = None
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
    """The values one run took from one source object (a connector's batch): their shared provenance and each value.

    Stored as one ProvenanceRecord per value, exactly as `ProvenanceRecord.of` would make it, only cheaper.
    """

    run_id: str
    source_system: str
    source_object: str
    values: Sequence[FedValue]
    keep_values: bool = True


class FedProperty(NamedTuple):
    """A twin property fed by a source record."""

    twin_uid: str
    property: str


_INSERT_CHUNK = 10_000
# lineage_record's columns (all but the id and erased_at) in the order record rows are built as tuples
_COLUMNS = (
    "twin_uid",
    "property",
    "value_digest",
    "value",
    "source_system",
    "source_object",
    "record_key",
    "source_field",
    "run_id",
    "mapping_rule",
    "transform",
    "recorded_at",
)
# of a FedValues batch: what each value has of its own, and what the batch's values share
_FED_COLUMNS = (
    "twin_uid",
    "property",
    "value_digest",
    "value",
    "record_key",
    "source_field",
    "mapping_rule",
    "transform",
)
_SHARED_COLUMNS = ("run_id", "source_system", "source_object", "recorded_at")


class LineageStore:
    """Property-level provenance and runs in one relational store (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str, digest_key: bytes | None = None, seal: PersonalSeal | None = None) -> None:
        self.url = url
        self.digest_key = digest_key  # keys the value digests (see governance/digest_key.py)
        self.seal = seal  # seals kept personal values under their subject's key (governance/personal_seal.py)
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self._records = RowAppender(self.engine, lineage_record_table, _COLUMNS)
        self._fed = RowAppender(self.engine, lineage_record_table, _FED_COLUMNS, _SHARED_COLUMNS)
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
        """Store provenance records in one transaction (batched executemany); returns how many were stored."""
        if not records:
            return 0
        now = utc_text(datetime.now(UTC))
        rows = self._sealed([_record_row(self._keyed(r), now) for r in records])
        self._store(None, {r.run_id for r in records}, lambda conn, chunk: self._records.append(conn, chunk), rows)
        return len(records)

    def record_values(self, fed: FedValues, conn: Connection | None = None) -> int:
        """Store one record per fed value (digest of its canonical JSON, the value too when kept); returns how many.

        With `conn` (a transaction on this store's database) the records commit with the caller's other writes —
        a connector commits its batch's lineage and its sync ledger at once; without, in a transaction of their own.
        """
        if not fed.values:
            return 0
        shared = (fed.run_id, fed.source_system, fed.source_object, utc_text(datetime.now(UTC)))
        keep = fed.keep_values
        rows = []
        for uid, prop, value, key, source_field, rule, transform in fed.values:
            text = canonical_json(value)  # encoded once: hashed, and stored when kept
            digest = keyed_text_digest(text, self.digest_key)
            rows.append((uid, prop, digest, text if keep else None, key, source_field, rule, transform))
        rows = self._sealed(rows)
        self._store(conn, {fed.run_id}, lambda conn, chunk: self._fed.append(conn, chunk, shared), rows)
        return len(rows)

    def _sealed(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Record rows (uid, property, digest, value text, ...) with the kept personal values sealed."""
        seal = self.seal
        if seal is None:
            return rows
        personal = [i for i, row in enumerate(rows) if row[3] is not None and seal.is_personal(row[1])]
        if not personal:
            return rows
        keys = seal.ring.keys_for({rows[i][0] for i in personal}, create=True)
        for i in personal:
            uid, prop, digest, text, *rest = rows[i]
            rows[i] = (uid, prop, digest, seal.seal_text(uid, prop, text, keys), *rest)
        return rows

    def _record(self, row: RowMapping) -> ProvenanceRecord:
        """A stored record read back, its sealed value opened (a value whose key is gone reads as not kept)."""
        stored = row["value"]
        if is_sealed(stored):  # without a seal (no key ring) a sealed value cannot be read
            text = self.seal.open_text(row["twin_uid"], row["property"], stored) if self.seal is not None else None
            return _to_record(row, text)
        return _to_record(row, stored)

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
        """Insert record rows with `append`, in chunks, after checking their runs exist."""
        try:
            if conn is None:
                with self.engine.begin() as own:
                    self._insert(own, run_ids, append, rows)
            else:
                self._insert(conn, run_ids, append, rows)
        except DBAPIError as error:
            raise LineageError(f"storing {len(rows)} provenance records failed: {type(error.orig).__name__}") from error

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
        t = lineage_record_table
        query = select(t).where(t.c.twin_uid == twin_uid)
        if property is not None:
            query = query.where(t.c.property == property)
        query = query.order_by(t.c.recorded_at.desc(), t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [self._record(row._mapping) for row in conn.execute(query)]

    def fed_by(self, source_system: str, record_key: str, source_object: str | None = None) -> list[FedProperty]:
        """Which twin properties a source record fed (what to revisit when that record changes or was wrong)."""
        t = lineage_record_table
        query = select(t.c.twin_uid, t.c.property).where(
            t.c.source_system == source_system, t.c.record_key == record_key
        )
        if source_object is not None:
            query = query.where(t.c.source_object == source_object)
        query = query.distinct().order_by(t.c.twin_uid, t.c.property)
        with self.engine.connect() as conn:
            return [FedProperty(row[0], row[1]) for row in conn.execute(query)]

    def records_of_run(self, run_id: str, limit: int | None = None) -> list[ProvenanceRecord]:
        """The provenance records a run wrote, in the order written."""
        t = lineage_record_table
        query = select(t).where(t.c.run_id == run_id).order_by(t.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [self._record(row._mapping) for row in conn.execute(query)]

    def erase_values(self, twin_uid: str) -> int:
        """Blank every stored value of a twin (erasure), keeping digests and sources; returns records blanked."""
        t = lineage_record_table
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t)
                .where(t.c.twin_uid == twin_uid, t.c.erased_at.is_(None))
                .values(value=None, erased_at=utc_text(datetime.now(UTC)))
            )
        return int(result.rowcount)


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


def _record_row(record: ProvenanceRecord, now: str) -> tuple[Any, ...]:
    """The record as a row tuple in `_COLUMNS` order."""
    return (
        record.twin_uid,
        record.property,
        record.value_digest,
        canonical_json(record.value) if record.has_value else None,
        record.source_system,
        record.source_object,
        record.record_key,
        record.source_field,
        record.run_id,
        record.mapping_rule,
        record.transform,
        utc_text(record.recorded_at) if record.recorded_at else now,
    )


def _to_record(row: RowMapping, stored: str | None) -> ProvenanceRecord:
    """A record row with its value text `stored` (opened when it was sealed)."""
    return ProvenanceRecord(
        twin_uid=row["twin_uid"],
        property=row["property"],
        value_digest=row["value_digest"],
        source_system=row["source_system"],
        source_object=row["source_object"],
        record_key=row["record_key"],
        run_id=row["run_id"],
        source_field=row["source_field"],
        mapping_rule=row["mapping_rule"],
        transform=row["transform"],
        value=json.loads(stored) if stored is not None else None,
        has_value=stored is not None,
        recorded_at=parse_utc_text(row["recorded_at"]),
        erased_at=parse_utc_text(row["erased_at"]) if row["erased_at"] else None,
        record_id=int(row["id"]),
    )
