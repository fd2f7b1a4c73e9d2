"""The change history of the twin graph, kept in the relational store: who/what/when, before and after."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from graph.personal_values import PersonalValues
from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender

metadata = MetaData()
_STATE_ENCODER = json.JSONEncoder(sort_keys=True, default=str)  # one encoder for every state, not one per call

twin_history = Table(
    "twin_history",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("uid", String(512), nullable=False),
    Column("kind", String(8), nullable=False),  # twin | link
    Column("op", String(8), nullable=False),  # create | update | delete
    Column("link_type", String(128)),
    Column("target", String(512)),
    Column("cls", String(256)),
    Column("actor", String(256), nullable=False),
    Column("source", String(256)),
    Column("run_id", String(64)),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("write_id", BigInteger),  # the twin_history_write this row belongs to (None: rows from before writes)
    # A compact row (a twin a bulk load created) also holds the links the load created from it, as JSON
    # [[type, target, properties], ...]; `linked_from` names the twins of the same write whose links end at this one
    # (JSON list of uids: the index by target, found through the uid index); `link_end` counts the links of the
    # write's compact rows up to and including this one (a link's place in the change feed). NULL: a row per change.
    Column("links", Text),
    Column("linked_from", Text),
    Column("link_end", BigInteger),
    Index("ix_twin_history_uid_at", "uid", "at"),
    Index("ix_twin_history_target", "target"),
)

# One row per graph write: its history rows are committed first, as the write's intent ("pending"), and confirmed
# once the graph has taken the write. A confirmed write holds the gap-free sequence numbers of its rows:
# seq_start .. seq_start + count - 1, in the order of their ids (a change feed follows `seq_start`). Its rows are
# those with its write_id and an id in (after_id, last_id].
twin_history_write = Table(
    "twin_history_write",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("state", String(12), nullable=False),  # pending | unsettled | confirmed
    Column("owner", String(320), nullable=False),  # host/pid/process start of the writer
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("after_id", BigInteger, nullable=False),
    Column("last_id", BigInteger),
    Column("count", Integer, nullable=False, default=0),
    Column("seq_start", BigInteger, unique=True),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("links", BigInteger),  # changes of links carried inside compact rows (None: the write has none); the
    # write's first `count - links` sequence numbers are its rows' twins, the rest those links
    Index("ix_twin_history_write_state", "state"),
)

twin_history_sequence = Table(  # the last sequence number given to a confirmed history row ("history"), and the
    # number of erasures that rewrote recorded states ("erasures")
    "twin_history_sequence",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

_ROW_COLUMNS = ("uid", "kind", "op", "cls", "link_type", "target", "before", "after")  # one value per change
_CALL_COLUMNS = ("actor", "source", "run_id", "at", "write_id")  # one value per call
_COMPACT_COLUMNS = ("uid", "cls", "after", "links", "linked_from", "link_end")  # one value per loaded twin
_COMPACT_CALL_COLUMNS = ("kind", "op", *_CALL_COLUMNS)  # a compact row is a twin's creation, with its links
_SEQUENCE = "history"
_ERASURES = "erasures"  # a second sequence row: how many erasures rewrote recorded states (as-of graphs built
# before one must be built again)
PENDING, UNSETTLED, CONFIRMED = "pending", "unsettled", "confirmed"
STALE_ELSEWHERE = dt.timedelta(minutes=30)  # a pending write of another host's process is settled after this long


class HistoryUnsettled(RuntimeError):
    """A write's history was settled by recovery while its writer still meant to confirm it."""


class Change(NamedTuple):
    """One change to record: a twin or a link, the operation, and the state before and after.

    A named tuple rather than a frozen dataclass: a bulk load makes one per twin and link (millions), and a tuple is
    built several times faster.
    """

    uid: str
    kind: str
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    cls: str | None = None
    link_type: str | None = None
    target: str | None = None


class LoadedTwin(NamedTuple):
    """A twin a bulk load created and the links it created from it: recorded as one compact history row that reads
    back as the twin's `create` and one `create` per link (a named tuple: a load makes one per twin)."""

    uid: str
    cls: str
    after: dict[str, Any]
    links: Sequence[tuple[str, str, dict[str, Any]]]  # (type, target, properties) of each link from this twin
    linked_from: Sequence[str] = ()  # the twins of the same load whose links end at this one


