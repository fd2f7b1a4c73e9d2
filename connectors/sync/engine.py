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
from connectors.quarantine import QuarantinedRow
from connectors.source import (
    AcknowledgingSource,
    Source,
    SourceObjectMissing,
    SourceRecord,
    SplittableSource,
    UnknownSourceField,
    Watermark,
    lists_keys,
    splits,
)
from connectors.sync.committer import BatchCommitter
from connectors.sync.context import RunContext
from connectors.sync.deletions import Deletions, KeyCensus
from connectors.sync.identities import canonical_links, resolve_identities
from connectors.sync.mapper import MappedItem, MappedLink, record_digest
from connectors.sync.pacing import CollectorPacing
from connectors.sync.report import Connector, EntityReport, Mode, SyncReport
from connectors.sync.screening import RecordScreen, Refusal, Screened
from connectors.sync.side_queries import ask_aside
from connectors.sync.stores import SyncStores
from connectors.sync.workers import KeySlice, SlicedRead, key_slices, slice_tasks, worker_pool
from connectors.sync.writer import GraphWriter
from connectors.sync_state import LedgerEntry, payload_text
from governance.lineage import DatasetRef, LineageStore, ProvenanceRecord, RunKind, RunStatus
from graph.model import Link, Twin
from graph.store import GraphStore

DEFAULT_LIMITS = SizeLimits()
PARALLEL_MIN_ROWS = 10_000  # records an entity's read must expect before it is split among worker processes

Page = tuple[list[SourceRecord], list[Screened]]  # a page as the source handed it out, and its records screened


