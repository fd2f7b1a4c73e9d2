"""Deletion detection and the mass-deletion guard: which ledger keys a source no longer has, and what their
deletion removes from the graph (see the deletion rule in connectors/sync/__init__.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from connectors.errors import MassDeletion
from connectors.mapping import EntityMapping
from connectors.source import Source
from connectors.sync.mapper import LinkKey, ledger_link_keys
from connectors.sync.report import EXAMPLES, EntityReport
from connectors.sync.side_queries import ask_aside
from connectors.sync_state import SyncState

if TYPE_CHECKING:
    from connectors.sync.context import RunContext
    from connectors.sync.stores import SyncStores

KEY_RANGES = 256  # key ranges an incremental deletion check compares by count before listing keys, at least
KEYS_PER_RANGE = 16  # ledger keys per key range aimed at: a deleted key makes only its own few neighbours listed
KEY_RANGES_MAX = 65_536  # key ranges at most (each range is one counted row on either side)
LIST_KEYS_UP_TO = 50_000  # ledger keys up to which a check lists every key when its ranges repeat a query's joins
LIST_TABLE_KEYS_UP_TO = 2_000  # ledger keys up to which a check lists every key when keys are on a table (indexed)


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


@dataclass(frozen=True)
class KeyRanges:
    """Key counts per range ``(key - low) // width`` of the source and of the ledger, taken for a deletion check."""

    low: int
    width: int
    source: dict[int, int]
    ledger: dict[int, int]


@dataclass(frozen=True)
class KeyCensus:
    """What a source holds now, asked in one scan: its record count and, for one integer key column, its smallest
    and largest key (None otherwise); with the key ranges already counted when a survey expected a deletion."""

    count: int
    span: tuple[int, int] | None = None
    ranges: KeyRanges | None = None


def take_census(source: Source) -> KeyCensus | None:
    """The source's key census (`key_census`, else `count`); None for a source that cannot count its records."""
    census = getattr(source, "key_census", None)
    if callable(census):
        count, span = census()
        return KeyCensus(int(count), span)
    counter = getattr(source, "count", None)
    if callable(counter):
        return KeyCensus(int(counter(None)))
    return None


