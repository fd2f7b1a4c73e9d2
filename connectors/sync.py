"""The sync engine: reads a connector's sources, maps records through its mapping, resolves identities, and writes
validated twins and links to the graph with property-level lineage, quarantining what it cannot take.

Guarantees (see also connectors/sync_state.py):

* **Full and incremental runs.** A full run reads every record; an incremental run reads records changed at or
  after the entity's committed watermark. A full run also writes unchanged records again (repairing the graph
  after outside edits) but records lineage only for values that changed.
* **Idempotent, resumable.** Each page of records is one batch: graph writes first (idempotent upserts), then —
  in one relational transaction — its lineage, ledger entries, pending links, quarantine rows and telemetry. (When
  the lineage store lives in another database its records are stored just before that transaction, under a batch
  journal entry.) Batches are committed in order on a background thread while the next page is mapped and written
  to the graph; the watermark is committed only after the entity's last batch is durable. A process killed
  anywhere loses nothing (the watermark was not advanced, so the records are read again) and duplicates nothing
  (twins and links are upserts by uid; the ledger recognises records already written; lineage commits with the
  ledger, or — in another database — a batch whose lineage became durable before a crash is found in the batch
  journal and the lineage store, and its lineage is not written twice).
* **Deletions** are detected on every run: ledger keys the source no longer has (a full run: the keys it did not
  read; an incremental run: the keys missing from the source's key list, for sources that list keys cheaply — SQL,
  Tryton, files; see connectors.source.lists_keys), and records a source marks deleted. Rule: the twin a deleted record fed is deleted only when no other ledger entry (of any connector or
  entity) still feeds it; otherwise only the links that record produced are removed and the twin stays, with the
  values other sources gave it. Association records (``link:`` entities) delete their link.
* **Quarantine.** A record is quarantined with its key, field, rule, message and raw content when its key is empty
  or repeated, a transform refuses a value, its uid rule cannot be filled, or the graph refuses it
  (graph.errors.BatchRejected: the offending items are split out by their violation paths and the rest of the
  batch is retried). Links whose endpoint twin does not exist yet wait in a pending table and are retried at the
  end of every run.
* **Dry run** computes the same plan (would create / update / delete, with examples) and writes nothing.
* **Counts** (created / updated / unchanged / deleted) count twins and links as the graph took them, not records:
  two records feeding one twin create it once, and a record whose twin another record still feeds deletes nothing.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import batched
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from connectors.identity import IdentityResolver, Resolution, candidate
from connectors.limits import SizeLimits, excerpt
from connectors.mapping import EntityMapping, LinkRule, PropertyRule, SourceMapping
from connectors.quarantine import INVALID_FIELD, QuarantinedRow, QuarantineStore
from connectors.source import Source, SourceObjectMissing, SourceRecord, UnknownSourceField, Watermark, lists_keys
from connectors.sync_state import LedgerEntry, PendingLink, SyncState, payload_text
from connectors.telemetry import Reading, TelemetryStore
from connectors.transforms import TransformError, cast_value
from governance.lineage import (
    DatasetRef,
    FedValue,
    FedValues,
    LineageStore,
    ProvenanceRecord,
    RunKind,
    RunStatus,
    lineage_record_table,
)
from graph.errors import BatchRejected
from graph.model import Link, Twin, WriteSummary
from graph.store import GraphStore
from ontology.errors import Violation

Mode = Literal["full", "incremental"]
EXAMPLES = 5

__all__ = ["Connector", "EntityReport", "MassDeletion", "SyncEngine", "SyncReport", "SyncError"]


class SyncError(RuntimeError):
    """A sync could not run at all (bad configuration, unreachable source); names the connector and entity."""


class MassDeletion(SyncError):
    """A run would delete more of an entity's records than allowed (or all of them after reading none); it stopped
    before deleting anything."""


@dataclass(frozen=True)
class Connector:
    """A named source system: its mapping and a factory opening the Source of each entity."""

    name: str
    mapping: SourceMapping
    open_source: Callable[[EntityMapping], Source]
    description: str = ""
    close: Callable[[], None] = lambda: None  # releases what the sources share (e.g. an RPC session)


@dataclass
class EntityReport:
    """What a run did (or, dry, would do) with one entity: records read; twins and links created, updated,
    unchanged and deleted; records quarantined; links waiting for an endpoint."""

    entity: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    pending_links: int = 0
    links_written: int = 0
    skipped: str | None = None  # why the entity was not synced (its source object does not exist)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def example(self, kind: str, text: str) -> None:
        """Keep a few examples per kind of change for the report."""
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(text)


@dataclass
class SyncReport:
    """The outcome of a run: counts per entity and in total, timings, quarantined rows, and the run id."""

    run_id: str
    connector: str
    mode: Mode
    dry_run: bool
    status: str = "running"
    entities: list[EntityReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    quarantined_rows: list[QuarantinedRow] = field(default_factory=list)
    error: str | None = None
    resumed_from: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Totals over the entities: read, created, updated, unchanged, deleted, quarantined, pending_links."""
        keys = ("read", "created", "updated", "unchanged", "deleted", "quarantined", "pending_links", "links_written")
        return {k: sum(getattr(e, k) for e in self.entities) for k in keys}

    def entity(self, name: str) -> EntityReport:
        """The report of one entity."""
        return next(e for e in self.entities if e.entity == name)


@dataclass
class _Item:
    """One mapped record on its way to the graph."""

    record: SourceRecord
    natural_uid: str
    uid: str
    cls: str | None
    props: dict[str, Any]
    links: list[tuple[str, str, str, dict[str, Any]]]  # (type, source uid, target uid, properties)
    link_rules: dict[str, LinkRule]
    readings: list[Reading] = field(default_factory=list)
    status: str = "created"
    old: LedgerEntry | None = None
    digest: str = ""
    accepted: bool = True
    own_cls: str | None = None
    text: str | None = None  # the canonical text of `stored`
    stored: dict[str, Any] | None = None  # the ledger payload as digested (while the class stays `stored_cls`)
    stored_cls: str | None = None

    def __post_init__(self) -> None:
        self.own_cls = self.cls

    def payload(self) -> dict[str, Any]:
        """What the ledger keeps of this record: uid fed, class written, properties, links, own uid and class."""
        return {"u": self.uid, "c": self.cls, "p": self.props, "l": sorted([list(link) for link in self.links]),
                "n": self.natural_uid, "nc": self.own_cls}


