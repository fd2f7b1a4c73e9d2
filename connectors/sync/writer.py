"""Writing a mapped page to the graph: twins, then links, with the items the graph refuses split out (quarantined,
or waiting in the pending table for an endpoint) and the rest written; and the dry run's plan of the same."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from connectors.mapping import EntityMapping
from connectors.quarantine import QuarantinedRow
from connectors.source import Watermark
from connectors.sync.committer import Batch, commit_batch
from connectors.sync.deletions import links_fed_by_others
from connectors.sync.identities import winning_class
from connectors.sync.mapper import LinkKey, MappedItem, MappedLink, record_digest
from connectors.sync.report import EXAMPLES, EntityReport
from connectors.sync_state import PendingLink
from governance.lineage import ProvenanceRecord
from graph.errors import BatchRejected
from graph.lifecycle import LifecycleError, state_of
from graph.model import Link, Twin, WriteSummary
from graph.valid_time import ValidTimes, ValidVersion
from ontology.errors import Violation

if TYPE_CHECKING:
    from connectors.sync.context import RunContext
    from connectors.sync.stores import SyncStores

_TWIN_PATH = re.compile(r"^twins\[(\d+)\]")
_LINK_PATH = re.compile(r"^links\[(\d+)\]")


def offending_twins(violations: list[Violation], todo: list[MappedItem]) -> dict[int, list[Violation]]:
    """The items (by index) each violation names; every item feeding a named uid shares its fate."""
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


def offending_links(violation: Violation, ends: Sequence[tuple[str, str]]) -> list[int]:
    """Indexes of the links a violation names: `links[i]`, or (multiplicity, "<source uid>.<type>") every link
    of that type from that source; `ends` holds each link's (source uid, type)."""
    match = _LINK_PATH.match(violation.path)
    if match and int(match.group(1)) < len(ends):
        return [int(match.group(1))]
    return [i for i, (source, rel_type) in enumerate(ends) if violation.path == f"{source}.{rel_type}"]


def add_counts(report: EntityReport, summary: WriteSummary) -> None:
    """Add what the graph did (twins or links created, updated, unchanged) to an entity's counts."""
    report.created += summary.created
    report.updated += summary.updated
    report.unchanged += summary.unchanged