def _marking_last(pages: Iterable[Page], look_ahead: bool) -> Iterator[tuple[Page, bool]]:
    """Each page with whether it is known to be the last; with `look_ahead` the page after it is read before it is
    handed on, so the last one is known (a source that ends on a short page reads nothing more for that)."""
    if not look_ahead:
        for each in pages:
            yield each, False
        return
    remaining = iter(pages)
    page: Page | None = next(remaining, None)
    while page is not None:
        following: Page | None = next(remaining, None)
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
        workers: int = 0,
        parallel_min_rows: int = PARALLEL_MIN_ROWS,
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
        # a read expecting at least `parallel_min_rows` records of a source that splits by key ranges is screened and
        # mapped by `workers` worker processes (0: always in this process; connectors/sync/workers.py)
        self.workers = workers
        self.parallel_min_rows = parallel_min_rows
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
        screen = RecordScreen(entity, ctx.connector.mapping.system, self.limits, f"{ctx.connector.name}/{entity.name}")
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
        try:
            self._check_file_size(ctx, entity, source)
            pages = self._screened_pages(ctx, entity, source, since, screen)
            for (page, screened), last in _marking_last(pages, counts_early):
                report.read += len(page)
                for record in page:
                    if record.watermark is not None and (newest is None or record.watermark > newest):
                        newest = record.watermark
                # the last page of a read known to be over carries the entity's new watermark into its commit (one
                # transaction less), unless it holds deleted records (their removal follows its commit)
                mark = None
                if last and (since is None or newest != since.value) and not any(r.deleted for r in page):
                    mark = self._new_watermark(ctx, entity, newest)
                self._page(ctx, entity, screened, seen, report, survey if last and counts_early else None, mark)
                folded = folded or mark is not None
                if acknowledging:
                    assert ctx.committer is not None and isinstance(source, AcknowledgingSource)
                    ctx.committer.submit(partial(source.acknowledge, page))
                if ctx.progress is not None:
                    ctx.progress(entity.name, report.read, total)
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

    def _screened_pages(
        self, ctx: RunContext, entity: EntityMapping, source: Source, since: Watermark | None, screen: RecordScreen
    ) -> Iterator[Page]:
        """The entity's pages in key order, screened: by worker processes when the read is large enough (a full read
        of a large source from the start; an incremental one once its first page came back full and the count of
        changed records is large too), else in this process."""
        timings = ctx.report.timings
        splittable = self.workers > 0 and splits(source)
        if splittable and since is None:
            assert isinstance(source, SplittableSource)
            clock = time.perf_counter()
            slices = self._slices(source, None, None, 0)
            timings["read"] += time.perf_counter() - clock
            if slices is not None:
                yield from self._parallel_pages(ctx, entity, source, None, slices)
                return
        reader = iter(source.read(since))
        first = True
        while True:
            clock = time.perf_counter()
            page = next(reader, None)
            timings["read"] += time.perf_counter() - clock
            if page is None:
                return
            clock = time.perf_counter()
            screened = [screen.screen(record) for record in page]
            timings["map"] += time.perf_counter() - clock
            yield page, screened
            if first and splittable and since is not None and page and len(page) >= screen_page_size(source):
                assert isinstance(source, SplittableSource)
                clock = time.perf_counter()
                slices = self._slices(source, since, _integer_key(page[-1].key), len(page))
                timings["read"] += time.perf_counter() - clock
                if slices is not None:
                    close = getattr(reader, "close", None)
                    if callable(close):
                        close()
                    yield from self._parallel_pages(ctx, entity, source, since, slices)
                    return
            first = False

    def _slices(
        self, source: SplittableSource, since: Watermark | None, after: int | None, done: int
    ) -> list[KeySlice] | None:
        """The key ranges worker processes read of a source (those above key `after`, when `done` records up to it
        were read already), or None when the read does not expect `parallel_min_rows` records (or keys are not
        integers)."""
        if after is None and done:
            return None
        count, span = source.key_census()
        if span is None:
            return None
        expected = count if since is None else source.count(since)
        if expected < self.parallel_min_rows:
            return None
        first, last = span
        if after is not None:
            first = after + 1
        return key_slices(first, max(first, last), expected - done, source.page_size, open_start=after is None)

    def _parallel_pages(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        source: SplittableSource,
        since: Watermark | None,
        slices: list[KeySlice],
    ) -> Iterator[Page]:
        """The pages worker processes screen of these key ranges, in key order."""
        timings = ctx.report.timings
        tasks = slice_tasks(
            source,
            entity,
            ctx.connector.mapping.system,
            self.limits,
            f"{ctx.connector.name}/{entity.name}",
            since,
            slices,
        )
        pages = iter(SlicedRead(worker_pool(self.workers), tasks, source.page_size, self.workers + 1))
        while True:
            clock = time.perf_counter()
            screened = next(pages, None)
            timings["read"] += time.perf_counter() - clock
            if screened is None:
                return
            yield [each.record for each in screened], screened

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
        screened: list[Screened],
        seen: set[str],
        report: EntityReport,
        survey: Callable[[int], None] | None = None,
        watermark: Watermark | None = None,
    ) -> None:
        """Check one screened page for repeated keys and against the ledger, and write it; `survey` (the entity's
        last page of an incremental run) is handed what the deletion check will expect of the source's count once
        the page is written, before the graph writes it, so the count is asked beside the write; `watermark` is
        committed with the page."""
        timings = ctx.report.timings
        clock = time.perf_counter()
        name = ctx.connector.name
        rejected: list[QuarantinedRow] = []
        deleted: list[str] = []
        items: list[MappedItem] = []

        def reject(record: SourceRecord, refusal: Refusal) -> None:
            fields = refusal.fields if refusal.fields is not None else dict(record.fields)
            key = refusal.key if refusal.key is not None else record.key
            rejected.append(
                QuarantinedRow(name, entity.name, key, refusal.field, refusal.rule, refusal.message, fields)
            )
            report.example("quarantine", refusal.example or f"{record.key}: {refusal.message}")

        for each in screened:
            record = each.record
            if record.deleted:
                deleted.append(record.key)
                continue
            if each.early is not None:  # an unusable key or source value, before the key is checked for repeats
                reject(record, each.early)
                continue
            if record.key in seen:
                message = (
                    f"key {excerpt(record.key)} occurs more than once in {entity.name}; the first occurrence was taken"
                )
                reject(record, Refusal(",".join(entity.key) or None, "duplicate-key", message))
                continue
            seen.add(record.key)  # an oversized or refused record still exists in the source: its twin is not deleted
            if each.refusal is not None:
                reject(record, each.refusal)
                continue
            assert each.item is not None
            items.append(each.item)
        timings["map"] += time.perf_counter() - clock

        clock = time.perf_counter()
        if entity.identity is not None and items:
            resolve_identities(self.stores, ctx, entity, items)
        if ctx.has_merges and items:
            canonical_links(self.stores, items)
        timings["identity"] += time.perf_counter() - clock

        clock = time.perf_counter()
        if entity.ledger:
            # screening digested each record's payload as the record gives it: identity resolution may have changed
            # it (merged endpoints of its links clear the digest, connectors/sync/identities.py)
            screened_digest = entity.identity is None
            for item in items:
                if screened_digest and item.text is not None:
                    continue
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


def screen_page_size(source: Source) -> int:
    """The records a full page of the source holds (its `page_size`; 5,000 when it names none)."""
    size = getattr(source, "page_size", None)
    return size if isinstance(size, int) and size > 0 else 5_000


def _integer_key(key: str) -> int | None:
    """A record key as the integer its one key column holds (None for any other key)."""
    try:
        return int(key)
    except ValueError:
        return None