class _Rejected(Exception):
    """A record cannot be mapped: which field, which rule, why."""

    def __init__(self, field_name: str | None, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.rule = rule
        self.message = message


_TWIN_PATH = re.compile(r"^twins\[(\d+)\]")
_KEY_RANGES = 256  # key ranges an incremental deletion check compares by count before listing keys


def _integer(key: str) -> bool:
    """Whether a record key is an integer's text (as a source with an integer key column gives it)."""
    try:
        int(key)
    except ValueError:
        return False
    return True


def _truncated(offset: int, width: int) -> int:
    """`offset // width` rounded toward zero, as SQL integer division does."""
    quotient = abs(offset) // width
    return quotient if offset >= 0 else -quotient
_LINK_PATH = re.compile(r"^links\[(\d+)\]")


def _digest(payload: Mapping[str, Any], text: str | None = None) -> str:
    text = text if text is not None else payload_text(payload)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class _RecordMapper:
    """Applies one entity mapping to source records."""

    def __init__(self, entity: EntityMapping, system: str) -> None:
        self.entity = entity
        self.system = system
        self.rules: tuple[PropertyRule, ...] = entity.properties
        self.link_rules = {rule.type: rule for rule in entity.links}

    def map(self, record: SourceRecord) -> _Item:
        fields = record.fields
        entity = self.entity
        if entity.link is not None:
            return self._association(record)
        assert entity.uid is not None
        try:
            natural = entity.uid.render(fields)
        except TransformError as exc:
            raise _Rejected(",".join(entity.uid.fields), "uid", f"uid rule {entity.uid.source!r}: {exc.message}") from None
        props: dict[str, Any] = {}
        for rule in self.rules:
            try:
                props[rule.name] = rule.compute(fields)
            except TransformError as exc:
                raise _Rejected(rule.name, exc.rule, f"{rule.name}: {exc.message}") from None
        links: list[tuple[str, str, str, dict[str, Any]]] = []
        for rule in entity.links:
            try:
                target = rule.target_of(fields)
                if target is None:
                    continue
                link_props = {p.name: v for p in rule.properties if (v := p.compute(fields)) is not None}
            except TransformError as exc:
                raise _Rejected(rule.type, exc.rule, f"link {rule.type}: {exc.message}") from None
            links.append((rule.type, natural, target, link_props))
        readings: list[Reading] = []
        if entity.telemetry is not None:
            stamp = fields.get(entity.telemetry.time)
            try:
                ts = cast_value(stamp, "dateTime")
            except TransformError as exc:
                raise _Rejected(entity.telemetry.time, "telemetry.time", exc.message) from None
            if ts is None:
                raise _Rejected(entity.telemetry.time, "telemetry.time", f"time field {entity.telemetry.time!r} is empty")
            for source_field, metric in entity.telemetry.metrics:
                value = fields.get(source_field)
                if value is None:
                    continue
                try:
                    number = cast_value(value, "double")
                except TransformError as exc:
                    raise _Rejected(source_field, "telemetry.metric", exc.message) from None
                readings.append(Reading(natural, metric, ts, number, self.system))
        return _Item(record, natural, natural, entity.cls, props, links, self.link_rules, readings)

    def _association(self, record: SourceRecord) -> _Item:
        rule = self.entity.link
        assert rule is not None and rule.source is not None
        fields = record.fields
        try:
            source = rule.source.render(fields)
            target = rule.target_of(fields)
            if target is None:
                raise _Rejected(",".join(rule.target_fields), "link.target", f"link {rule.type}: the target is empty")
            props = {p.name: v for p in rule.properties if (v := p.compute(fields)) is not None}
        except TransformError as exc:
            raise _Rejected(rule.type, exc.rule, f"link {rule.type}: {exc.message}") from None
        natural = f"link:{rule.type}:{source}->{target}"
        return _Item(record, natural, natural, None, {}, [(rule.type, source, target, props)], {rule.type: rule})


class _CollectorPacing:
    """While runs are going on, the cyclic garbage collector scans less often and skips the heap that existed before.

    A run allocates millions of short-lived containers (records, mapped items, rows); with the default thresholds
    the collector re-scanned the whole long-lived heap (ontology, drivers) dozens of times per 100k records — a third
    of a full run's time. Only collection timing changes: reference counting still frees almost everything at once,
    and cycles are collected a little later. Nested and concurrent runs share one setting; the last one restores it.
    """

    _lock = threading.Lock()
    _active = 0
    _saved: tuple[int, int, int] = (700, 10, 10)
    GEN0 = 10_000

    def __enter__(self) -> None:
        with self._lock:
            if _CollectorPacing._active == 0:
                saved = gc.get_threshold()
                _CollectorPacing._saved = (saved[0], saved[1], saved[2])
                gc.freeze()  # what exists before the run is not garbage of the run: do not rescan it
                gc.set_threshold(max(saved[0], self.GEN0), saved[1], saved[2])
            _CollectorPacing._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            _CollectorPacing._active -= 1
            if _CollectorPacing._active == 0:
                gc.set_threshold(*_CollectorPacing._saved)
                gc.unfreeze()


@dataclass
class _Batch:
    """A page the graph has taken, waiting to be made durable: what the ledger, lineage and side tables get."""

    entity: EntityMapping
    accepted: list[_Item]  # changed items the graph took (ledger entries, lineage)
    unwritten: set[tuple[str, str, str]]  # links not written (no lineage for them)
    with_lineage: bool  # False when a crashed attempt at this batch already stored its lineage
    removed: list[tuple[str, str, str]]  # links the records no longer produce (dropped from pending)
    pending: list[PendingLink]
    rejected: list[QuarantinedRow]
    readings: list[Reading]
    batch_id: str | None  # the batch journal entry to close (lineage in another database only)


class _Committer:
    """Commits a run's batches in order on one background thread, while the run maps and writes the next page.

    The relational commit (lineage digests and inserts, ledger upserts) then overlaps the graph round trips of the
    next batch. Order and crash safety are those of committing inline: every batch is made durable in one
    transaction after its graph writes; a watermark is submitted after its entity's batches, and once one commit
    fails no later work (no watermark) is committed. `drain()` waits for everything submitted and raises the first
    failure; the run drains before deletions, pending links and its end.
    """

    DEPTH = 2  # batches in flight at most (bounds memory)

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-commit")
        self._queued: deque[Future[None]] = deque()
        self._failed = False

    def submit(self, work: Callable[[], None]) -> None:
        """Queue `work` after everything submitted before; raises a failure of earlier work."""
        self._collect_done()
        while len(self._queued) >= self.DEPTH:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self._guarded, work))

    def _guarded(self, work: Callable[[], None]) -> None:
        if self._failed:  # an earlier commit failed: commit nothing after it
            return
        try:
            work()
        except BaseException:
            self._failed = True
            raise

    def _collect_done(self) -> None:
        while self._queued and self._queued[0].done():
            self._queued.popleft().result()

    def drain(self) -> None:
        """Wait until everything submitted is committed; raises the first failure."""
        while self._queued:
            self._queued.popleft().result()

    def close(self) -> None:
        """Drain (raising a failure) and stop the thread."""
        try:
            self.drain()
        finally:
            self._queued.clear()
            self._pool.shutdown(wait=True)


@dataclass
class _Run:
    """State of one run."""

    connector: Connector
    mode: Mode
    dry_run: bool
    run_id: str
    report: SyncReport
    progress: Callable[[str, int, int | None], None] | None
    has_merges: bool
    open_quarantine: dict[str, set[str]]
    committer: _Committer | None = None
    planned: set[str] = field(default_factory=set)  # dry run: uids an earlier page would have created or updated
    ledger_counts: dict[str, int] = field(default_factory=dict)  # per entity: ledger entries when the run began,
    new_keys: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # records new to the ledger since,
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # and ledger entries dropped since
    unledgered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # keys quarantined this run
    created_keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # keys new to the ledger
    allow_deletions: float | None = None  # the share of an entity's records this run may delete (None: the default)
    deleting: dict[str, tuple[int, int]] = field(default_factory=dict)  # entity -> (records known, deleted so far)