class GraphWriter:
    """Writes mapped pages to the graph and hands each page to the committer; retries pending links."""

    def __init__(self, stores: SyncStores, actor: str, keep_values: bool) -> None:
        self.stores = stores
        self.graph = stores.graph
        self.ontology = stores.graph.ontology
        self.actor = actor
        self.keep_values = keep_values

    # ---------------------------------------------------------------------------------------------- write
    def write(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        items: list[MappedItem],
        rejected: list[QuarantinedRow],
        report: EntityReport,
        watermark: Watermark | None = None,
    ) -> None:
        """Write a page's twins and links (a full run writes unchanged records again, repairing outside edits) and
        submit the page to the committer (with the entity's new `watermark`, on its last page)."""
        timings = ctx.report.timings
        name = ctx.connector.name
        system = ctx.connector.mapping.system
        state = self.stores.state
        writing = [it for it in items if it.status != "unchanged" or (ctx.mode == "full" and entity.ledger)]
        changed = [it for it in items if it.status != "unchanged"]
        if len(writing) < len(items):  # not written again: their twins and links stay as they are
            skipped = [it for it in items if it.status == "unchanged"]
            report.unchanged += len({it.uid for it in skipped if entity.link is None}) + len(
                {link.key for it in skipped for link in it.links}
            )

        # the batch journal: a crashed attempt at this very batch may have made its lineage durable already
        batch_id = None
        lineage_done = False
        if changed and entity.ledger and not self.stores.lineage_with_state:
            batch_id = record_digest(
                {
                    "c": name,
                    "e": entity.name,
                    "i": [[it.record.key, it.old.digest if it.old else "", it.digest] for it in changed],
                }
            )
            previous = state.journal(batch_id)
            if previous is not None:
                lineage_done = self._lineage_exists(previous[0], system, [it.record.key for it in changed])
            else:
                state.open_batch(batch_id, name, entity.name, ctx.run_id, [it.record.key for it in changed])

        clock = time.perf_counter()
        removed: list[LinkKey] = []
        for item in changed:
            if item.old is not None:
                before = {(t, s, d) for t, s, d, _ in item.old.payload.get("l", [])}
                after = {link.key for link in item.links}
                removed += sorted(before - after)
        if removed:
            assert ctx.committer is not None
            ctx.committer.drain()  # decide on committed ledger entries only
            fed = links_fed_by_others(state, removed, {(name, entity.name, it.record.key) for it in changed})
            removed = [link for link in removed if link not in fed]
        if removed:
            report.deleted += self.graph.delete_links(removed, actor=self.actor, source=name, run_id=ctx.run_id).deleted
        pending: list[PendingLink] = []
        if entity.link is None:
            twins_to_write = writing
            if entity.update_only:
                present = self.graph.classes_of(list({it.uid for it in writing}))
                for item in writing:
                    if item.uid not in present:
                        item.accepted = False
                        rejected.append(
                            QuarantinedRow(
                                name,
                                entity.name,
                                item.record.key,
                                None,
                                "unknown-twin",
                                f"no twin {item.uid!r} to update (update_only)",
                                dict(item.record.fields),
                            )
                        )
                    elif item.cls is not None:
                        item.cls = winning_class(self.ontology, item.cls, present[item.uid], False)
                twins_to_write = [it for it in writing if it.accepted]
            elif entity.cls is not None and writing and self.ontology.descendants(entity.cls):
                # another mapping may have given these twins a more specific class: keep it (no flip-flopping)
                present = self.graph.classes_of(list({it.uid for it in writing}))
                for item in writing:
                    current = present.get(item.uid)
                    if current is not None and item.cls is not None and current != item.cls:
                        item.cls = winning_class(self.ontology, item.cls, current, False)
            written_from = dt.datetime.now(dt.UTC)
            add_counts(report, self._upsert_twins(ctx, entity, twins_to_write, rejected))
            self._move_lifecycles(ctx, entity, twins_to_write, rejected)
            self._record_valid_times(ctx, entity, twins_to_write, written_from)
        link_items = [it for it in writing if it.accepted and it.links]
        unwritten: set[LinkKey] = set()
        links = self._upsert_links(ctx, entity, link_items, rejected, pending, unwritten)
        add_counts(report, links)
        report.links_written += links.created + links.updated + links.unchanged
        timings["graph"] += time.perf_counter() - clock

        accepted = [it for it in changed if it.accepted]
        for item in accepted:
            if len(report.examples[item.status]) < EXAMPLES:
                report.example(item.status, f"{item.uid} ({item.cls or item.links[0].type})")
        report.quarantined += len(rejected)
        ctx.unledgered[entity.name].update(row.record_key for row in rejected if row.record_key is not None)
        report.pending_links += len(pending)
        ctx.report.quarantined_rows += rejected[: max(0, 50 - len(ctx.report.quarantined_rows))]
        readings = [r for it in items if it.accepted for r in it.readings]
        batch = Batch(
            entity, accepted, unwritten, not lineage_done, removed, pending, rejected, readings, batch_id, watermark
        )
        if entity.ledger:  # records new to the ledger (for the incremental deletion check)
            created = [it.record.key for it in accepted if it.status == "created"]
            ctx.new_keys[entity.name] += len(created)
            ctx.created_keys[entity.name].update(created)
        if batch.empty():  # every record unchanged: nothing to make durable
            return
        assert ctx.committer is not None
        stores, keep_values = self.stores, self.keep_values
        ctx.committer.submit(lambda: commit_batch(stores, ctx, batch, keep_values))

    def _lineage_exists(self, run_id: str, system: str, keys: Sequence[str]) -> bool:
        """Whether a crashed attempt (run `run_id`) stored lineage for any of these record keys."""
        return self.stores.lineage.has_records(run_id, system, keys)

    def _upsert_twins(
        self, ctx: RunContext, entity: EntityMapping, items: list[MappedItem], rejected: list[QuarantinedRow]
    ) -> WriteSummary:
        """Write the items' twins; items the graph refuses are quarantined and the rest retried. Returns what the
        graph did with the twins it took."""
        todo = [it for it in items if it.accepted]
        while todo:
            twins = [Twin(it.uid, it.cls or "", it.props) for it in todo]
            try:
                return self.graph.upsert_twins(twins, actor=self.actor, source=ctx.connector.name, run_id=ctx.run_id)
            except BatchRejected as exc:
                offenders = offending_twins(exc.violations, todo)
                for index, violations in offenders.items():
                    item = todo[index]
                    item.accepted = False
                    first = violations[0]
                    rejected.append(
                        QuarantinedRow(
                            ctx.connector.name,
                            entity.name,
                            item.record.key,
                            first.path.rsplit(".", 1)[-1] if "." in first.path else None,
                            f"graph:{first.rule}",
                            "; ".join(v.message for v in violations),
                            dict(item.record.fields),
                        )
                    )
                todo = [it for it in todo if it.accepted]
        return WriteSummary()

    def _record_valid_times(
        self, ctx: RunContext, entity: EntityMapping, items: list[MappedItem], written_from: dt.datetime
    ) -> None:
        """Record when the written twins' values take effect, where the mapping names an effective-date field
        (graph/valid_time.py): a record without one takes effect now."""
        if entity.valid_from is None or self.graph.history is None:
            return
        names = tuple(rule.name for rule in entity.properties)
        now = dt.datetime.now(dt.UTC)
        versions = [ValidVersion(it.uid, it.valid_from or now, names) for it in items if it.accepted]
        ValidTimes.beside(self.graph.history).record(versions, written_from, source=ctx.connector.name)

    def _move_lifecycles(
        self, ctx: RunContext, entity: EntityMapping, items: list[MappedItem], rejected: list[QuarantinedRow]
    ) -> None:
        """Move the written twins to the lifecycle states their records give; a record whose twin may not go there
        (retired to suspended, say) is quarantined with the reason, the others moved."""
        todo = {it.uid: it for it in items if it.accepted and it.lifecycle is not None}
        while todo:
            states = {uid: state_of(item.lifecycle) for uid, item in todo.items()}
            try:
                self.graph.transition(
                    states, actor=self.actor, source=ctx.connector.name, run_id=ctx.run_id, strict=False
                )
                return
            except LifecycleError as exc:
                for uid, reason in exc.refused.items():
                    item = todo.pop(uid)
                    item.accepted = False
                    rejected.append(
                        QuarantinedRow(
                            ctx.connector.name,
                            entity.name,
                            item.record.key,
                            entity.lifecycle.field if entity.lifecycle else None,
                            "lifecycle",
                            reason,
                            dict(item.record.fields),
                        )
                    )
                if not exc.refused:
                    raise

    def _upsert_links(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        items: list[MappedItem],
        rejected: list[QuarantinedRow],
        pending: list[PendingLink],
        unwritten: set[LinkKey],
    ) -> WriteSummary:
        """Write the items' links; missing endpoints wait in `pending`, other refusals are quarantined. Returns what
        the graph did with the links it took."""
        system = ctx.connector.mapping.system
        todo: list[tuple[MappedItem, MappedLink]] = [(it, link) for it in items for link in it.links]
        while todo:
            links = [Link(link.type, link.source, link.target, link.properties) for _, link in todo]
            try:
                return self.graph.upsert_links(links, actor=self.actor, source=ctx.connector.name, run_id=ctx.run_id)
            except BatchRejected as exc:
                drop: set[int] = set()
                ends = [(link.source, link.type) for _, link in todo]
                for violation in exc.violations:
                    for index in offending_links(violation, ends):
                        if index in drop:
                            continue
                        drop.add(index)
                        item, link = todo[index]
                        unwritten.add(link.key)
                        rule = entity.rule_name(f"links.{link.type}")
                        if violation.rule == "missing-endpoint":
                            pending.append(
                                PendingLink(
                                    link.type,
                                    link.source,
                                    link.target,
                                    ctx.connector.name,
                                    system,
                                    entity.name,
                                    item.record.key,
                                    rule,
                                    link.properties,
                                    violation.message,
                                )
                            )
                        else:
                            rejected.append(
                                QuarantinedRow(
                                    ctx.connector.name,
                                    entity.name,
                                    item.record.key,
                                    link.type,
                                    f"graph:{violation.rule}",
                                    violation.message,
                                    dict(item.record.fields),
                                )
                            )
                if not drop:
                    for item, link in todo:
                        unwritten.add(link.key)
                        rejected.append(
                            QuarantinedRow(
                                ctx.connector.name,
                                entity.name,
                                item.record.key,
                                link.type,
                                "graph:links",
                                str(exc),
                                dict(item.record.fields),
                            )
                        )
                    return WriteSummary()
                todo = [entry for i, entry in enumerate(todo) if i not in drop]
        return WriteSummary()

    # ------------------------------------------------------------------------------------------------ dry
    def plan(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        items: list[MappedItem],
        rejected: list[QuarantinedRow],
        report: EntityReport,
    ) -> None:
        """Count what writing these items would do to twins and links (twins the graph or an earlier page of this
        dry run has are updated, not created), with examples."""
        report.quarantined += len(rejected)
        ctx.report.quarantined_rows += rejected[: max(0, 50 - len(ctx.report.quarantined_rows))]
        changed_uids = {it.uid for it in items if it.status != "unchanged" and entity.link is None}
        same_uids = {it.uid for it in items if it.status == "unchanged" and entity.link is None} - changed_uids
        present = set(self.graph.classes_of(sorted(changed_uids))) | ctx.planned if changed_uids else set()
        report.created += len(changed_uids - present)
        report.updated += len(changed_uids & present)
        report.unchanged += len(same_uids)
        ctx.planned |= changed_uids
        for item in items:
            old_links = {(t, s, d): p for t, s, d, p in item.old.payload.get("l", [])} if item.old else {}
            for link in item.links:
                if link.key not in old_links:
                    report.created += 1
                elif old_links[link.key] != link.properties:
                    report.updated += 1
                else:
                    report.unchanged += 1
            report.deleted += len(set(old_links) - {link.key for link in item.links})
            if item.status == "created":
                report.example("create", f"{item.uid} ({item.cls or item.links[0].type})")
            elif item.status == "updated":
                old = dict(item.old.payload.get("p", {})) if item.old else {}
                changed = sorted(k for k, v in item.props.items() if old.get(k) != v)
                report.example("update", f"{item.uid}: {', '.join(changed) or 'links'}")

    # -------------------------------------------------------------------------------------------- pending
    def retry_pending(self, ctx: RunContext) -> None:
        """Write pending links (of every connector) whose endpoints exist now."""
        state = self.stores.state
        pending = state.pending()
        if not pending:
            return
        clock = time.perf_counter()
        canonical = (
            self.stores.identity.canonical_of({p.source for p in pending} | {p.target for p in pending})
            if ctx.has_merges
            else {}
        )
        todo = [
            (p, Link(p.type, canonical.get(p.source, p.source), canonical.get(p.target, p.target), dict(p.properties)))
            for p in pending
        ]
        quarantined: list[QuarantinedRow] = []
        still: set[int] = set()
        while todo:
            try:
                self.graph.upsert_links(
                    [link for _, link in todo], actor=self.actor, source=ctx.connector.name, run_id=ctx.run_id
                )
                break
            except BatchRejected as exc:
                drop: set[int] = set()
                ends = [(link.source, link.type) for _, link in todo]
                for violation in exc.violations:
                    for index in offending_links(violation, ends):
                        if index in drop:
                            continue
                        drop.add(index)
                        entry, _ = todo[index]
                        if violation.rule == "missing-endpoint":
                            still.add(id(entry))
                        else:
                            quarantined.append(
                                QuarantinedRow(
                                    entry.connector,
                                    entry.entity,
                                    entry.record_key,
                                    entry.type,
                                    f"graph:{violation.rule}",
                                    violation.message,
                                    {"link": [entry.type, entry.source, entry.target]},
                                )
                            )
                if not drop:
                    raise
                todo = [entry for i, entry in enumerate(todo) if i not in drop]
        written = [entry for entry, _ in todo]
        if written:
            records = [
                ProvenanceRecord.of(
                    link.source,
                    f"link:{link.type}",
                    {"target": link.target, **link.properties},
                    source_system=entry.system,
                    source_object=entry.entity,
                    record_key=entry.record_key,
                    run_id=ctx.run_id,
                    mapping_rule=entry.rule,
                    transform="pending link resolved",
                    keep_value=self.keep_values,
                )
                for entry, link in todo
            ]
            self.stores.lineage.record(records)
        with state.engine.begin() as conn:
            done = [(p.type, p.source, p.target) for p in pending if id(p) not in still]
            state.drop_pending(conn, done)
            self.stores.quarantine.add(conn, quarantined, ctx.run_id)
        ctx.report.timings["pending"] += time.perf_counter() - clock