class Deletions:
    """Finds the records a source no longer has and removes what they fed, within the run's deletion share."""

    def __init__(self, stores: SyncStores, actor: str, deletion_limit: float, deletion_floor: int) -> None:
        self.stores = stores
        self.actor = actor
        self.deletion_limit = deletion_limit  # the share of an entity's records a run may delete unless allowed more
        self.deletion_floor = deletion_floor  # a run may always delete this many records of an entity (small sources)
        self.list_keys_up_to = LIST_KEYS_UP_TO
        self.list_table_keys_up_to = LIST_TABLE_KEYS_UP_TO

    # ------------------------------------------------------------------------------------------- detection
    def gone_keys(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        source: Source,
        seen: set[str],
        report: EntityReport,
        census: KeyCensus | None = None,
    ) -> list[str]:
        """The ledger keys the source no longer has. A full run read every key (`seen`); an incremental run asks
        for the key list after its read (a record deleted meanwhile is gone too), unless the counts show that no
        ledger key can be missing (`census`: the source's count, and key span, taken after the read, if the caller
        has it). Keys of batches still being committed are in `seen`: the difference needs no drain."""
        if ctx.mode == "full":
            return sorted(self.stores.state.ledger_keys(ctx.connector.name, entity.name) - seen)
        if census is None:
            census = take_census(source)
        if census is not None and self.none_deleted(ctx, entity, report, census.count):
            return []
        return self.missing_keys(ctx, entity, source, seen, census)

    def survey(
        self, ctx: RunContext, entity: EntityMapping, source: Source, expected: int, size: int
    ) -> KeyCensus | None:
        """The source's key census taken beside the entity's last page (the read is over), and, when its count is
        below `expected` (about the ledger keys plus unledgered records the entity will have once that page is
        written: a deletion is likely), its key ranges counted on both sides too, so the check after the page only
        lists what differs. Counting the ledger's ranges before the page is committed is sound: keys new this run
        are in `ctx.created_keys`, whose ranges are listed anyway, and a ledger key dropped meanwhile only makes
        its range differ (listed, from the ledger as it is then). `size`: the entity's ledger keys as the page
        began (the ranges are sized by it; the caller reads the run's counters, not this side thread)."""
        census = take_census(source)
        if census is None or census.span is None or census.count >= expected:
            return census
        plan = self._range_plan(size, source, census.span)
        if plan is None:
            return census
        try:
            ranges = self._count_ranges(ctx, entity, source, *plan, aside=False)
        except SQLAlchemyError:  # a ledger key that is not an integer (PostgreSQL refuses the cast)
            return census
        return KeyCensus(census.count, census.span, ranges)

    def _range_plan(self, size: int, source: Source, span: tuple[int, int] | None) -> tuple[int, int] | None:
        """(low, width) of the key ranges a deletion check of an entity with `size` ledger keys compares, or None
        when it lists every key instead (a small source, or one whose ranges would repeat a query's joins, or
        without one integer key)."""
        on_table = getattr(source, "keys_on_table", False) is True
        large = size > (self.list_table_keys_up_to if on_table else self.list_keys_up_to)
        if span is None or not large or not callable(getattr(source, "key_buckets", None)):
            return None
        low, high = span
        ranges = min(KEY_RANGES_MAX, max(KEY_RANGES, size // KEYS_PER_RANGE))
        return low, max(1, (high - low) // ranges + 1)

    def _count_ranges(
        self, ctx: RunContext, entity: EntityMapping, source: Source, low: int, width: int, aside: bool = True
    ) -> KeyRanges:
        """Key counts per range on both sides: asked at the same time (two databases), or one after the other when
        this already runs as a side query (`aside` False: a side query never waits on another)."""
        ledger_side = partial(self.stores.state.ledger_key_buckets, ctx.connector.name, entity.name, low, width)
        if not aside:
            return KeyRanges(low, width, source.key_buckets(low, width), ledger_side())  # type: ignore[attr-defined]
        counted = ask_aside(ledger_side)
        here = source.key_buckets(low, width)  # type: ignore[attr-defined]
        return KeyRanges(low, width, here, counted.result())

    def none_deleted(self, ctx: RunContext, entity: EntityMapping, report: EntityReport, count: int) -> bool:
        """Whether the source's `count` proves that it still has every ledger key of the entity (so listing its keys
        can be skipped): it holds at least as many records as the ledger has keys plus the records that are not in
        the ledger because they are quarantined (open before the run, or this run). Every other record of the
        source was read and is in the ledger, so fewer ledger keys than that would mean a deleted one; records new
        this run count on both sides (a deletion beside an insertion leaves the source's count as it was, but the
        ledger grew by the insertion). A record no run has read (a NULL watermark, say; full runs read it) could
        hide a deletion from the count until the next full run. The ledger's count is the run's start count plus
        the run's own changes (one query per run; a connector's runs do not overlap)."""
        unledgered = len(ctx.open_quarantine.get(entity.name, ())) + report.quarantined
        return count >= ctx.ledger_size(entity.name) + unledgered

    def missing_keys(
        self,
        ctx: RunContext,
        entity: EntityMapping,
        source: Source,
        seen: set[str],
        census: KeyCensus | None = None,
    ) -> list[str]:
        """The ledger keys (and keys read this run) the source no longer has. A large source with one integer key
        is compared by key ranges first: only ranges whose key counts differ, or that hold a key the ledger may lack
        (quarantined, or new this run and perhaps not committed yet), are listed on both sides; every other range
        has as many source keys as ledger keys and no source key outside the ledger, so it lost none. Ranges hold
        about `KEYS_PER_RANGE` ledger keys, so a few deletions list a few dozen keys, not the source. Other
        sources, and small ones, list every key: those with at most `list_table_keys_up_to` ledger keys when keys
        are on a table (an index scan), or `list_keys_up_to` when the comparison would repeat a query's joins
        (one scan instead of three)."""
        name = ctx.connector.name
        state = self.stores.state
        ranges = census.ranges if census is not None else None
        if ranges is None:
            span = census.span if census is not None else None
            if span is None and census is None and callable(ranged := getattr(source, "key_range", None)):
                span = ranged()
            plan = self._range_plan(ctx.ledger_size(entity.name), source, span)
            if plan is not None:
                try:
                    ranges = self._count_ranges(ctx, entity, source, *plan)
                except SQLAlchemyError:  # a ledger key that is not an integer (PostgreSQL refuses the cast)
                    ranges = None
        unsure = (
            ctx.open_quarantine.get(entity.name, set()) | ctx.unledgered[entity.name] | ctx.created_keys[entity.name]
        )
        if ranges is not None and all(_integer(key) for key in unsure):
            low, width, here, kept = ranges.low, ranges.width, ranges.source, ranges.ledger
            dirty = {b for b in here.keys() | kept.keys() if here.get(b, 0) != kept.get(b, 0)}
            dirty |= {_truncated(int(key) - low, width) for key in unsure}
            if not dirty:
                return []
            listed = ask_aside(partial(state.ledger_keys_in_buckets, name, entity.name, low, width, sorted(dirty)))
            present = source.keys_in_buckets(low, width, sorted(dirty))  # type: ignore[attr-defined]
            ledger = listed.result()
            ledger |= {key for key in seen if _integer(key) and _truncated(int(key) - low, width) in dirty}
            return sorted(ledger - present)
        listed_all = ask_aside(partial(state.ledger_keys, name, entity.name))
        present = source.all_keys()
        return sorted((listed_all.result() | seen) - present)

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