@dataclass(frozen=True)
class ChangeContext:
    """Who made a change and from where."""

    actor: str = "system"
    source: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded change, as read back."""

    id: int
    uid: str
    kind: str
    op: str
    cls: str | None
    link_type: str | None
    target: str | None
    actor: str
    source: str | None
    run_id: str | None
    at: dt.datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class HistoryStore:
    """Append-only change log of twins and links with `history(uid)` and `as_of(uid, time)`.

    With `seal`, the personal values of twin states are stored sealed under their subject's key and opened when
    read back (graph/personal_values.py); a value whose key was destroyed reads as absent.
    """

    def __init__(self, url: str, seal: PersonalValues | None = None) -> None:
        self.url = url
        self.seal = seal
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        _add_write_column(self.engine)
        _start_sequence(self.engine)
        dialect = self.engine.dialect
        self._bind_time = twin_history.c.at.type.dialect_impl(dialect).bind_processor(dialect)
        self._appender = RowAppender(self.engine, twin_history, _ROW_COLUMNS, _CALL_COLUMNS)
        self._compact_appender = RowAppender(self.engine, twin_history, _COMPACT_COLUMNS, _COMPACT_CALL_COLUMNS)

    def record(self, changes: Sequence[Change], context: ChangeContext, at: dt.datetime | None = None) -> int:
        """Append `changes` as one confirmed write in one transaction (for changes already made); returns how many
        were written."""
        if not changes:
            return 0
        when = at or dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            write_id, _ = self._open_write(conn, when)
            count = self._append(conn, changes, context, when, write_id)
            self._close_write(conn, write_id, count)
            self._confirm(conn, write_id, count)
        return count

    def begin(self, changes: Sequence[Change], context: ChangeContext) -> PendingChanges:
        """Start recording the intent of a graph write: `changes` (more may follow through `add`) are inserted in a
        thread while the caller prepares the write; `seal` makes them durable as pending before the graph is
        written, then the caller confirms them (`commit`), drops them (`rollback`, nothing was written) or
        settles them against the graph (`settle`, the write failed part-way)."""
        return PendingChanges(self, changes, context)

    # ------------------------------------------------------------------ writes and their recovery

    def _open_write(self, conn: Connection, when: dt.datetime) -> tuple[int, int]:
        """Insert a pending write (in `conn`'s transaction); returns its id and the id its rows come after."""
        w = twin_history_write
        write_id = conn.execute(
            insert(w)
            .values(
                state=PENDING,
                owner=_owner(),
                started_at=_utc(when, "the time of the write"),
                after_id=0,
                count=0,
            )
            .returning(w.c.id)
        ).scalar_one()
        # Read after the insert above took the write lock (SQLite): every row appended from here has a greater id.
        after_id = conn.execute(select(func.coalesce(func.max(twin_history.c.id), 0))).scalar_one()
        conn.execute(update(w).where(w.c.id == write_id).values(after_id=after_id))
        return write_id, after_id

    def _close_write(self, conn: Connection, write_id: int, count: int, links: int = 0) -> None:
        """Note the last id and the number of a write's changes (in the transaction that appended them); `links`: of
        which links carried inside compact rows."""
        last_id = conn.execute(select(func.coalesce(func.max(twin_history.c.id), 0))).scalar_one()
        conn.execute(
            update(twin_history_write)
            .where(twin_history_write.c.id == write_id)
            .values(last_id=last_id, count=count, links=links or None)
        )

    def _confirm(self, conn: Connection, write_id: int, count: int) -> None:
        """Give a write's `count` rows the next sequence numbers and mark it confirmed (in `conn`'s transaction).

        The sequence row is locked until the transaction ends, so writes are confirmed (committed) in sequence
        order: a reader following `seq_start` never sees a number before the ones below it are committed."""
        s, w = twin_history_sequence, twin_history_write
        last = conn.execute(
            update(s).where(s.c.name == _SEQUENCE).values(last=s.c.last + count).returning(s.c.last)
        ).scalar_one()
        done = conn.execute(
            update(w)
            .where(w.c.id == write_id, w.c.state != CONFIRMED)
            .values(
                state=CONFIRMED,
                count=count,
                seq_start=last - count + 1,
                confirmed_at=dt.datetime.now(dt.UTC),
            )
        ).rowcount
        if done != 1:
            raise HistoryUnsettled(f"history write {write_id} was settled by a recovery before its writer confirmed it")

    def confirm(self, write_id: int, count: int) -> None:
        """Confirm a sealed write whose graph write succeeded."""
        with self.engine.begin() as conn:
            self._confirm(conn, write_id, count)

    def drop(self, write_id: int) -> None:
        """Delete a sealed write and its rows (the graph took none of it)."""
        w = twin_history_write
        with self.engine.begin() as conn:
            bounds = conn.execute(select(w.c.after_id, w.c.last_id).where(w.c.id == write_id)).first()
            if bounds is not None:
                conn.execute(delete(twin_history).where(*_rows_of(write_id, *bounds)))
            conn.execute(delete(w).where(w.c.id == write_id))

    def abandon(self, write_id: int) -> None:
        """Mark a sealed write whose outcome is unknown for the next recovery (whoever runs it)."""
        w = twin_history_write
        with self.engine.begin() as conn:
            conn.execute(update(w).where(w.c.id == write_id, w.c.state == PENDING).values(state=UNSETTLED))

    def unsettled(self) -> list[int]:
        """Pending writes no live writer will confirm: marked unsettled, or their writer's process is gone."""
        w = twin_history_write
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(w.c.id, w.c.state, w.c.owner, w.c.started_at)
                .where(w.c.state.in_((PENDING, UNSETTLED)))
                .order_by(w.c.id)
            ).all()  # indexed
        return [row.id for row in rows if row.state == UNSETTLED or _owner_gone(row.owner, row.started_at)]

    def settle(self, write_id: int, landed: Callable[[list[HistoryEntry]], set[int]]) -> tuple[int, int]:
        """Reconcile a pending write with the graph: `landed` names the ids of its rows whose change the graph holds;
        those are confirmed, the others deleted. Returns (confirmed, dropped)."""
        w = twin_history_write
        with self.engine.connect() as conn:
            bounds = conn.execute(select(w.c.after_id, w.c.last_id, w.c.state).where(w.c.id == write_id)).first()
            if bounds is None or bounds.state == CONFIRMED:
                return 0, 0
            stored = conn.execute(
                select(twin_history)
                .where(*_rows_of(write_id, bounds.after_id, bounds.last_id))
                .order_by(twin_history.c.id)
            ).all()
        entries = self.opened([entry for row in stored for entry in entries_of(row)])
        keep = landed(entries)
        dropped = [row.id for row in stored if row.id not in keep]
        kept = [row for row in stored if row.id in keep]
        count = sum(changes_in(row) for row in kept)
        with self.engine.begin() as conn:
            for start in range(0, len(dropped), 1_000):
                conn.execute(delete(twin_history).where(twin_history.c.id.in_(dropped[start : start + 1_000])))
            if kept:
                links = self._renumber_links(conn, kept) if dropped else sum(changes_in(row) - 1 for row in kept)
                conn.execute(update(w).where(w.c.id == write_id).values(links=links or None))
                self._confirm(conn, write_id, count)
            else:
                conn.execute(delete(w).where(w.c.id == write_id))
        return count, sum(changes_in(row) for row in stored) - count

    @staticmethod
    def _renumber_links(conn: Connection, kept: Sequence[Any]) -> int:
        """Number the links of a write's kept compact rows again after some rows were dropped; returns how many."""
        end = 0
        for row in kept:
            if row.links is None:
                continue
            end += changes_in(row) - 1
            if row.link_end != end:
                conn.execute(update(twin_history).where(twin_history.c.id == row.id).values(link_end=end))
        return end

    def _append(
        self, conn: Connection, changes: Sequence[Change], context: ChangeContext, when: dt.datetime, write_id: int
    ) -> int:
        """Insert the rows of `changes` made at `when` (uncommitted, in `conn`'s transaction)."""
        dumps = _STATE_ENCODER.encode
        if self.seal is not None:
            changes = self._sealed(changes, self.seal)
        rows = [
            (
                c.uid,
                c.kind,
                c.op,
                c.cls,
                c.link_type,
                c.target,
                None if c.before is None else dumps(c.before),
                None if c.after is None else ("{}" if not c.after else dumps(c.after)),
            )
            for c in changes
        ]
        when = _utc(when, "the time of the changes (record's `at`)")  # SQLite keeps only the wall-clock digits
        stamp = self._bind_time(when) if self._bind_time else when
        return self._appender.append(conn, rows, (context.actor, context.source, context.run_id, stamp, write_id))

    def _append_loaded(
        self,
        conn: Connection,
        loaded: Sequence[LoadedTwin],
        link_start: int,
        context: ChangeContext,
        when: dt.datetime,
        write_id: int,
    ) -> int:
        """Insert one compact row per loaded twin (uncommitted, in `conn`'s transaction); `link_start` is the number
        of links the write's earlier compact rows hold. Returns the number of changes the rows hold."""
        afters: Sequence[dict[str, Any] | None] = [twin.after for twin in loaded]
        if self.seal is not None:
            afters = self.seal.seal_states([(twin.uid, twin.after) for twin in loaded])
        rows: list[tuple[Any, ...]] = []
        end = link_start
        for twin, after in zip(loaded, afters, strict=True):
            end += len(twin.links)
            rows.append(
                (
                    twin.uid,
                    twin.cls,
                    after or {},
                    [[rel_type, target, props or {}] for rel_type, target, props in twin.links],
                    list(twin.linked_from) or None,
                    end,
                )
            )
        if not self._compact_appender.embeds_json:  # the states and links go in as JSON text
            dumps = _compact_text
            rows = [
                (uid, cls, dumps(after), dumps(links), None if linked is None else dumps(linked), at_end)
                for uid, cls, after, links, linked, at_end in rows
            ]
        when = _utc(when, "the time of the changes")
        stamp = self._bind_time(when) if self._bind_time else when
        self._compact_appender.append(
            conn, rows, ("twin", "create", context.actor, context.source, context.run_id, stamp, write_id)
        )
        return len(loaded) + end - link_start

    @staticmethod
    def _sealed(changes: Sequence[Change], seal: PersonalValues) -> Sequence[Change]:
        """`changes` with the personal values of their twin states sealed (links carry none)."""
        twins = [i for i, c in enumerate(changes) if c.kind == "twin" and (c.before or c.after)]
        if not twins:
            return changes
        states = seal.seal_states(
            [pair for i in twins for pair in ((changes[i].uid, changes[i].before), (changes[i].uid, changes[i].after))]
        )
        sealed = list(changes)
        for n, i in enumerate(twins):
            sealed[i] = changes[i]._replace(before=states[2 * n], after=states[2 * n + 1])
        return sealed

    def opened(self, entries: list[HistoryEntry]) -> list[HistoryEntry]:
        """`entries` with their sealed values opened (those whose key is gone left out)."""
        seal = self.seal
        if seal is None or not entries:
            return entries
        states = seal.open_states([pair for e in entries for pair in ((e.uid, e.before), (e.uid, e.after))])
        return [
            e
            if (e.before is states[2 * n] and e.after is states[2 * n + 1])
            else _with_states(e, *states[2 * n : 2 * n + 2])
            for n, e in enumerate(entries)
        ]

    def history(self, uid: str, limit: int = 1000) -> list[HistoryEntry]:
        """Changes of the twin `uid` and of links touching it, oldest first (a bulk load's twins before its links)."""
        t = twin_history
        query = select(t).where(or_(t.c.uid == uid, t.c.target == uid)).order_by(t.c.id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            # the compact rows of this twin name the twins of the same load whose links end here
            incoming = [(row.write_id, json.loads(row.linked_from)) for row in rows if row.linked_from]
            seen = {row.id for row in rows}
            sources = []
            for write_id, uids in incoming:
                for start in range(0, len(uids), 500):
                    sources += [
                        row
                        for row in conn.execute(
                            select(t).where(
                                t.c.uid.in_(uids[start : start + 500]), t.c.write_id == write_id, t.c.links.is_not(None)
                            )
                        )
                        if row.id not in seen
                    ]
        # a load's links follow all of its twins (as in the change feed): they are placed at its last row found here
        ends: dict[int, int] = {}
        for row in (*rows, *sources):
            if row.links is not None:
                ends[row.write_id] = max(ends.get(row.write_id, 0), row.id)
        placed: list[tuple[tuple[int, int, int, int], HistoryEntry]] = []
        for row in rows:
            for n, entry in enumerate(entries_of(row)):
                placed.append(((ends[row.write_id], 1, row.id, n) if n else (row.id, 0, 0, 0), entry))
        for row in sources:
            for n, entry in enumerate(entries_of(row)):
                if n and entry.target == uid:
                    placed.append(((ends[row.write_id], 1, row.id, n), entry))
        placed.sort(key=lambda pair: pair[0])
        return self.opened([entry for _, entry in placed[:limit]])

    def as_of(self, uid: str, when: dt.datetime) -> dict[str, Any] | None:
        """The twin's properties (with `_class`) as they were at `when`; None if it did not exist then."""
        when = _utc(when, "as_of's `when`")
        query = (
            select(twin_history)
            .where(twin_history.c.uid == uid, twin_history.c.kind == "twin", twin_history.c.at <= when)
            .order_by(twin_history.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.op == "delete":
            return None
        state = json.loads(row.after) if row.after else {}
        if self.seal is not None:
            state = self.seal.open_state(uid, state)
        return {**state, "_class": row.cls}

    def erase_values(self, uid: str, fields: Iterable[str]) -> int:
        """Drop `fields` from every recorded state of twin `uid` (right to erasure); the change rows stay."""
        erased = set(fields)
        t = twin_history
        cleaned: list[dict[str, Any]] = []
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.c.id, t.c.before, t.c.after).where(t.c.uid == uid, t.c.kind == "twin"))
            for row_id, before, after in rows.all():
                states = [json.loads(state) if state else None for state in (before, after)]
                if not any(state and erased & state.keys() for state in states):
                    continue
                kept = [
                    None
                    if state is None
                    else json.dumps({k: v for k, v in state.items() if k not in erased}, sort_keys=True)
                    for state in states
                ]
                cleaned.append({"row_id": row_id, "new_before": kept[0], "new_after": kept[1]})
            if cleaned:  # one statement for every row (executemany): a subject may have thousands
                conn.execute(
                    update(t)
                    .where(t.c.id == bindparam("row_id"))
                    .values(before=bindparam("new_before"), after=bindparam("new_after")),
                    cleaned,
                )
                s = twin_history_sequence  # an erasure rewrites recorded states: cached as-of graphs are stale
                if not conn.execute(update(s).where(s.c.name == _ERASURES).values(last=s.c.last + 1)).rowcount:
                    conn.execute(insert(s).values(name=_ERASURES, last=1))
        return len(cleaned)

    # ------------------------------------------------------------------ the whole graph at a time

    def point(self, when: dt.datetime) -> HistoryPoint:
        """What identifies the recorded history up to `when`: confirmed writes up to then, the last row id, and the
        number of erasures (which rewrite recorded states); equal points replay to equal graphs."""
        when = _utc(when, "the as-of time")
        w, s = twin_history_write, twin_history_sequence
        with self.engine.connect() as conn:
            writes, last_id = conn.execute(
                select(func.count(), func.coalesce(func.max(w.c.last_id), 0)).where(
                    w.c.state == CONFIRMED, w.c.started_at <= when
                )
            ).one()
            erasures = conn.execute(select(s.c.last).where(s.c.name == _ERASURES)).scalar_one_or_none()
        return HistoryPoint(int(writes), int(last_id), int(erasures or 0))

    def first_time(self) -> dt.datetime | None:
        """When the first confirmed write was made; None when nothing is recorded."""
        w = twin_history_write
        with self.engine.connect() as conn:
            first = conn.execute(select(func.min(w.c.started_at)).where(w.c.state == CONFIRMED)).scalar_one_or_none()
        return None if first is None else (first if first.tzinfo else first.replace(tzinfo=dt.UTC))

    def states_until(self, when: dt.datetime) -> list[tuple[Any, ...]]:
        """Every confirmed change made at or before `when`, oldest first, as (kind, op, uid, class, link type, target,
        state after as JSON text, links as JSON text): what a replay needs, fetched in one go (a compact row's links
        are the links its load created from the twin; None for a row of one change)."""
        t = twin_history
        query = (
            select(t.c.kind, t.c.op, t.c.uid, t.c.cls, t.c.link_type, t.c.target, t.c.after, t.c.links)
            .where(t.c.at <= _utc(when, "the as-of time"), t.c.write_id.in_(self._confirmed()))
            .order_by(t.c.id)
        )
        with self.engine.connect() as conn:
            result = conn.execute(query)
            return list(result.cursor.fetchall())  # plain driver tuples: these columns need no conversion

    def rows_between(self, start: dt.datetime, end: dt.datetime) -> Iterator[RawChange]:
        """Confirmed changes made after `start` and at or before `end`, oldest first (a compact row's twin, then
        its links)."""
        t = twin_history
        query = (
            select(
                t.c.id, t.c.kind, t.c.op, t.c.uid, t.c.cls, t.c.link_type, t.c.target, t.c.before, t.c.after, t.c.links
            )
            .where(
                t.c.at > _utc(start, "the start time"),
                t.c.at <= _utc(end, "the end time"),
                t.c.write_id.in_(self._confirmed()),
            )
            .order_by(t.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            if row.links is None:
                yield RawChange(*row[:-1])
                continue
            yield RawChange(row.id, "twin", "create", row.uid, row.cls, None, None, None, row.after)
            for rel_type, target, props in json.loads(row.links):
                yield RawChange(row.id, "link", "create", row.uid, None, rel_type, target, None, json.dumps(props))

    def _confirmed(self) -> Any:
        """The ids of confirmed writes, as a subquery."""
        w = twin_history_write
        return select(w.c.id).where(w.c.state == CONFIRMED)

    def classes_until(self, uids: Sequence[str], when: dt.datetime) -> dict[str, str]:
        """The class each of these twins had in its last confirmed change at or before `when` (deleted ones too)."""
        t, w = twin_history, twin_history_write
        when = _utc(when, "the as-of time")
        confirmed = select(w.c.id).where(w.c.state == CONFIRMED)
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(uids), 500):
                rows = conn.execute(
                    select(t.c.uid, t.c.cls)
                    .where(
                        t.c.uid.in_(uids[start : start + 500]),
                        t.c.kind == "twin",
                        t.c.at <= when,
                        t.c.write_id.in_(confirmed),
                    )
                    .order_by(t.c.id)
                )
                found.update({uid: cls for uid, cls in rows if cls is not None})
        return found


class HistoryPoint(NamedTuple):
    """The recorded history up to a time, as far as replaying it goes (equal points give equal graphs)."""

    writes: int
    last_id: int
    erasures: int


class RawChange(NamedTuple):
    """One recorded change as stored (states as JSON text), for replays that decode only what they keep."""

    id: int
    kind: str
    op: str
    uid: str
    cls: str | None
    link_type: str | None
    target: str | None
    before: str | None
    after: str | None


_COMPACT_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def _compact_text(value: Any) -> str:
    """`value` as JSON text for a compact row: what `_STATE_ENCODER` writes, read back (sorted keys, str() of other
    types), in a tenth of its time. A bulk load refuses NaN and infinities (graph/bulk.py), which orjson would write
    as null; an integer beyond 64 bits goes through the standard library."""
    try:
        return orjson.dumps(value, default=str, option=_COMPACT_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _STATE_ENCODER.encode(value)


def as_recorded(value: Any) -> Any:
    """`value` as a history state holds it once read back (the JSON round trip), to compare with recorded states."""
    return json.loads(_STATE_ENCODER.encode(value))


def _rows_of(write_id: int, after_id: int, last_id: int | None) -> tuple[Any, ...]:
    """Conditions selecting the history rows of one write (its id range bounds the scan)."""
    t = twin_history
    bounded = (t.c.id > after_id,) if last_id is None else (t.c.id > after_id, t.c.id <= last_id)
    return (*bounded, t.c.write_id == write_id)


def _add_write_column(engine: Any) -> None:
    """Add `write_id` to a history table created before writes were recorded (tolerating a concurrent adder)."""
    if "write_id" in {c["name"] for c in inspect(engine).get_columns("twin_history")}:
        return
    with contextlib.suppress(OperationalError, ProgrammingError), engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE twin_history ADD COLUMN write_id BIGINT")


def _start_sequence(engine: Any) -> None:
    """Create the sequence row at 0 if missing (tolerating a concurrent creator)."""
    s = twin_history_sequence
    with engine.connect() as conn:
        if conn.execute(select(s.c.last).where(s.c.name == _SEQUENCE)).first() is not None:
            return
    with contextlib.suppress(IntegrityError), engine.begin() as conn:
        conn.execute(insert(s).values(name=_SEQUENCE, last=0))


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None if there is no such process: with the pid, it
    names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_HOST = socket.gethostname()
_owners: dict[int, str] = {}


def _owner() -> str:
    """This process as the owner of the writes it begins: host/pid/start (worked out again in a forked child)."""
    pid = os.getpid()
    if pid not in _owners:
        _owners[pid] = f"{_HOST}/{pid}/{_process_start(pid)}"
    return _owners[pid]


def _owner_gone(owner: str, started_at: dt.datetime) -> bool:
    """Whether the process that began a write is gone (so no one will confirm it); a process on another host is
    presumed gone once the write is older than STALE_ELSEWHERE."""
    host, _, rest = owner.partition("/")
    pid, _, start = rest.partition("/")
    if host != _HOST or not pid.isdigit():
        begun = started_at if started_at.tzinfo else started_at.replace(tzinfo=dt.UTC)
        return dt.datetime.now(dt.UTC) - begun > STALE_ELSEWHERE
    if owner == _owner():
        return False
    return _process_start(int(pid)) != start


def _utc(when: dt.datetime, name: str) -> dt.datetime:
    """`when` in UTC (naive means UTC): SQLite compares stored times as text, so every time must be in one zone."""
    if not isinstance(when, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(when).__name__}: {when!r}")
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def entry_of(row: Any) -> HistoryEntry:
    """A history row as read back (times in UTC, states decoded)."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
    return HistoryEntry(
        id=row.id,
        uid=row.uid,
        kind=row.kind,
        op=row.op,
        cls=row.cls,
        link_type=row.link_type,
        target=row.target,
        actor=row.actor,
        source=row.source,
        run_id=row.run_id,
        at=at,
        before=json.loads(row.before) if row.before else None,
        after=json.loads(row.after) if row.after else None,
    )


def entries_of(row: Any) -> list[HistoryEntry]:
    """The changes a history row holds: itself, or for a compact row the twin's creation then one creation per
    link its load made from the twin (all with the row's id)."""
    entry = entry_of(row)
    if row.links is None:
        return [entry]
    return [
        entry,
        *(
            dataclasses.replace(
                entry, kind="link", cls=None, link_type=rel_type, target=target, before=None, after=props or {}
            )
            for rel_type, target, props in json.loads(row.links)
        ),
    ]


def changes_in(row: Any) -> int:
    """How many changes a history row holds (a compact row: its twin and its links)."""
    return 1 if row.links is None else 1 + len(json.loads(row.links))


def _with_states(entry: HistoryEntry, before: dict[str, Any] | None, after: dict[str, Any] | None) -> HistoryEntry:
    """`entry` with other before/after states (opened ones)."""
    return dataclasses.replace(entry, before=before, after=after)


class _Loaded(NamedTuple):
    """Compact rows handed to the insert thread: the twins, and how many links the write's earlier ones hold."""

    twins: Sequence[LoadedTwin]
    link_start: int


class PendingChanges:
    """The intent of one graph write: its history rows, inserted by a worker thread while the caller prepares the
    write, committed as pending (`seal`) before the graph is written, and confirmed after.

    The caller hands changes over as it makes them (`add`), so the insert (the costly part) overlaps the rest of its
    work. Because the rows are durable before the graph write starts, a process killed at any point leaves either
    no trace (killed before `seal`: nothing was written to the graph either) or a pending write that the recovery
    (`HistoryStore.unsettled` and `settle`) reconciles with the graph: history never misses a change the graph took
    and never keeps one it did not.
    """

    def __init__(self, store: HistoryStore, changes: Sequence[Change], context: ChangeContext) -> None:
        self.count = 0
        self.write_id: int | None = None
        self._store = store
        self._context = context
        self._when = dt.datetime.now(dt.UTC)  # the time of the call, for every change it hands over
        self.links = 0  # of `count`, links carried inside compact rows
        self._work: queue.Queue[Sequence[Change] | _Loaded | bool] = queue.Queue()  # changes, then the decision
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sealed = False
        self._finished = False
        self.add(changes)

    @property
    def sealed(self) -> bool:
        """Whether the rows were made durable as pending (the graph may have been written since)."""
        return self._sealed

    def add(self, changes: Sequence[Change]) -> None:
        """Hand over more changes of the same write, before it is sealed."""
        if self._sealed or self._finished:
            raise RuntimeError("history changes were added after their write was committed or sealed")
        if not changes:
            return
        self.count += len(changes)
        self._hand_over(changes)

    def add_loaded(self, loaded: Sequence[LoadedTwin]) -> None:
        """Hand over twins a bulk load creates, each with its links, as compact rows (one per twin)."""
        if self._sealed or self._finished:
            raise RuntimeError("history changes were added after their write was committed or sealed")
        if not loaded:
            return
        links = sum(len(twin.links) for twin in loaded)
        self._hand_over(_Loaded(loaded, self.links))
        self.count += len(loaded) + links
        self.links += links

    def _hand_over(self, item: Sequence[Change] | _Loaded) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="history-insert", daemon=True)
            self._thread.start()
        self._work.put(item)

    def _run(self) -> None:
        store = self._store
        try:
            with store.engine.connect() as conn:
                transaction = conn.begin()
                try:
                    write_id, _ = store._open_write(conn, self._when)
                    while not isinstance(item := self._work.get(), bool):
                        if isinstance(item, _Loaded):
                            store._append_loaded(conn, item.twins, item.link_start, self._context, self._when, write_id)
                        else:
                            store._append(conn, item, self._context, self._when, write_id)  # encoded off the writer
                    if item:
                        store._close_write(conn, write_id, self.count, self.links)
                except BaseException:
                    transaction.rollback()
                    raise
                if item:
                    transaction.commit()
                    self.write_id = write_id
                else:
                    transaction.rollback()
        except BaseException as exc:  # handed to the caller's seal()
            self._error = exc
        finally:
            self._done.set()

    def seal(self) -> None:
        """Make the rows durable as a pending write; call before writing the graph (raises if they could not be)."""
        if self._sealed:
            return
        self._sealed = True
        self._stop(True)
        if self._error is not None:
            raise self._error

    def commit(self) -> int:
        """Confirm the rows once the graph has taken the write; returns how many there are."""
        self.seal()
        if not self._finished:
            self._finished = True
            if self.write_id is not None:
                self._store.confirm(self.write_id, self.count)
        return self.count

    def rollback(self) -> None:
        """Drop the rows: the graph took nothing of the write."""
        if self._finished:
            return
        self._finished = True
        if not self._sealed:
            self._sealed = True
            self._stop(False)
        elif self.write_id is not None:
            self._store.drop(self.write_id)

    def settle(self, landed: Callable[[list[HistoryEntry]], set[int]]) -> None:
        """After a failed graph write: keep the rows of what the graph holds (`landed`: their ids), drop the rest;
        if that cannot be done now, leave the write to the next recovery."""
        if self._finished:
            return
        self._finished = True
        if not self._sealed:  # the graph was not written
            self._sealed = True
            self._stop(False)
            return
        if self.write_id is None:
            return
        try:
            self._store.settle(self.write_id, landed)
        except Exception:
            with contextlib.suppress(Exception):
                self._store.abandon(self.write_id)  # else its process's end makes it unsettled anyway
            raise

    def _stop(self, keep: bool) -> None:
        """Hand the worker its decision (commit the pending rows or roll them back) and wait for it to end."""
        if self._thread is None:
            return
        self._work.put(keep)  # read unless the thread has already stopped on an error
        self._done.wait()
        self._thread.join()
        self._thread = None