class SyncEngine:
    """Runs connectors into one twin graph, keeping sync state, quarantine, identities, telemetry and lineage."""

    def __init__(
        self,
        store: GraphStore,
        state_url: str,
        *,
        lineage: LineageStore | None = None,
        actor: str = "connector",
        keep_values: bool = True,
        limits: SizeLimits = SizeLimits(),
        deletion_limit: float = 0.2,
        deletion_floor: int = 10,
    ) -> None:
        self.store = store
        self.ontology = store.ontology
        self.state = SyncState(state_url)
        self.quarantine = QuarantineStore(state_url)
        self.identity = IdentityResolver(state_url)
        self.telemetry = TelemetryStore(state_url)
        self.lineage = lineage or LineageStore(state_url)
        # lineage in the sync state's own database commits in the batch's ledger transaction (no batch journal)
        self._lineage_with_state = self.lineage.engine is self.state.engine
        self.actor = actor
        self.keep_values = keep_values
        self.limits = limits
        self.deletion_limit = deletion_limit  # the share of an entity's records a run may delete unless allowed more
        self.deletion_floor = deletion_floor  # a run may always delete this many records of an entity (small sources)

    # ------------------------------------------------------------------------------------------------ run
    def run(
        self,
        connector: Connector,
        mode: Mode = "incremental",
        *,
        dry_run: bool = False,
        entities: Sequence[str] | None = None,
        progress: Callable[[str, int, int | None], None] | None = None,
        allow_deletions: float | None = None,
    ) -> SyncReport:
        """Sync a connector (full or incremental; dry: compute the plan only) and return the run's report.

        A run that would delete more than `allow_deletions` (a share, default: the engine's `deletion_limit`) of an
        entity's records, or all of them after reading none, stops before deleting (MassDeletion; status
        "blocked")."""
        if mode not in ("full", "incremental"):
            raise SyncError(f"{connector.name}: mode must be 'full' or 'incremental', not {mode!r}")
        run_id = str(uuid.uuid4())
        report = SyncReport(run_id, connector.name, mode, dry_run)
        chosen = [e for e in connector.mapping.entities if entities is None or e.name in entities]
        if entities is not None:
            unknown = sorted(set(entities) - {e.name for e in connector.mapping.entities})
            if unknown:
                raise SyncError(f"{connector.name}: no entity {', '.join(unknown)} in {connector.mapping.path}")
        started = time.perf_counter()
        if not dry_run:
            self.store.recover_history()  # a crashed writer's graph writes get their history (or lose their intent)
            report.resumed_from = self.state.interrupted_runs(connector.name)
            self.state.mark_interrupted(report.resumed_from)
            self.lineage.start_run(
                RunKind.CONNECTOR, connector.name, run_id=run_id,
                inputs=[DatasetRef(connector.mapping.system, e.name) for e in chosen],
                outputs=[DatasetRef("twin", self.store.url)],
            )
            self.state.start_run(run_id, connector.name, mode, resumed=bool(report.resumed_from))
        ctx = _Run(connector, mode, dry_run, run_id, report, progress, self.identity.has_merges(),
                   self.quarantine.open_keys(connector.name), None if dry_run else _Committer(),
                   allow_deletions=allow_deletions)
        if mode == "incremental":  # for the deletion check's counts (see _none_deleted)
            ctx.ledger_counts = self.state.ledger_entity_counts(connector.name)
        try:
            try:
                with _CollectorPacing():
                    missing: list[str] = []
                    for entity in chosen:
                        try:
                            self._sync_entity(ctx, entity)
                        except SourceObjectMissing as exc:  # a missing object never aborts the other entities
                            if report.entity(entity.name).read:
                                raise
                            report.entity(entity.name).skipped = str(exc)
                            if not entity.optional:
                                missing.append(f"{entity.name} ({exc})")
                        except UnknownSourceField as exc:
                            raise SyncError(
                                f"{connector.name}/{entity.name}: {entity.file}:{entity.line_of_field(exc.field)}: "
                                f"source field {exc.field!r}: {exc}") from exc
                    if ctx.committer is not None:
                        ctx.committer.drain()
                    if not dry_run:
                        self._retry_pending(ctx)
                        self.state.clear_journal(connector.name)
                    if missing:
                        raise SyncError(f"{connector.name}: the source lacks what these entities read (the others "
                                        f"were synced; mark an entity `optional: true` to skip it): "
                                        f"{'; '.join(missing)}")
            finally:
                if ctx.committer is not None:  # what was submitted is committed (or failed) before the run ends
                    ctx.committer.close()
            report.status = "completed"
        except BaseException as exc:
            report.status = "blocked" if isinstance(exc, MassDeletion) else "failed"
            report.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            report.timings["total"] = time.perf_counter() - started
            if not dry_run:
                self._finish(ctx)
        return report

    def _finish(self, ctx: _Run) -> None:
        report = ctx.report
        counts = report.counts
        counts["pending_links"] = self.state.pending_count(ctx.connector.name)
        status = RunStatus.COMPLETED if report.status == "completed" else RunStatus.FAILED
        self.lineage.finish_run(ctx.run_id, status, counts, error=report.error)
        self.state.finish_run(ctx.run_id, report.status, counts, report.timings, report.error)

    # --------------------------------------------------------------------------------------------- entity
    def _sync_entity(self, ctx: _Run, entity: EntityMapping) -> None:
        report = EntityReport(entity.name)
        ctx.report.entities.append(report)
        since = self.state.watermark(ctx.connector.name, entity.name) if ctx.mode == "incremental" else None
        try:
            source = ctx.connector.open_source(entity)
        except Exception as exc:
            raise SyncError(f"{ctx.connector.name}/{entity.name}: cannot open the source: {exc}") from exc
        total = None
        counter = getattr(source, "count", None)
        if ctx.progress is not None and callable(counter):
            total = counter(since)
        mapper = _RecordMapper(entity, ctx.connector.mapping.system)
        seen: set[str] = set()
        newest: datetime | None = since.value if since else None
        timings = ctx.report.timings
        clock = time.perf_counter()
        try:
            self._check_file_size(ctx, entity, source)
            for page in source.read(since):
                timings["read"] += time.perf_counter() - clock
                report.read += len(page)
                for record in page:
                    if record.watermark is not None and (newest is None or record.watermark > newest):
                        newest = record.watermark
                self._page(ctx, entity, mapper, page, seen, report)
                if ctx.progress is not None:
                    ctx.progress(entity.name, report.read, total)
                clock = time.perf_counter()
            if entity.ledger and (ctx.mode == "full" or lists_keys(source)):
                # the deletion set: ledger keys the source no longer has. A full run read every key (`seen`); an
                # incremental run asks for the key list after its read (a record deleted meanwhile is gone too),
                # unless the counts show that no ledger key can be missing. Keys of batches still being committed
                # are in `seen`: the difference needs no drain.
                clock = time.perf_counter()
                gone: list[str] = []
                if ctx.mode == "full":
                    gone = sorted(self.state.ledger_keys(ctx.connector.name, entity.name) - seen)
                elif not self._none_deleted(ctx, entity, source, report):
                    gone = self._missing_keys(ctx, entity, source, seen)
                timings["deletions"] += time.perf_counter() - clock
                if gone:
                    self._delete(ctx, entity, gone, report)
        finally:
            closer = getattr(source, "close", None)
            if callable(closer):
                closer()
        if not ctx.dry_run and newest is not None and entity.watermark is not None:
            assert ctx.committer is not None
            mark = Watermark(newest)
            ctx.committer.submit(lambda: self._commit_watermark(ctx, entity, mark))

    def _none_deleted(self, ctx: _Run, entity: EntityMapping, source: Source, report: EntityReport) -> bool:
        """Whether a count proves that the source still has every ledger key of the entity (so listing its keys can
        be skipped): it holds at least as many records as the ledger has keys plus the records that are not in the
        ledger because they are quarantined (open before the run, or this run). Every other record of the source
        was read and is in the ledger, so fewer ledger keys than that would mean a deleted one. A record no run has
        read (a NULL watermark, say; full runs read it) could hide a deletion from the count until the next full
        run. The ledger's count is the run's start count plus the run's own changes (one query per run; a
        connector's runs do not overlap). Sources without a count always list their keys."""
        counter = getattr(source, "count", None)
        if not callable(counter):
            return False
        # the ledger once this run's batches are committed: as the run began, plus new records, minus deletions
        ledger = ctx.ledger_counts.get(entity.name, 0) + ctx.new_keys[entity.name] - ctx.dropped[entity.name]
        unledgered = len(ctx.open_quarantine.get(entity.name, ())) + report.quarantined
        return int(counter(None)) >= ledger + unledgered

    def _missing_keys(self, ctx: _Run, entity: EntityMapping, source: Source, seen: set[str]) -> list[str]:
        """The ledger keys (and keys read this run) the source no longer has. A source with one integer key is
        compared by key ranges first: only ranges whose key counts differ, or that hold a key the ledger may lack
        (quarantined, or new this run and perhaps not committed yet), are listed on both sides; every other range
        has as many source keys as ledger keys and no source key outside the ledger, so it lost none. Other
        sources list every key."""
        name = ctx.connector.name
        ranged = getattr(source, "key_range", None)
        span = ranged() if callable(ranged) else None
        unsure = ctx.open_quarantine.get(entity.name, set()) | ctx.unledgered[entity.name] | \
            ctx.created_keys[entity.name]
        if span is not None and all(_integer(key) for key in unsure):
            low, high = span
            width = max(1, (high - low) // _KEY_RANGES + 1)
            try:
                here = source.key_buckets(low, width)  # type: ignore[attr-defined]
                kept = self.state.ledger_key_buckets(name, entity.name, low, width)
            except SQLAlchemyError:  # a ledger key that is not an integer (PostgreSQL refuses the cast)
                span = None
            else:
                dirty = {b for b in here.keys() | kept.keys() if here.get(b, 0) != kept.get(b, 0)}
                dirty |= {_truncated(int(key) - low, width) for key in unsure}
                if not dirty:
                    return []
                ledger = self.state.ledger_keys_in_buckets(name, entity.name, low, width, sorted(dirty))
                ledger |= {key for key in seen if _integer(key) and _truncated(int(key) - low, width) in dirty}
                return sorted(ledger - source.keys_in_buckets(low, width, sorted(dirty)))  # type: ignore[attr-defined]
        return sorted((self.state.ledger_keys(name, entity.name) | seen) - source.all_keys())

    def _check_file_size(self, ctx: _Run, entity: EntityMapping, source: Source) -> None:
        """Refuse a source file larger than the limit before it is read."""
        path = getattr(source, "path", None)
        if isinstance(path, Path) and path.is_file() and (size := path.stat().st_size) > self.limits.file_bytes:
            raise SyncError(f"{ctx.connector.name}/{entity.name}: the file {path.name} is {size:,} bytes, more than "
                            f"the {self.limits.file_bytes:,} a source file may have (TWIN_SYNC_MAX_FILE_BYTES)")

    def _commit_watermark(self, ctx: _Run, entity: EntityMapping, mark: Watermark) -> None:
        """Advance an entity's watermark (submitted after its batches, so committed only after they are)."""
        with self.state.engine.begin() as conn:
            self.state.commit_watermark(conn, ctx.connector.name, entity.name, mark, ctx.run_id)

    # ----------------------------------------------------------------------------------------------- page
    def _page(self, ctx: _Run, entity: EntityMapping, mapper: _RecordMapper, page: list[SourceRecord],
              seen: set[str], report: EntityReport) -> None:
        timings = ctx.report.timings
        clock = time.perf_counter()
        name = ctx.connector.name
        rejected: list[QuarantinedRow] = []
        deleted: list[str] = []
        items: list[_Item] = []

        def reject(record: SourceRecord, field_name: str | None, rule: str, message: str) -> None:
            rejected.append(QuarantinedRow(name, entity.name, record.key, field_name, rule, message,
                                           dict(record.fields)))
            report.example("quarantine", f"{record.key}: {message}")

        for record in page:
            if record.deleted:
                deleted.append(record.key)
                continue
            fields = record.fields
            if INVALID_FIELD in fields:
                reject(record, None, "source", str(fields[INVALID_FIELD]))
                continue
            empty = [k for k in entity.key if fields.get(k) is None or fields.get(k) == ""]
            if empty:
                reject(record, empty[0], "missing-key", f"key field {empty[0]!r} is empty")
                continue
            if record.key in seen:
                reject(record, ",".join(entity.key) or None, "duplicate-key",
                       f"key {excerpt(record.key)} occurs more than once in {entity.name}; the first occurrence was "
                       "taken")
                continue
            seen.add(record.key)  # an oversized record still exists in the source: its twin is not deleted
            oversized = self.limits.oversized(fields)
            if oversized is not None:
                rejected.append(QuarantinedRow(name, entity.name, record.key[:512], oversized[0], "size", oversized[1],
                                               self.limits.trimmed(fields)))
                report.example("quarantine", f"{excerpt(record.key)}: {oversized[1]}")
                continue
            try:
                items.append(mapper.map(record))
            except _Rejected as exc:
                reject(record, exc.field, exc.rule, exc.message)
        timings["map"] += time.perf_counter() - clock

        clock = time.perf_counter()
        if entity.identity is not None and items:
            self._resolve_identities(ctx, entity, items)
        if ctx.has_merges and items:
            self._canonical_links(items)
        timings["identity"] += time.perf_counter() - clock

        clock = time.perf_counter()
        if entity.ledger:
            ledger = self.state.ledger(name, entity.name, [it.record.key for it in items])
            for item in items:
                item.stored = item.payload()
                item.stored_cls = item.cls
                item.text = payload_text(item.stored)
                item.digest = _digest({}, item.text)
                item.old = ledger.get(item.record.key)
                if item.old is None:
                    item.status = "created"
                elif item.old.digest == item.digest:
                    item.status = "unchanged"
                else:
                    item.status = "updated"
        else:
            for item in items:
                item.status = "updated"
        timings["ledger"] += time.perf_counter() - clock

        if ctx.dry_run:
            self._dry(ctx, entity, items, rejected, report)
            if deleted:
                self._delete(ctx, entity, deleted, report)
            return
        self._write(ctx, entity, items, rejected, report)
        if deleted:
            self._delete(ctx, entity, deleted, report)

    def _resolve_identities(self, ctx: _Run, entity: EntityMapping, items: list[_Item]) -> None:
        rule = entity.identity
        assert rule is not None
        system = ctx.connector.mapping.system
        candidates = []
        for item in items:
            fields = item.record.fields
            org = rule.fuzzy.organisation.render_or_none(fields) if rule.fuzzy and rule.fuzzy.organisation else None
            candidates.append(candidate(
                item.natural_uid, system, exact={p: item.props.get(p) for p in rule.exact},
                email=item.props.get(rule.email) if rule.email else None, plus_domains=rule.plus_domains,
                name=item.props.get(rule.fuzzy.name) if rule.fuzzy else None, organisation=org,
            ))
        resolutions: dict[str, Resolution] = self.identity.resolve(
            rule.domain, candidates, threshold=rule.fuzzy.threshold if rule.fuzzy else None, dry_run=ctx.dry_run)
        for item in items:
            item.uid = resolutions[item.natural_uid].canonical_uid
        merged = [item for item in items if resolutions[item.natural_uid].merged]
        if merged:
            ctx.has_merges = True
        # twins fed by more than one record: merged into another, or others merged into them
        shared_uids = {item.uid for item in merged} | self.identity.shared([item.uid for item in items])
        shared = [item for item in items if item.uid in shared_uids]
        if not shared:
            return
        existing = self._twin_state(sorted(shared_uids))
        previous = {} if rule.authoritative else self.state.ledger(
            ctx.connector.name, entity.name, [item.record.key for item in shared])
        report = ctx.report.entity(entity.name)
        for item in shared:
            canonical = item.uid
            if item.natural_uid != canonical:
                item.links = [(t, canonical if s == item.natural_uid else s, d, p) for t, s, d, p in item.links]
                item.readings = [Reading(canonical, r.metric, r.ts, r.value, r.source) for r in item.readings]
                report.example("merge", f"{item.natural_uid} -> {canonical} ({resolutions[item.natural_uid].rule})")
            state = existing.get(canonical)
            if state is None:
                continue
            if item.cls is not None:
                item.cls = self._winning_class(item.cls, state[0], rule.authoritative)
            if not rule.authoritative:
                # a non-authoritative source fills gaps: it never overwrites what another source gave the twin
                old = previous.get(item.record.key)
                owned = old.payload.get("p", {}) if old is not None and old.payload.get("u") == canonical else {}
                for prop in list(item.props):
                    current = state[1].get(prop)
                    if current is not None and current != item.props[prop] and owned.get(prop) != current:
                        del item.props[prop]

    def _winning_class(self, incoming: str, current: str, authoritative: bool) -> str:
        """The class of a merged twin: the more specific of the two; for unrelated classes the authoritative one."""
        if current not in self.ontology:
            return incoming
        if self.ontology.is_a(incoming, current):
            return incoming
        if self.ontology.is_a(current, incoming):
            return current
        return incoming if authoritative else current

    def _canonical_links(self, items: list[_Item]) -> None:
        """Point the items' links at the canonical uid of each merged identity."""
        endpoints = {s for it in items for _, s, _, _ in it.links} | {t for it in items for _, _, t, _ in it.links}
        canonical = self.identity.canonical_of(endpoints)
        if not canonical:
            return
        for item in items:
            item.links = [(t, canonical.get(s, s), canonical.get(d, d), p) for t, s, d, p in item.links]

    def _twin_state(self, uids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Class and stored properties of these twins (those that exist)."""
        return {uid: (cls, dict(props)) for uid, cls, props in self._stored(uids, "n._class, properties(n)")}

    def _classes(self, uids: list[str]) -> dict[str, str]:
        """The class of each of these twins that exists."""
        return {uid: cls for uid, cls in self._stored(uids, "n._class")}

    def _stored(self, uids: list[str], returns: str) -> list[list[Any]]:
        """Rows of (uid, `returns`) for the twins of `uids` that exist, 10,000 uids a query."""
        rows: list[list[Any]] = []
        for chunk in batched(uids, 10_000):
            rows += self.store.backend.read(f"UNWIND $uids AS u MATCH (n:Twin {{uid: u}}) RETURN n.uid, {returns}",
                                            {"uids": list(chunk)})
        return rows

    # ------------------------------------------------------------------------------------------------ dry
    def _dry(self, ctx: _Run, entity: EntityMapping, items: list[_Item], rejected: list[QuarantinedRow],
             report: EntityReport) -> None:
        """Count what writing these items would do to twins and links (twins the graph or an earlier page of this
        dry run has are updated, not created), with examples."""
        report.quarantined += len(rejected)
        ctx.report.quarantined_rows += rejected[: max(0, 50 - len(ctx.report.quarantined_rows))]
        changed_uids = {it.uid for it in items if it.status != "unchanged" and entity.link is None}
        same_uids = {it.uid for it in items if it.status == "unchanged" and entity.link is None} - changed_uids
        present = set(self._classes(sorted(changed_uids))) | ctx.planned if changed_uids else set()
        report.created += len(changed_uids - present)
        report.updated += len(changed_uids & present)
        report.unchanged += len(same_uids)
        ctx.planned |= changed_uids
        for item in items:
            old_links = {(t, s, d): p for t, s, d, p in item.old.payload.get("l", [])} if item.old else {}
            for t, s, d, p in item.links:
                if (t, s, d) not in old_links:
                    report.created += 1
                elif old_links[(t, s, d)] != p:
                    report.updated += 1
                else:
                    report.unchanged += 1
            report.deleted += len(set(old_links) - {(t, s, d) for t, s, d, _ in item.links})
            if item.status == "created":
                report.example("create", f"{item.uid} ({item.cls or item.links[0][0]})")
            elif item.status == "updated":
                old = dict(item.old.payload.get("p", {})) if item.old else {}
                changed = sorted(k for k, v in item.props.items() if old.get(k) != v)
                report.example("update", f"{item.uid}: {', '.join(changed) or 'links'}")

    # ---------------------------------------------------------------------------------------------- write
    def _write(self, ctx: _Run, entity: EntityMapping, items: list[_Item], rejected: list[QuarantinedRow],
               report: EntityReport) -> None:
        timings = ctx.report.timings
        name = ctx.connector.name
        system = ctx.connector.mapping.system
        writing = [it for it in items if it.status != "unchanged" or (ctx.mode == "full" and entity.ledger)]
        changed = [it for it in items if it.status != "unchanged"]
        if len(writing) < len(items):  # not written again: their twins and links stay as they are
            skipped = [it for it in items if it.status == "unchanged"]
            report.unchanged += len({it.uid for it in skipped if entity.link is None}) + \
                len({(t, s, d) for it in skipped for t, s, d, _ in it.links})

        # the batch journal: a crashed attempt at this very batch may have made its lineage durable already
        batch_id = None
        lineage_done = False
        if changed and entity.ledger and not self._lineage_with_state:
            batch_id = _digest({"c": name, "e": entity.name,
                                "i": [[it.record.key, it.old.digest if it.old else "", it.digest] for it in changed]})
            previous = self.state.journal(batch_id)
            if previous is not None:
                lineage_done = self._lineage_exists(previous[0], system, [it.record.key for it in changed])
            else:
                self.state.open_batch(batch_id, name, entity.name, ctx.run_id, [it.record.key for it in changed])

        clock = time.perf_counter()
        removed: list[tuple[str, str, str]] = []
        for item in changed:
            if item.old is not None:
                before = {(t, s, d) for t, s, d, _ in item.old.payload.get("l", [])}
                after = {(t, s, d) for t, s, d, _ in item.links}
                removed += sorted(before - after)
        if removed:
            assert ctx.committer is not None
            ctx.committer.drain()  # decide on committed ledger entries only
            fed = self._links_fed_by_others(removed, {(name, entity.name, it.record.key) for it in changed})
            removed = [link for link in removed if link not in fed]
        if removed:
            report.deleted += self.store.delete_links(removed, actor=self.actor, source=name,
                                                      run_id=ctx.run_id).deleted
        pending: list[PendingLink] = []
        if entity.link is None:
            twins_to_write = writing
            if entity.update_only:
                present = self._classes(list({it.uid for it in writing}))
                for item in writing:
                    if item.uid not in present:
                        item.accepted = False
                        rejected.append(QuarantinedRow(name, entity.name, item.record.key, None, "unknown-twin",
                                                       f"no twin {item.uid!r} to update (update_only)",
                                                       dict(item.record.fields)))
                    elif item.cls is not None:
                        item.cls = self._winning_class(item.cls, present[item.uid], False)
                twins_to_write = [it for it in writing if it.accepted]
            elif entity.cls is not None and self.ontology.descendants(entity.cls):
                # another mapping may have given these twins a more specific class: keep it (no flip-flopping)
                present = self._classes(list({it.uid for it in writing}))
                for item in writing:
                    current = present.get(item.uid)
                    if current is not None and item.cls is not None and current != item.cls:
                        item.cls = self._winning_class(item.cls, current, False)
            self._count(report, self._upsert_twins(ctx, entity, twins_to_write, rejected))
        link_items = [it for it in writing if it.accepted and it.links]
        unwritten: set[tuple[str, str, str]] = set()
        links = self._upsert_links(ctx, entity, link_items, rejected, pending, unwritten)
        self._count(report, links)
        report.links_written += links.created + links.updated + links.unchanged
        timings["graph"] += time.perf_counter() - clock

        accepted = [it for it in changed if it.accepted]
        for item in accepted:
            if len(report.examples[item.status]) < EXAMPLES:
                report.example(item.status, f"{item.uid} ({item.cls or item.links[0][0]})")
        report.quarantined += len(rejected)
        ctx.unledgered[entity.name].update(row.record_key for row in rejected if row.record_key is not None)
        report.pending_links += len(pending)
        ctx.report.quarantined_rows += rejected[: max(0, 50 - len(ctx.report.quarantined_rows))]
        readings = [r for it in items if it.accepted for r in it.readings]
        batch = _Batch(entity, accepted, unwritten, not lineage_done, removed, pending, rejected, readings, batch_id)
        if entity.ledger:  # records new to the ledger (for the incremental deletion check)
            created = [it.record.key for it in accepted if it.status == "created"]
            ctx.new_keys[entity.name] += len(created)
            ctx.created_keys[entity.name].update(created)
        assert ctx.committer is not None
        ctx.committer.submit(lambda: self._commit(ctx, batch))

    def _commit(self, ctx: _Run, batch: _Batch) -> None:
        """Make a batch the graph has taken durable: its lineage, then in one transaction its ledger entries,
        pending links, quarantine rows and readings (with lineage too when it lives in the same database)."""
        timings = ctx.report.timings
        name = ctx.connector.name
        entity = batch.entity
        accepted = batch.accepted
        clock = time.perf_counter()
        fed = self._provenance(ctx, entity, accepted, batch.unwritten) if batch.with_lineage else None
        if fed is not None and not self._lineage_with_state:
            self.lineage.record_values(fed)
            fed = None
        timings["lineage"] += time.perf_counter() - clock

        clock = time.perf_counter()
        removed = batch.removed
        with self.state.engine.begin() as conn:
            if fed is not None:  # the batch's lineage and its ledger entries commit together, or neither does
                started = time.perf_counter()
                self.lineage.record_values(fed, conn)
                timings["lineage"] += time.perf_counter() - started
                clock += time.perf_counter() - started
            if entity.ledger:
                self.state.write_ledger(conn, [
                    LedgerEntry(name, entity.name, it.record.key, it.uid, it.digest, it.stored, it.text)
                    if it.stored is not None and it.cls == it.stored_cls else
                    LedgerEntry(name, entity.name, it.record.key, it.uid, it.digest, it.payload())
                    for it in accepted
                ], ctx.run_id)
            if removed:
                self.state.drop_pending(conn, removed)
            self.state.add_pending(conn, batch.pending)
            self.quarantine.add(conn, batch.rejected, ctx.run_id)
            self.telemetry.append(conn, batch.readings, ctx.run_id)
            open_keys = ctx.open_quarantine.get(entity.name)
            if open_keys:
                taken = [it.record.key for it in accepted if it.record.key in open_keys]
                if taken:
                    self.quarantine.resolve(conn, name, entity.name, taken, ctx.run_id)
            if batch.batch_id is not None:
                self.state.close_batch(conn, batch.batch_id)
        timings["commit"] += time.perf_counter() - clock

    def _lineage_exists(self, run_id: str, system: str, keys: Sequence[str]) -> bool:
        """Whether a crashed attempt (run `run_id`) stored lineage for any of these record keys."""
        from sqlalchemy import select

        t = lineage_record_table
        with self.lineage.engine.connect() as conn:
            for chunk in batched(keys, 1_000):
                hit = conn.execute(select(t.c.id).where(
                    t.c.run_id == run_id, t.c.source_system == system, t.c.record_key.in_(chunk)).limit(1)).first()
                if hit is not None:
                    return True
        return False

    @staticmethod
    def _count(report: EntityReport, summary: WriteSummary) -> None:
        """Add what the graph did (twins or links created, updated, unchanged) to an entity's counts."""
        report.created += summary.created
        report.updated += summary.updated
        report.unchanged += summary.unchanged

    def _upsert_twins(self, ctx: _Run, entity: EntityMapping, items: list[_Item],
                      rejected: list[QuarantinedRow]) -> WriteSummary:
        """Write the items' twins; items the graph refuses are quarantined and the rest retried. Returns what the
        graph did with the twins it took."""
        todo = [it for it in items if it.accepted]
        while todo:
            twins = [Twin(it.uid, it.cls or "", it.props) for it in todo]
            try:
                return self.store.upsert_twins(twins, actor=self.actor, source=ctx.connector.name, run_id=ctx.run_id)
            except BatchRejected as exc:
                offenders = self._offending_twins(exc.violations, todo)
                for index, violations in offenders.items():
                    item = todo[index]
                    item.accepted = False
                    first = violations[0]
                    rejected.append(QuarantinedRow(
                        ctx.connector.name, entity.name, item.record.key, first.path.rsplit(".", 1)[-1]
                        if "." in first.path else None, f"graph:{first.rule}",
                        "; ".join(v.message for v in violations), dict(item.record.fields)))
                todo = [it for it in todo if it.accepted]
        return WriteSummary()

    @staticmethod
    def _offending_twins(violations: list[Violation], todo: list[_Item]) -> dict[int, list[Violation]]:
        found: dict[int, list[Violation]] = defaultdict(list)
        by_uid: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(todo):
            by_uid[item.uid].append(index)
        for violation in violations:
            match = _TWIN_PATH.match(violation.path)
            if match and int(match.group(1)) < len(todo):
                index = int(match.group(1))
                # the writer merges twins by uid: every item feeding that uid shares the fate
                for sibling in by_uid[todo[index].uid]:
                    found[sibling].append(violation)
                continue
            for uid, indexes in by_uid.items():  # a path without an index names the uid
                if f"({uid})" in violation.path or violation.path.startswith(uid):
                    for index in indexes:
                        found[index].append(violation)
        if not found:  # nothing attributable: refuse the whole batch rather than loop
            for index in range(len(todo)):
                found[index] = list(violations)
        return found

    def _upsert_links(self, ctx: _Run, entity: EntityMapping, items: list[_Item], rejected: list[QuarantinedRow],
                      pending: list[PendingLink], unwritten: set[tuple[str, str, str]]) -> WriteSummary:
        """Write the items' links; missing endpoints wait in `pending`, other refusals are quarantined. Returns what
        the graph did with the links it took."""
        system = ctx.connector.mapping.system
        todo: list[tuple[_Item, tuple[str, str, str, dict[str, Any]]]] = [(it, l) for it in items for l in it.links]
        while todo:
            links = [Link(t, s, d, p) for _, (t, s, d, p) in todo]
            try:
                return self.store.upsert_links(links, actor=self.actor, source=ctx.connector.name, run_id=ctx.run_id)
            except BatchRejected as exc:
                drop: set[int] = set()
                ends = [(s, t) for _, (t, s, _, _) in todo]
                for violation in exc.violations:
                    for index in self._offending_links(violation, ends):
                        if index in drop:
                            continue
                        drop.add(index)
                        item, (t, s, d, p) = todo[index]
                        unwritten.add((t, s, d))
                        rule = entity.rule_name(f"links.{t}")
                        if violation.rule == "missing-endpoint":
                            pending.append(PendingLink(t, s, d, ctx.connector.name, system, entity.name,
                                                       item.record.key, rule, p, violation.message))
                        else:
                            rejected.append(QuarantinedRow(ctx.connector.name, entity.name, item.record.key, t,
                                                           f"graph:{violation.rule}", violation.message,
                                                           dict(item.record.fields)))
                if not drop:
                    for item, (t, s, d, p) in todo:
                        unwritten.add((t, s, d))
                        rejected.append(QuarantinedRow(ctx.connector.name, entity.name, item.record.key, t,
                                                       "graph:links", str(exc), dict(item.record.fields)))
                    return WriteSummary()
                todo = [entry for i, entry in enumerate(todo) if i not in drop]
        return WriteSummary()

    @staticmethod
    def _offending_links(violation: Violation, ends: Sequence[tuple[str, str]]) -> list[int]:
        """Indexes of the links a violation names: `links[i]`, or (multiplicity, "<source uid>.<type>") every link
        of that type from that source; `ends` holds each link's (source uid, type)."""
        match = _LINK_PATH.match(violation.path)
        if match and int(match.group(1)) < len(ends):
            return [int(match.group(1))]
        return [i for i, (source, rel_type) in enumerate(ends) if violation.path == f"{source}.{rel_type}"]

    def _provenance(self, ctx: _Run, entity: EntityMapping, items: list[_Item],
                    unwritten: set[tuple[str, str, str]]) -> FedValues | None:
        """One provenance record per property value (and link) this batch wrote that differs from last time."""
        # (source field, mapping rule, transform) of each property and link type, worked out once per batch
        meta = {rule.name: (",".join(rule.source_fields) or None, entity.rule_name(rule.name), rule.transform_text)
                for rule in entity.properties}
        link_meta: dict[str, tuple[str | None, str, str | None]] = {}
        values: list[FedValue] = []
        add = values.append
        for item in items:
            uid = item.uid
            key = item.record.key
            old = item.old
            old_props: Mapping[str, Any] = old.payload.get("p", {}) if old is not None and old.payload.get("u") == uid \
                else {}
            for prop, value in item.props.items():
                if value is None or (prop in old_props and old_props[prop] == value):
                    continue
                add(FedValue(uid, prop, value, key, *meta[prop]))
            if not item.links:
                continue
            old_links = {(t, s, d): p for t, s, d, p in old.payload.get("l", [])} if old is not None else {}
            for t, s, d, p in item.links:
                if old_links.get((t, s, d)) == p or (t, s, d) in unwritten:
                    continue
                about = link_meta.get(t)
                if about is None:
                    link_rule = item.link_rules.get(t)
                    about = link_meta[t] = (
                        ",".join(link_rule.target_fields) if link_rule else None, entity.rule_name(f"links.{t}"),
                        f"target:{link_rule.target_text}" if link_rule else None)
                add(FedValue(s, f"link:{t}", {"target": d, **p}, key, *about))
        if not values:
            return None
        return FedValues(ctx.run_id, ctx.connector.mapping.system, entity.name, values, self.keep_values)

    # --------------------------------------------------------------------------------------------- delete
    def _delete(self, ctx: _Run, entity: EntityMapping, keys: Sequence[str], report: EntityReport) -> None:
        """Remove what deleted source records fed (see the deletion rule in the module docstring); counts and
        names the twins and links actually removed (a twin other records still feed stays, and is not counted)."""
        name = ctx.connector.name
        if ctx.committer is not None:  # decide on committed ledger entries only
            ctx.committer.drain()
        entries = self.state.ledger(name, entity.name, keys)
        if not entries:
            return
        if not ctx.dry_run:
            self._allow_deletion(ctx, entity, len(entries), report)
        gone = set(entries)
        links = [(t, s, d) for e in entries.values() for t, s, d, _ in e.payload.get("l", [])]
        twin_uids = {e.uid for e in entries.values() if entity.link is None}
        contributors = self.state.entries_for_uids(twin_uids)
        doomed = sorted(uid for uid in twin_uids if all(  # twins no other record contributes to
            e.connector == name and e.entity == entity.name and e.record_key in gone
            for e in contributors.get(uid, [])))
        doomed_set = set(doomed)
        fed = self._links_fed_by_others(links, {(name, entity.name, key) for key in gone})
        links = [link for link in links if link not in fed]  # another record still produces these: they stay
        surviving_links = sorted(set(link for link in links if link[1] not in doomed_set and link[2] not in doomed_set))
        if ctx.dry_run:  # what would go: the doomed twins that exist, and the links of theirs that exist
            present = self._classes(doomed) if doomed else {}
            report.deleted += len(present) + self._existing_links(surviving_links)
            for uid in list(present)[:EXAMPLES]:
                report.example("delete", uid)
            return
        for uid in doomed[:EXAMPLES]:
            report.example("delete", uid)
        for t, s, d in surviving_links[:max(0, EXAMPLES - len(doomed))]:
            report.example("delete", f"link {t} {s} -> {d}")
        if surviving_links:
            report.deleted += self.store.delete_links(surviving_links, actor=self.actor, source=name,
                                                      run_id=ctx.run_id).deleted
        if doomed:
            report.deleted += self.store.delete_twins(doomed, actor=self.actor, source=name, run_id=ctx.run_id).deleted
            self.identity.forget(doomed)
        merged_away = [e.payload["n"] for e in entries.values() if e.payload.get("n") not in (None, e.uid)]
        if merged_away:
            self.identity.forget_source(merged_away)
        with self.state.engine.begin() as conn:
            self.state.drop_ledger(conn, name, entity.name, list(entries))
            self.state.drop_pending(conn, links)
        ctx.dropped[entity.name] += len(entries)

    def _existing_links(self, links: Sequence[tuple[str, str, str]]) -> int:
        """How many of these links (type, source uid, target uid) the graph holds."""
        found = 0
        for chunk in batched(links, 10_000):
            rows = self.store.backend.read(
                "UNWIND $links AS l MATCH (a:Twin {uid: l[1]})-[r]->(b:Twin {uid: l[2]}) WHERE type(r) = l[0] "
                "RETURN count(r)", {"links": [list(link) for link in chunk]})
            found += int(rows[0][0]) if rows else 0
        return found

    def _allow_deletion(self, ctx: _Run, entity: EntityMapping, count: int, report: EntityReport) -> None:
        """Raise MassDeletion, before anything is deleted, when deleting `count` more records would take the run past
        its share of the entity's records (and past the floor of deletions always allowed), or when a full run read
        none of them; every run kind's deletions pass here."""
        known, done = ctx.deleting.get(entity.name) or (len(self.state.ledger_keys(ctx.connector.name, entity.name)), 0)
        limit = self.deletion_limit if ctx.allow_deletions is None else ctx.allow_deletions
        share = (done + count) / max(known, 1)
        emptied = report.read == 0 and ctx.mode == "full" and (ctx.allow_deletions is None or ctx.allow_deletions < 1)
        if (share > limit and done + count > self.deletion_floor) or emptied:
            why = (f"read 0 rows from a source that had {known:,} records" if report.read == 0 and ctx.mode == "full"
                   else f"would delete {done + count:,} of its {known:,} records ({share:.0%})")
            raise MassDeletion(
                f"{ctx.connector.name}/{entity.name}: the run {why}, more than the {limit:.0%} a run may delete; "
                f"nothing was deleted. If the deletions are intended, run again with --allow-deletions "
                f"{math.ceil(share * 100)}% (REST: allow_deletions) or raise TWIN_SYNC_MAX_DELETE_SHARE")
        ctx.deleting[entity.name] = (known, done + count)

    def _links_fed_by_others(self, links: Sequence[tuple[str, str, str]],
                             leaving: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        """Those of `links` (type, source, target) that a committed ledger entry other than the `leaving` ones
        (connector, entity, record key) still lists: another record, source or association row produces them."""
        wanted = set(links)
        if not wanted:
            return set()
        feeders = {s for _, s, _ in wanted} | {f"link:{t}:{s}->{d}" for t, s, d in wanted}
        fed: set[tuple[str, str, str]] = set()
        for entries in self.state.entries_for_uids(feeders).values():
            for entry in entries:
                if (entry.connector, entry.entity, entry.record_key) not in leaving:
                    fed.update(link for t, s, d, _ in entry.payload.get("l", []) if (link := (t, s, d)) in wanted)
        return fed

    # -------------------------------------------------------------------------------------------- pending
    def _retry_pending(self, ctx: _Run) -> None:
        """Write pending links (of every connector) whose endpoints exist now."""
        pending = self.state.pending()
        if not pending:
            return
        clock = time.perf_counter()
        canonical = self.identity.canonical_of({p.source for p in pending} | {p.target for p in pending}) \
            if ctx.has_merges else {}
        todo = [(p, Link(p.type, canonical.get(p.source, p.source), canonical.get(p.target, p.target),
                         dict(p.properties))) for p in pending]
        quarantined: list[QuarantinedRow] = []
        still: set[int] = set()
        while todo:
            try:
                self.store.upsert_links([link for _, link in todo], actor=self.actor, source=ctx.connector.name,
                                        run_id=ctx.run_id)
                break
            except BatchRejected as exc:
                drop: set[int] = set()
                ends = [(link.source, link.type) for _, link in todo]
                for violation in exc.violations:
                    for index in self._offending_links(violation, ends):
                        if index in drop:
                            continue
                        drop.add(index)
                        entry, _ = todo[index]
                        if violation.rule == "missing-endpoint":
                            still.add(id(entry))
                        else:
                            quarantined.append(QuarantinedRow(entry.connector, entry.entity, entry.record_key,
                                                              entry.type, f"graph:{violation.rule}",
                                                              violation.message, {"link": [entry.type, entry.source,
                                                                                           entry.target]}))
                if not drop:
                    raise
                todo = [entry for i, entry in enumerate(todo) if i not in drop]
        written = [entry for entry, _ in todo]
        if written:
            records = [ProvenanceRecord.of(
                link.source, f"link:{link.type}", {"target": link.target, **link.properties},
                source_system=entry.system, source_object=entry.entity, record_key=entry.record_key,
                run_id=ctx.run_id, mapping_rule=entry.rule, transform="pending link resolved",
                keep_value=self.keep_values) for entry, link in todo]
            self.lineage.record(records)
        with self.state.engine.begin() as conn:
            done = [(p.type, p.source, p.target) for p in pending if id(p) not in still]
            self.state.drop_pending(conn, done)
            self.quarantine.add(conn, quarantined, ctx.run_id)
        ctx.report.timings["pending"] += time.perf_counter() - clock

    # -------------------------------------------------------------------------------------------- unmerge
    def unmerge(self, natural_uid: str, *, label: str = "unmerge") -> str:
        """Split a merged record back into its own twin (rebuilt from its ledger payload); returns its uid.

        The merge is ended and the pair blocked from merging again; the record's links move to the restored twin.
        Values the record had written onto the canonical twin stay there until their owning source writes again.
        """
        link = self.identity.unmerge(natural_uid)
        entries = self.state.entries_for_uids([link.canonical_uid]).get(link.canonical_uid, [])
        mine = [e for e in entries if e.payload.get("n") == natural_uid]
        run = self.lineage.start_run(RunKind.CONNECTOR, label)
        try:
            for entry in mine:
                payload = entry.payload
                cls = payload.get("nc") or payload.get("c") or "Entity"
                props = {k: v for k, v in payload.get("p", {}).items() if v is not None}
                self.store.upsert_twins([Twin(natural_uid, cls, props)], actor=self.actor, source=label,
                                        run_id=run.run_id)
                moved = [(t, natural_uid if s == link.canonical_uid else s, d, p) for t, s, d, p in payload.get("l", [])]
                old_links = [(t, s, d) for t, s, d, _ in payload.get("l", [])]
                if old_links:
                    self.store.delete_links(old_links, actor=self.actor, source=label, run_id=run.run_id)
                if moved:
                    self.store.upsert_links([Link(t, s, d, p) for t, s, d, p in moved], actor=self.actor,
                                            source=label, run_id=run.run_id)
                self.lineage.record([ProvenanceRecord.of(
                    natural_uid, prop, value, source_system=entry.connector, source_object=entry.entity,
                    record_key=entry.record_key, run_id=run.run_id, mapping_rule="unmerge",
                    transform="restored from the sync ledger", keep_value=self.keep_values)
                    for prop, value in props.items()])
                new_payload = {**payload, "u": natural_uid, "c": cls, "l": sorted([list(m) for m in moved])}
                with self.state.engine.begin() as conn:
                    self.state.write_ledger(conn, [LedgerEntry(entry.connector, entry.entity, entry.record_key,
                                                               natural_uid, _digest(new_payload), new_payload)],
                                            run.run_id)
            self.lineage.finish_run(run.run_id, RunStatus.COMPLETED, {"unmerged": len(mine)})
        except BaseException as exc:
            self.lineage.finish_run(run.run_id, RunStatus.FAILED, {}, error=f"{type(exc).__name__}: {exc}")
            raise
        return natural_uid
