"""Making the batches the graph has taken durable, in order, on a background thread: their lineage, ledger entries,
pending links, quarantine rows and telemetry."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.mapping import EntityMapping
from connectors.quarantine import QuarantinedRow
from connectors.source import Watermark
from connectors.sync.mapper import LinkKey, MappedItem
from connectors.sync_state import LedgerEntry, PendingLink
from connectors.telemetry import Reading
from governance.lineage import LineageBatch, PropertyLineage, RecordLineage

if TYPE_CHECKING:
    from connectors.sync.context import RunContext
    from connectors.sync.stores import SyncStores


@dataclass
class Batch:
    """A page the graph has taken, waiting to be made durable: what the ledger, lineage and side tables get."""

    entity: EntityMapping
    accepted: list[MappedItem]  # changed items the graph took (ledger entries, lineage)
    unwritten: set[LinkKey]  # links not written (no lineage for them)
    with_lineage: bool  # False when a crashed attempt at this batch already stored its lineage
    removed: list[LinkKey]  # links the records no longer produce (dropped from pending)
    pending: list[PendingLink]
    rejected: list[QuarantinedRow]
    readings: list[Reading]
    batch_id: str | None  # the batch journal entry to close (lineage in another database only)
    watermark: Watermark | None = None  # the entity's new watermark, when this is its last page (committed with it)

    def empty(self) -> bool:
        """Whether committing the batch would store nothing (every record of the page was unchanged)."""
        return not (
            self.accepted
            or self.removed
            or self.pending
            or self.rejected
            or self.readings
            or self.batch_id
            or self.watermark
        )


class BatchCommitter:
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


def commit_batch(stores: SyncStores, ctx: RunContext, batch: Batch, keep_values: bool) -> None:
    """Make a batch the graph has taken durable: its lineage, then in one transaction its ledger entries, pending
    links, quarantine rows and readings (with lineage too when it lives in the same database)."""
    timings = ctx.report.timings
    name = ctx.connector.name
    entity = batch.entity
    accepted = batch.accepted
    state = stores.state
    clock = time.perf_counter()
    fed = provenance(ctx, entity, accepted, batch.unwritten, keep_values) if batch.with_lineage else None
    if fed is not None and not stores.lineage_with_state:
        stores.lineage.record_lineage(fed)
        fed = None
    timings["lineage"] += time.perf_counter() - clock

    clock = time.perf_counter()
    removed = batch.removed
    with state.engine.begin() as conn:
        if fed is not None:  # the batch's lineage and its ledger entries commit together, or neither does
            started = time.perf_counter()
            stores.lineage.record_lineage(fed, conn)
            timings["lineage"] += time.perf_counter() - started
            clock += time.perf_counter() - started
        if entity.ledger:
            state.write_ledger(
                conn,
                [
                    LedgerEntry(
                        name,
                        entity.name,
                        it.record.key,
                        it.uid,
                        it.digest,
                        it.stored if it.stored is not None else it.payload(),
                        it.text,
                    )
                    if it.text is not None and it.cls == it.stored_cls
                    else LedgerEntry(name, entity.name, it.record.key, it.uid, it.digest, it.payload())
                    for it in accepted
                ],
                ctx.run_id,
            )
        if removed:
            state.drop_pending(conn, removed)
        state.add_pending(conn, batch.pending)
        stores.quarantine.add(conn, batch.rejected, ctx.run_id)
        stores.telemetry.append(conn, batch.readings, ctx.run_id)
        open_keys = ctx.open_quarantine.get(entity.name)
        if open_keys:
            taken = [it.record.key for it in accepted if it.record.key in open_keys]
            if taken:
                stores.quarantine.resolve(conn, name, entity.name, taken, ctx.run_id)
        if batch.batch_id is not None:
            state.close_batch(conn, batch.batch_id)
        if batch.watermark is not None:  # the entity's last page: its watermark commits with it, not after it
            state.commit_watermark(conn, name, entity.name, batch.watermark, ctx.run_id)
    timings["commit"] += time.perf_counter() - clock


def provenance(
    ctx: RunContext, entity: EntityMapping, items: list[MappedItem], unwritten: set[LinkKey], keep_values: bool
) -> LineageBatch | None:
    """The lineage of the property values (and links) this batch wrote that differ from last time: one
    `RecordLineage` per twin a source record fed."""
    # (source field, mapping rule, transform) of each property and link type, worked out once per batch
    meta = {
        rule.name: (",".join(rule.source_fields) or None, entity.rule_name(rule.name), rule.transform_text)
        for rule in entity.properties
    }
    link_meta: dict[str, tuple[str | None, str, str | None]] = {}
    records: list[RecordLineage] = []
    for item in items:
        uid = item.uid
        key = item.record.key
        old = item.old
        old_props: Mapping[str, Any] = (
            old.payload.get("p", {}) if old is not None and old.payload.get("u") == uid else {}
        )
        fed = [
            PropertyLineage(prop, value, *meta[prop])
            for prop, value in item.props.items()
            if value is not None and not (prop in old_props and old_props[prop] == value)
        ]
        # a link goes with the record of the twin it leaves (another twin than the item's: a record of its own)
        others: dict[str, list[PropertyLineage]] = {}
        if item.links:
            old_links = {(t, s, d): p for t, s, d, p in old.payload.get("l", [])} if old is not None else {}
            for link in item.links:
                link_key = link.key
                if old_links.get(link_key) == link.properties or link_key in unwritten:
                    continue
                about = link_meta.get(link.type)
                if about is None:
                    link_rule = item.link_rules.get(link.type)
                    about = link_meta[link.type] = (
                        ",".join(link_rule.target_fields) if link_rule else None,
                        entity.rule_name(f"links.{link.type}"),
                        f"target:{link_rule.target_text}" if link_rule else None,
                    )
                value = PropertyLineage(f"link:{link.type}", {"target": link.target, **link.properties}, *about)
                (fed if link.source == uid else others.setdefault(link.source, [])).append(value)
        if fed:
            records.append(RecordLineage(uid, key, fed))
        records += [RecordLineage(source, key, values) for source, values in others.items()]
    if not records:
        return None
    return LineageBatch(ctx.run_id, ctx.connector.mapping.system, entity.name, records, keep_values)
