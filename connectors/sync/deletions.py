"""Deletion detection and the mass-deletion guard: which ledger keys a source no longer has, and what their
deletion removes from the graph (see the deletion rule in connectors/sync/__init__.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from connectors.errors import MassDeletion
from connectors.mapping import EntityMapping
from connectors.source import Source
from connectors.sync.mapper import LinkKey, ledger_link_keys
from connectors.sync.report import EXAMPLES, EntityReport
from connectors.sync_state import SyncState

if TYPE_CHECKING:
    from connectors.sync.context import RunContext
    from connectors.sync.stores import SyncStores

KEY_RANGES = 256  # key ranges an incremental deletion check compares by count before listing keys
LIST_KEYS_UP_TO = 50_000  # ledger keys up to which an incremental deletion check lists every key instead


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


def links_fed_by_others(state: SyncState, links: Sequence[LinkKey], leaving: set[tuple[str, str, str]]) -> set[LinkKey]:
    """Those of `links` (type, source, target) that a committed ledger entry other than the `leaving` ones
    (connector, entity, record key) still lists: another record, source or association row produces them."""
    wanted = set(links)
    if not wanted:
        return set()
    feeders = {s for _, s, _ in wanted} | {f"link:{t}:{s}->{d}" for t, s, d in wanted}
    fed: set[LinkKey] = set()
    for entries in state.entries_for_uids(feeders).values():
        for entry in entries:
            if (entry.connector, entry.entity, entry.record_key) not in leaving:
                fed.update(link for t, s, d, _ in entry.payload.get("l", []) if (link := (t, s, d)) in wanted)
    return fed


class Deletions:
    """Finds the records a source no longer has and removes what they fed, within the run's deletion share."""

    def __init__(self, stores: SyncStores, actor: str, deletion_limit: float, deletion_floor: int) -> None:
        self.stores = stores
        self.actor = actor
        self.deletion_limit = deletion_limit  # the share of an entity's records a run may delete unless allowed more
        self.deletion_floor = deletion_floor  # a run may always delete this many records of an entity (small sources)
        self.list_keys_up_to = LIST_KEYS_UP_TO

    # ------------------------------------------------------------------------------------------- detection
    def gone_keys(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        source: Source,
        seen: set[str],
        report: EntityReport,
        count: int | None = None,
    ) -> list[str]:
        """The ledger keys the source no longer has. A full run read every key (`seen`); an incremental run asks
        for the key list after its read (a record deleted meanwhile is gone too), unless the counts show that no
        ledger key can be missing (`count`: the source's count taken after the read, if the caller has it). Keys of
        batches still being committed are in `seen`: the difference needs no drain."""
        if ctx.mode == "full":
            return sorted(self.stores.state.ledger_keys(ctx.connector.name, entity.name) - seen)
        if self.none_deleted(ctx, entity, source, report, count):
            return []
        return self.missing_keys(ctx, entity, source, seen)

    def none_deleted(
        self, ctx: RunContext, entity: EntityMapping, source: Source, report: EntityReport, count: int | None = None
    ) -> bool:
        """Whether a count proves that the source still has every ledger key of the entity (so listing its keys can
        be skipped): it holds at least as many records as the ledger has keys plus the records that are not in the
        ledger because they are quarantined (open before the run, or this run). Every other record of the source
        was read and is in the ledger, so fewer ledger keys than that would mean a deleted one. A record no run has
        read (a NULL watermark, say; full runs read it) could hide a deletion from the count until the next full
        run. The ledger's count is the run's start count plus the run's own changes (one query per run; a
        connector's runs do not overlap). Sources without a count always list their keys."""
        if count is None:
            counter = getattr(source, "count", None)
            if not callable(counter):
                return False
            count = int(counter(None))
        unledgered = len(ctx.open_quarantine.get(entity.name, ())) + report.quarantined
        return count >= ctx.ledger_size(entity.name) + unledgered

    def missing_keys(self, ctx: RunContext, entity: EntityMapping, source: Source, seen: set[str]) -> list[str]:
        """The ledger keys (and keys read this run) the source no longer has. A large source with one integer key
        is compared by key ranges first: only ranges whose key counts differ, or that hold a key the ledger may lack
        (quarantined, or new this run and perhaps not committed yet), are listed on both sides; every other range
        has as many source keys as ledger keys and no source key outside the ledger, so it lost none. Other
        sources, and those with at most `list_keys_up_to` ledger keys, list every key: one scan of the source
        instead of the three of the range comparison (which, for a joined query, each repeat the join)."""
        name = ctx.connector.name
        state = self.stores.state
        ranged = getattr(source, "key_range", None)
        large = ctx.ledger_size(entity.name) > self.list_keys_up_to
        span = ranged() if callable(ranged) and large else None
        unsure = (
            ctx.open_quarantine.get(entity.name, set()) | ctx.unledgered[entity.name] | ctx.created_keys[entity.name]
        )
        if span is not None and all(_integer(key) for key in unsure):
            low, high = span
            width = max(1, (high - low) // KEY_RANGES + 1)
            # the source's side and the ledger's side are asked at the same time (two databases)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-ledger-keys") as ledger_side:
                try:
                    counted = ledger_side.submit(state.ledger_key_buckets, name, entity.name, low, width)
                    here = source.key_buckets(low, width)  # type: ignore[attr-defined]
                    kept = counted.result()
                except SQLAlchemyError:  # a ledger key that is not an integer (PostgreSQL refuses the cast)
                    span = None
                else:
                    dirty = {b for b in here.keys() | kept.keys() if here.get(b, 0) != kept.get(b, 0)}
                    dirty |= {_truncated(int(key) - low, width) for key in unsure}
                    if not dirty:
                        return []
                    listed = ledger_side.submit(
                        state.ledger_keys_in_buckets, name, entity.name, low, width, sorted(dirty)
                    )
                    present = source.keys_in_buckets(low, width, sorted(dirty))  # type: ignore[attr-defined]
                    ledger = listed.result()
                    ledger |= {key for key in seen if _integer(key) and _truncated(int(key) - low, width) in dirty}
                    return sorted(ledger - present)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-ledger-keys") as ledger_side:
            listed = ledger_side.submit(state.ledger_keys, name, entity.name)
            present = source.all_keys()
            return sorted((listed.result() | seen) - present)

    # -------------------------------------------------------------------------------------------- removal
    def delete(self, ctx: RunContext, entity: EntityMapping, keys: Sequence[str], report: EntityReport) -> None:
        """Remove what deleted source records fed (see the deletion rule); counts and names the twins and links
        actually removed (a twin other records still feed stays, and is not counted)."""
        name = ctx.connector.name
        stores = self.stores
        state = stores.state
        if ctx.committer is not None:  # decide on committed ledger entries only
            ctx.committer.drain()
        entries = state.ledger(name, entity.name, keys)
        if not entries:
            return
        if not ctx.dry_run:
            self.allow(ctx, entity, len(entries), report)
        gone = set(entries)
        links = ledger_link_keys(entries.values())
        twin_uids = {e.uid for e in entries.values() if entity.link is None}
        contributors = state.entries_for_uids(twin_uids)
        doomed = sorted(
            uid
            for uid in twin_uids
            if all(  # twins no other record contributes to
                e.connector == name and e.entity == entity.name and e.record_key in gone
                for e in contributors.get(uid, [])
            )
        )
        doomed_set = set(doomed)
        fed = links_fed_by_others(state, links, {(name, entity.name, key) for key in gone})
        links = [link for link in links if link not in fed]  # another record still produces these: they stay
        surviving_links = sorted({link for link in links if link[1] not in doomed_set and link[2] not in doomed_set})
        if ctx.dry_run:  # what would go: the doomed twins that exist, and the links of theirs that exist
            present = stores.graph.classes_of(doomed) if doomed else {}
            report.deleted += len(present) + stores.graph.count_links(surviving_links)
            for uid in list(present)[:EXAMPLES]:
                report.example("delete", uid)
            return
        for uid in doomed[:EXAMPLES]:
            report.example("delete", uid)
        for t, s, d in surviving_links[: max(0, EXAMPLES - len(doomed))]:
            report.example("delete", f"link {t} {s} -> {d}")
        if surviving_links:
            report.deleted += stores.graph.delete_links(
                surviving_links, actor=self.actor, source=name, run_id=ctx.run_id
            ).deleted
        if doomed and entity.on_delete == "retire":  # the mapping keeps them, retired (graph/lifecycle.py)
            retired = stores.graph.transition(
                dict.fromkeys(doomed, "retired"), actor=self.actor, source=name, run_id=ctx.run_id, strict=False
            )
            report.deleted += len(retired)
            for move in retired[:EXAMPLES]:
                report.example("retire", move.uid)
        elif doomed:
            report.deleted += stores.graph.delete_twins(
                doomed, actor=self.actor, source=name, run_id=ctx.run_id
            ).deleted
            stores.identity.forget(doomed)
        merged_away = [e.payload["n"] for e in entries.values() if e.payload.get("n") not in (None, e.uid)]
        if merged_away:
            stores.identity.forget_source(merged_away)
        with state.engine.begin() as conn:
            state.drop_ledger(conn, name, entity.name, list(entries))
            state.drop_pending(conn, links)
        ctx.dropped[entity.name] += len(entries)

    def allow(self, ctx: RunContext, entity: EntityMapping, count: int, report: EntityReport) -> None:
        """Raise MassDeletion, before anything is deleted, when deleting `count` more records would take the run past
        its share of the entity's records (and past the floor of deletions always allowed), or when a full run read
        none of them; every run kind's deletions pass here. The records known are the entity's ledger entries (the
        run's count of them: its batches are committed before deletions)."""
        known, done = ctx.deleting.get(entity.name) or (ctx.ledger_size(entity.name), 0)
        limit = self.deletion_limit if ctx.allow_deletions is None else ctx.allow_deletions
        share = (done + count) / max(known, 1)
        emptied = report.read == 0 and ctx.mode == "full" and (ctx.allow_deletions is None or ctx.allow_deletions < 1)
        if (share > limit and done + count > self.deletion_floor) or emptied:
            why = (
                f"read 0 rows from a source that had {known:,} records"
                if report.read == 0 and ctx.mode == "full"
                else f"would delete {done + count:,} of its {known:,} records ({share:.0%})"
            )
            raise MassDeletion(
                f"{ctx.connector.name}/{entity.name}: the run {why}, more than the {limit:.0%} a run may delete; "
                f"nothing was deleted. If the deletions are intended, run again with --allow-deletions "
                f"{math.ceil(share * 100)}% (REST: allow_deletions) or raise TWIN_SYNC_MAX_DELETE_SHARE"
            )
        ctx.deleting[entity.name] = (known, done + count)
