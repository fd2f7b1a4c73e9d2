"""The change history of the twin graph, kept in the relational store: who/what/when, before and after."""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    or_,
    select,
    update,
)

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
    Index("ix_twin_history_uid_at", "uid", "at"),
    Index("ix_twin_history_target", "target"),
)


_ROW_COLUMNS = ("uid", "kind", "op", "cls", "link_type", "target", "before", "after")  # one value per change
_CALL_COLUMNS = ("actor", "source", "run_id", "at")  # one value per call


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
    """Append-only change log of twins and links with `history(uid)` and `as_of(uid, time)`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        dialect = self.engine.dialect
        self._bind_time = twin_history.c.at.type.dialect_impl(dialect).bind_processor(dialect)
        self._appender = RowAppender(self.engine, twin_history, _ROW_COLUMNS, _CALL_COLUMNS)

    def record(self, changes: Sequence[Change], context: ChangeContext, at: dt.datetime | None = None) -> int:
        """Append `changes` in one transaction; returns how many were written."""
        if not changes:
            return 0
        with self.engine.begin() as conn:
            return self._append(conn, changes, context, at or dt.datetime.now(dt.UTC))

    def begin(self, changes: Sequence[Change], context: ChangeContext) -> "PendingChanges":
        """Start appending `changes` (more may follow through `add`) in a transaction of their own, in a thread, while
        the caller writes the graph; the caller then commits them (the graph took the write) or rolls them back."""
        return PendingChanges(self, changes, context)

    def _append(self, conn: Connection, changes: Sequence[Change], context: ChangeContext, when: dt.datetime) -> int:
        """Insert the rows of `changes` made at `when` (uncommitted, in `conn`'s transaction)."""
        dumps = _STATE_ENCODER.encode
        rows = [
            (c.uid, c.kind, c.op, c.cls, c.link_type, c.target,
             None if c.before is None else dumps(c.before),
             None if c.after is None else ("{}" if not c.after else dumps(c.after)))
            for c in changes
        ]
        when = _utc(when, "the time of the changes (record's `at`)")  # SQLite keeps only the wall-clock digits
        stamp = self._bind_time(when) if self._bind_time else when
        return self._appender.append(conn, rows, (context.actor, context.source, context.run_id, stamp))

    def history(self, uid: str, limit: int = 1000) -> list[HistoryEntry]:
        """Changes of the twin `uid` and of links touching it, oldest first."""
        query = (
            select(twin_history)
            .where(or_(twin_history.c.uid == uid, twin_history.c.target == uid))
            .order_by(twin_history.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

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
        return {**state, "_class": row.cls}

    def erase_values(self, uid: str, fields: Iterable[str]) -> int:
        """Drop `fields` from every recorded state of twin `uid` (right to erasure); the change rows stay."""
        erased = set(fields)
        t = twin_history
        changed = 0
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.c.id, t.c.before, t.c.after).where(t.c.uid == uid, t.c.kind == "twin"))
            for row_id, before, after in rows.all():
                states = [json.loads(state) if state else None for state in (before, after)]
                if not any(state and erased & state.keys() for state in states):
                    continue
                cleaned = [
                    None if state is None else json.dumps({k: v for k, v in state.items() if k not in erased},
                                                          sort_keys=True)
                    for state in states
                ]
                conn.execute(update(t).where(t.c.id == row_id).values(before=cleaned[0], after=cleaned[1]))
                changed += 1
        return changed


def _utc(when: dt.datetime, name: str) -> dt.datetime:
    """`when` in UTC (naive means UTC): SQLite compares stored times as text, so every time must be in one zone."""
    if not isinstance(when, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(when).__name__}: {when!r}")
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _entry(row: Any) -> HistoryEntry:
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


class PendingChanges:
    """History rows inserted by a worker thread in an open transaction, waiting for the graph write's outcome.

    The caller hands changes over as it makes them (`add`), so the insert (the costly part) overlaps the rest of its
    work and the graph's round trips; the commit waits for the graph to acknowledge, so history never records a
    change the graph refused, and a failed history insert fails the caller's write call.
    """

    def __init__(self, store: HistoryStore, changes: Sequence[Change], context: ChangeContext) -> None:
        self.count = 0
        self._store = store
        self._context = context
        self._when = dt.datetime.now(dt.UTC)  # the time of the call, for every change it hands over
        self._work: queue.Queue[Sequence[Change] | bool] = queue.Queue()  # changes, then the decision
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._finished = False
        self.add(changes)

    def add(self, changes: Sequence[Change]) -> None:
        """Hand over more changes of the same write; they commit or roll back with the rest."""
        if self._finished:
            raise RuntimeError("history changes were added after their write was committed or rolled back")
        if not changes:
            return
        self.count += len(changes)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="history-insert", daemon=True)
            self._thread.start()
        self._work.put(changes)

    def _run(self) -> None:
        store = self._store
        try:
            with store.engine.connect() as conn:
                transaction = conn.begin()
                try:
                    while not isinstance(item := self._work.get(), bool):
                        store._append(conn, item, self._context, self._when)  # encoded here: off the writer's thread
                except BaseException:
                    transaction.rollback()
                    raise
                if item:
                    transaction.commit()
                else:
                    transaction.rollback()
        except BaseException as exc:  # handed to the caller's commit()
            self._error = exc
        finally:
            self._done.set()

    def commit(self) -> int:
        """Make the rows durable once the graph has taken the write; returns how many were written."""
        self._finish(True)
        if self._error is not None:
            raise self._error
        return self.count

    def rollback(self) -> None:
        """Drop the rows (the graph write failed)."""
        self._finish(False)

    def _finish(self, keep: bool) -> None:
        if self._finished:
            return
        self._finished = True
        if self._thread is None:
            return
        self._work.put(keep)  # read unless the thread has already stopped on an error
        self._done.wait()
        self._thread.join()
        self._thread = None
