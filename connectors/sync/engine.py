"""The sync engine's run loop: a run over a connector's entities, each read page by page, mapped, written and
committed, then checked for deletions (see the guarantees in connectors/sync/__init__.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, wait
from datetime import datetime
from functools import partial
from pathlib import Path

from connectors.errors import MassDeletion, SyncError
from connectors.limits import SizeLimits, excerpt
from connectors.mapping import EntityMapping
from connectors.quarantine import INVALID_FIELD, QuarantinedRow
from connectors.source import (
    AcknowledgingSource,
    Source,
    SourceObjectMissing,
    SourceRecord,
    UnknownSourceField,
    Watermark,
    lists_keys,
)
from connectors.sync.committer import BatchCommitter
from connectors.sync.context import RunContext
from connectors.sync.deletions import Deletions, KeyCensus
from connectors.sync.identities import canonical_links, resolve_identities
from connectors.sync.mapper import MappedItem, MappedLink, RecordMapper, RecordRejected, record_digest
from connectors.sync.pacing import CollectorPacing
from connectors.sync.report import Connector, EntityReport, Mode, SyncReport
from connectors.sync.side_queries import ask_aside
from connectors.sync.stores import SyncStores
from connectors.sync.writer import GraphWriter
from connectors.sync_state import LedgerEntry, payload_text
from governance.lineage import DatasetRef, LineageStore, ProvenanceRecord, RunKind, RunStatus
from graph.model import Link, Twin
from graph.store import GraphStore

DEFAULT_LIMITS = SizeLimits()


def _marking_last(pages: Iterable[list[SourceRecord]], look_ahead: bool) -> Iterator[tuple[list[SourceRecord], bool]]:
    """Each page with whether it is known to be the last; with `look_ahead` the page after it is read before it is
    handed on, so the last one is known (a source that ends on a short page reads nothing more for that)."""
    if not look_ahead:
        for each in pages:
            yield each, False
        return
    remaining = iter(pages)
    page: list[SourceRecord] | None = next(remaining, None)
    while page is not None:
        following: list[SourceRecord] | None = next(remaining, None)
        yield page, following is None
        page = following


class SyncEngine:
    """Runs connectors into one twin graph, keeping sync state, quarantine, identities, telemetry and lineage."""

    def __init__(
        self,
        store: GraphStore,
        state_url: str,
        *,
        lineage: LineageStore | None = None,
        stores: SyncStores | None = None,
        actor: str = "connector",
        keep_values: bool = True,
        limits: SizeLimits = DEFAULT_LIMITS,
        deletion_limit: float = 0.2,
        deletion_floor: int = 10,
    ) -> None:
        # the stores are wired once (a caller running many syncs may hand in the ones it holds)
        self.stores = stores if stores is not None else SyncStores.open(store, state_url, lineage)
        self.store = store
        self.ontology = store.ontology
        self.state = self.stores.state
        self.quarantine = self.stores.quarantine
        self.identity = self.stores.identity
        self.telemetry = self.stores.telemetry
        self.lineage = self.stores.lineage
        self.actor = actor
        self.keep_values = keep_values
        self.limits = limits
        self.deletions = Deletions(self.stores, actor, deletion_limit, deletion_floor)
        self.writer = GraphWriter(self.stores, actor, keep_values)

    @property
    def deletion_limit(self) -> float:
        """The share of an entity's records a run may delete unless allowed more."""
        return self.deletions.deletion_limit

    @property
    def deletion_floor(self) -> int:
        """The deletions a run may always make in an entity (small sources)."""
        return self.deletions.deletion_floor

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
                RunKind.CONNECTOR,
                connector.name,
                run_id=run_id,
                inputs=[DatasetRef(connector.mapping.system, e.name) for e in chosen],
                outputs=[DatasetRef("twin", self.store.url)],
            )
            self.state.start_run(run_id, connector.name, mode, resumed=bool(report.resumed_from))
        ctx = RunContext(
            connector,
            mode,
            dry_run,
            run_id,
            report,
            progress,
            self.identity.has_merges(),
            self.quarantine.open_keys(connector.name),
            None if dry_run else BatchCommitter(),
            allow_deletions=allow_deletions,
        )
        # one query each per run: the watermarks to read from, and the ledger's size for the deletion checks
        if mode == "incremental":
            ctx.watermarks = self.state.watermarks(connector.name)
        ctx.ledger_counts = self.state.ledger_entity_counts(connector.name)
        try:
            try:
                with CollectorPacing():
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
                                f"source field {exc.field!r}: {exc}"
                            ) from exc
                    if ctx.committer is not None:
                        ctx.committer.drain()
                    if not dry_run:
                        self.writer.retry_pending(ctx)
                        self.state.clear_journal(connector.name)
                    if missing:
                        raise SyncError(
                            f"{connector.name}: the source lacks what these entities read (the others "
                            f"were synced; mark an entity `optional: true` to skip it): "
                            f"{'; '.join(missing)}"
                        )
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

    def _finish(self, ctx: RunContext) -> None:
        report = ctx.report
        counts = report.counts
        counts["pending_links"] = self.state.pending_count(ctx.connector.name)
        status = RunStatus.COMPLETED if report.status == "completed" else RunStatus.FAILED
        self.lineage.finish_run(ctx.run_id, status, counts, error=report.error)
        self.state.finish_run(ctx.run_id, report.status, counts, report.timings, report.error)

    # --------------------------------------------------------------------------------------------- entity
    def _sync_entity(self, ctx: RunContext, entity: EntityMapping) -> None:
        report = EntityReport(entity.name)
        ctx.report.entities.append(report)
        since = ctx.watermarks.get(entity.name) if ctx.mode == "incremental" else None
        try:
            source = ctx.connector.open_source(entity)
        except Exception as exc:
            raise SyncError(f"{ctx.connector.name}/{entity.name}: cannot open the source: {exc}") from exc
        total = None
        counter = getattr(source, "count", None)
        if ctx.progress is not None and callable(counter):
            total = counter(since)
        mapper = RecordMapper(entity, ctx.connector.mapping.system)
        seen: set[str] = set()
        newest: datetime | None = since.value if since else None
        timings = ctx.report.timings
        checks_deletions = entity.ledger and (ctx.mode == "full" or lists_keys(source))
        # an incremental deletion check counts the source once its read is over: the count (and key span) is asked
        # while the last page is written (the page after it is read first, so the read is known to be over)
        counts_early = checks_deletions and ctx.mode == "incremental" and callable(counter)
        counted: Future[KeyCensus | None] | None = None

        def survey(expected: int) -> None:  # the last page's statuses are known: the census goes beside its write
            nonlocal counted
            size = ctx.ledger_size(entity.name)
            counted = ask_aside(partial(self.deletions.survey, ctx, entity, source, expected, size))

        # a source whose server keeps what was read (MQTT) is told each page is safe only after the page's commit is
        # durable: the acknowledgement is committer work queued behind that commit (a dry run acknowledges nothing)
        acknowledging = isinstance(source, AcknowledgingSource) and ctx.committer is not None
        folded = False  # whether the watermark went with the last page's commit
        clock = time.perf_counter()
        try:
            self._check_file_size(ctx, entity, source)
            for page, last in _marking_last(source.read(since), counts_early):
                timings["read"] += time.perf_counter() - clock
                report.read += len(page)
                for record in page:
                    if record.watermark is not None and (newest is None or record.watermark > newest):
                        newest = record.watermark
                # the last page of a read known to be over carries the entity's new watermark into its commit (one
                # transaction less), unless it holds deleted records (their removal follows its commit)
                mark = None
                if last and (since is None or newest != since.value) and not any(r.deleted for r in page):
                    mark = self._new_watermark(ctx, entity, newest)
                self._page(ctx, entity, mapper, page, seen, report, survey if last and counts_early else None, mark)
                folded = folded or mark is not None
                if acknowledging:
                    assert ctx.committer is not None and isinstance(source, AcknowledgingSource)
                    ctx.committer.submit(partial(source.acknowledge, page))
                if ctx.progress is not None:
                    ctx.progress(entity.name, report.read, total)
                clock = time.perf_counter()
            if checks_deletions:
                # the deletion set: ledger keys the source no longer has (connectors/sync/deletions.py)
                clock = time.perf_counter()
                census = counted.result() if counted is not None else None
                gone = self.deletions.gone_keys(ctx, entity, source, seen, report, census)
                timings["deletions"] += time.perf_counter() - clock
                if gone:
                    self.deletions.delete(ctx, entity, gone, report)
            if acknowledging:  # the acknowledgements go out before the source's session is closed
                assert ctx.committer is not None
                ctx.committer.drain()
        finally:
            if counted is not None:  # the census is over before the source is closed
                wait([counted])
            closer = getattr(source, "close", None)
            if callable(closer):
                closer()
        final = self._new_watermark(ctx, entity, newest) if since is None or newest != since.value else None
        if final is not None and not folded:  # an unchanged watermark is not written again
            assert ctx.committer is not None
            ctx.committer.submit(lambda: self._commit_watermark(ctx, entity, final))

    @staticmethod
    def _new_watermark(ctx: RunContext, entity: EntityMapping, newest: datetime | None) -> Watermark | None:
        """The watermark a (non-dry) run commits for an entity with a watermark column after reading up to `newest`."""
        if ctx.dry_run or newest is None or entity.watermark is None:
            return None
        return Watermark(newest)

    def _check_file_size(self, ctx: RunContext, entity: EntityMapping, source: Source) -> None:
        """Refuse a source file larger than the limit before it is read."""
        path = getattr(source, "path", None)
        if isinstance(path, Path) and path.is_file() and (size := path.stat().st_size) > self.limits.file_bytes:
            raise SyncError(
                f"{ctx.connector.name}/{entity.name}: the file {path.name} is {size:,} bytes, more than "
                f"the {self.limits.file_bytes:,} a source file may have (TWIN_SYNC_MAX_FILE_BYTES)"
            )

    def _commit_watermark(self, ctx: RunContext, entity: EntityMapping, mark: Watermark) -> None:
        """Advance an entity's watermark (submitted after its batches, so committed only after they are)."""
        with self.state.engine.begin() as conn:
            self.state.commit_watermark(conn, ctx.connector.name, entity.name, mark, ctx.run_id)

    # ----------------------------------------------------------------------------------------------- page
    def _page(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        mapper: RecordMapper,
        page: list[SourceRecord],
        seen: set[str],
        report: EntityReport,
        survey: Callable[[int], None] | None = None,
        watermark: Watermark | None = None,
    ) -> None:
        """Map, check against the ledger and write one page; `survey` (the entity's last page of an incremental
        run) is handed what the deletion check will expect of the source's count once the page is written, before
        the graph writes it, so the count is asked beside the write; `watermark` is committed with the page."""
        timings = ctx.report.timings
        clock = time.perf_counter()
        name = ctx.connector.name
        rejected: list[QuarantinedRow] = []
        deleted: list[str] = []
        items: list[MappedItem] = []

        def reject(record: SourceRecord, field_name: str | None, rule: str, message: str) -> None:
            rejected.append(
                QuarantinedRow(name, entity.name, record.key, field_name, rule, message, dict(record.fields))
            )
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
                reject(
                    record,
                    ",".join(entity.key) or None,
                    "duplicate-key",
                    f"key {excerpt(record.key)} occurs more than once in {entity.name}; the first occurrence was taken",
                )
                continue
            seen.add(record.key)  # an oversized record still exists in the source: its twin is not deleted
            oversized = self.limits.oversized(fields)
            if oversized is not None:
                rejected.append(
                    QuarantinedRow(
                        name,
                        entity.name,
                        record.key[:512],
                        oversized[0],
                        "size",
                        oversized[1],
                        self.limits.trimmed(fields),
                    )
                )
                report.example("quarantine", f"{excerpt(record.key)}: {oversized[1]}")
                continue
            try:
                items.append(mapper.map(record))
            except RecordRejected as exc:
                reject(record, exc.field, exc.rule, exc.message)
        timings["map"] += time.perf_counter() - clock

        clock = time.perf_counter()
        if entity.identity is not None and items:
            resolve_identities(self.stores, ctx, entity, items)
        if ctx.has_merges and items:
            canonical_links(self.stores, items)
        timings["identity"] += time.perf_counter() - clock

        clock = time.perf_counter()
        if entity.ledger:
            for item in items:
                item.stored = item.payload()
                item.stored_cls = item.cls
                item.text = payload_text(item.stored)
                item.digest = record_digest({}, item.text)
            same: set[str] = set()
            if ctx.dry_run:  # the plan compares the links of unchanged records too: every entry with its payload
                ledger = self.state.ledger(name, entity.name, [it.record.key for it in items])
            else:  # an unchanged record's old payload is never looked at: not parsed
                ledger, same = self.state.ledger_changes(name, entity.name, {it.record.key: it.digest for it in items})
            for item in items:
                item.old = ledger.get(item.record.key)
                if item.record.key in same:
                    item.status = "unchanged"
                elif item.old is None:
                    item.status = "created"
                elif item.old.digest == item.digest:
                    item.status = "unchanged"
                else:
                    item.status = "updated"
        else:
            for item in items:
                item.status = "updated"
        timings["ledger"] += time.perf_counter() - clock
        if survey is not None:  # the ledger keys and unledgered records once this page is written (if all is taken)
            unledgered = len(ctx.open_quarantine.get(entity.name, ())) + report.quarantined + len(rejected)
            created = sum(1 for item in items if item.status == "created") if entity.ledger else 0
            survey(ctx.ledger_size(entity.name) + unledgered + created)

        if ctx.dry_run:
            self.writer.plan(ctx, entity, items, rejected, report)
        else:
            self.writer.write(ctx, entity, items, rejected, report, watermark)
        if deleted:
            self.deletions.delete(ctx, entity, deleted, report)

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
                self.store.upsert_twins(
                    [Twin(natural_uid, cls, props)], actor=self.actor, source=label, run_id=run.run_id
                )
                stored = [MappedLink(t, s, d, p) for t, s, d, p in payload.get("l", [])]
                moved = [
                    lk.moved(natural_uid if lk.source == link.canonical_uid else lk.source, lk.target) for lk in stored
                ]
                if stored:
                    self.store.delete_links(
                        [lk.key for lk in stored], actor=self.actor, source=label, run_id=run.run_id
                    )
                if moved:
                    self.store.upsert_links(
                        [Link(lk.type, lk.source, lk.target, lk.properties) for lk in moved],
                        actor=self.actor,
                        source=label,
                        run_id=run.run_id,
                    )
                self.lineage.record(
                    [
                        ProvenanceRecord.of(
                            natural_uid,
                            prop,
                            value,
                            source_system=entry.connector,
                            source_object=entry.entity,
                            record_key=entry.record_key,
                            run_id=run.run_id,
                            mapping_rule="unmerge",
                            transform="restored from the sync ledger",
                            keep_value=self.keep_values,
                        )
                        for prop, value in props.items()
                    ]
                )
                new_payload = {**payload, "u": natural_uid, "c": cls, "l": sorted([lk.row() for lk in moved])}
                with self.state.engine.begin() as conn:
                    self.state.write_ledger(
                        conn,
                        [
                            LedgerEntry(
                                entry.connector,
                                entry.entity,
                                entry.record_key,
                                natural_uid,
                                record_digest(new_payload),
                                new_payload,
                            )
                        ],
                        run.run_id,
                    )
            self.lineage.finish_run(run.run_id, RunStatus.COMPLETED, {"unmerged": len(mine)})
        except BaseException as exc:
            self.lineage.finish_run(run.run_id, RunStatus.FAILED, {}, error=f"{type(exc).__name__}: {exc}")
            raise
        return natural_uid
