"""The change feed: every confirmed change of the twin in one gap-free sequence, read from history itself.

History is the outbox: a graph write's history rows are committed as pending before the graph is written and
confirmed after it (graph/history.py), and confirmation gives the write's rows the next sequence numbers while it
holds the sequence row's lock. So writes are confirmed in sequence order, a reader never sees a number before the
ones below it are committed, and a change that reached the graph is in the feed exactly once, with no second
write to forget. A write's rows take the numbers `seq_start .. seq_start + count - 1` in the order of their ids.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, String, select, type_coerce
from sqlalchemy.exc import OperationalError, ProgrammingError

from graph.errors import GraphError
from graph.history import (
    CONFIRMED,
    HistoryEntry,
    HistoryStore,
    twin_history,
    twin_history_sequence,
    twin_history_write,
)

MAX_PAGE = 10_000  # changes one read returns at most
_SEQUENCE = "history"
# the columns of a change; `at` as stored (SQLAlchemy's per-row DateTime parsing on SQLite cost more than the rest)
_COLUMNS = (
    twin_history.c.uid,
    twin_history.c.kind,
    twin_history.c.op,
    twin_history.c.cls,
    twin_history.c.link_type,
    twin_history.c.target,
    twin_history.c.actor,
    twin_history.c.source,
    twin_history.c.run_id,
    type_coerce(twin_history.c.at, String).label("at"),
    twin_history.c.before,
    twin_history.c.after,
)


class FeedError(GraphError):
    """A feed read was asked for something it cannot give (a cursor beyond the feed's end, a bad page size)."""


@dataclass(frozen=True)
class FeedChange:
    """One committed change with its place in the feed."""

    seq: int
    uid: str  # the twin, or a link's source
    kind: str  # twin | link
    op: str  # create | update | delete
    cls: str | None  # the twin's class when the change was made (links: None)
    link_type: str | None
    target: str | None  # a link's target
    actor: str
    source: str | None
    run_id: str | None
    at: dt.datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, seq: int, entry: HistoryEntry) -> FeedChange:
        """The change `entry` at sequence number `seq`."""
        return cls(
            seq,
            entry.uid,
            entry.kind,
            entry.op,
            entry.cls,
            entry.link_type,
            entry.target,
            entry.actor,
            entry.source,
            entry.run_id,
            entry.at,
            entry.before,
            entry.after,
        )

    @classmethod
    def of_row(cls, seq: int, row: tuple[Any, ...]) -> FeedChange:
        """The change of a row of `_COLUMNS` at sequence number `seq` (states decoded, time in UTC)."""
        uid, kind, op, class_name, link_type, target, actor, source, run_id, at, before, after = row
        return cls(
            seq,
            uid,
            kind,
            op,
            class_name,
            link_type,
            target,
            actor,
            source,
            run_id,
            _utc(at),
            _state(before),
            _state(after),
        )

    def seen_as(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> FeedChange:
        """The same change with its states as a reader sees them (masked); cheaper than dataclasses.replace."""
        return FeedChange(
            self.seq,
            self.uid,
            self.kind,
            self.op,
            self.cls,
            self.link_type,
            self.target,
            self.actor,
            self.source,
            self.run_id,
            self.at,
            before,
            after,
        )


def _utc(at: dt.datetime | str) -> dt.datetime:
    """A stored time in UTC: PostgreSQL gives a datetime; SQLite's text is parsed here (fromisoformat, in C)."""
    when = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _state(text: str | None) -> dict[str, Any] | None:
    """A stored property map (orjson; the standard library for the NaN/Infinity history's encoder may write)."""
    if not text:
        return None
    try:
        return orjson.loads(text)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return json.loads(text)  # type: ignore[no-any-return]


def _loaded_links(
    conn: Connection, of_write: tuple[Any, ...], seq_links: int, start: int, wanted: int
) -> list[FeedChange]:
    """Up to `wanted` link creations held in a write's compact rows, from its `start`-th link on (`seq_links`: the
    sequence number of its first link)."""
    t = twin_history
    found: list[FeedChange] = []
    after_row = 0
    while len(found) < wanted:
        rows = conn.execute(
            select(*_COLUMNS, t.c.id, t.c.links, t.c.link_end)
            .where(*of_write, t.c.link_end > start, t.c.id > after_row)
            .order_by(t.c.id)
            .limit(wanted - len(found) + 100)
        ).all()
        if not rows:
            break
        for row in rows:
            after_row = row.id
            held = _state_list(row.links)
            first = row.link_end - len(held)  # the write's index of this row's first link
            for n in range(max(0, start - first), len(held)):
                rel_type, target, props = held[n]
                found.append(
                    FeedChange(
                        seq_links + first + n,
                        row.uid,
                        "link",
                        "create",
                        None,
                        rel_type,
                        target,
                        row.actor,
                        row.source,
                        row.run_id,
                        _utc(row.at),
                        None,
                        props or {},
                    )
                )
                if len(found) == wanted:
                    return found
            start = max(start, row.link_end)
    return found


def _state_list(text: str) -> list[Any]:
    """A compact row's links as recorded."""
    try:
        return orjson.loads(text)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return json.loads(text)  # type: ignore[no-any-return]


class ChangeFeed:
    """Reads the feed of one history store: the head, and pages of changes after a cursor (a sequence number)."""

    def __init__(self, history: HistoryStore) -> None:
        self.history = history
        self.engine = history.engine
        with contextlib.suppress(OperationalError, ProgrammingError), self.engine.begin() as conn:
            # a history table created before the feed existed lacks this index; every page read needs it
            conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_twin_history_write_id ON twin_history (write_id)")

    def head(self) -> int:
        """The sequence number of the newest confirmed change (0 when the feed is empty)."""
        with self.engine.connect() as conn:
            last = conn.execute(
                select(twin_history_sequence.c.last).where(twin_history_sequence.c.name == _SEQUENCE)
            ).scalar_one_or_none()
        return int(last or 0)

    def read(self, after: int = 0, limit: int = 1_000) -> list[FeedChange]:
        """The changes numbered after `after`, oldest first, at most `limit`; FeedError for a cursor past the head."""
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise FeedError(f"a feed cursor is a sequence number >= 0, got {str(after)[:40]!r}")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise FeedError(f"a feed page holds 1 to {MAX_PAGE} changes, got {str(limit)[:40]!r}")
        w = twin_history_write
        with self.engine.connect() as conn:
            head = (
                conn.execute(
                    select(twin_history_sequence.c.last).where(twin_history_sequence.c.name == _SEQUENCE)
                ).scalar_one_or_none()
                or 0
            )
            if after > head:
                raise FeedError(f"cursor {after} is beyond the feed's end ({head})")
            writes = conn.execute(
                select(w.c.id, w.c.seq_start, w.c.count, w.c.after_id, w.c.last_id, w.c.links)
                .where(w.c.state == CONFIRMED, w.c.seq_start + w.c.count > after + 1, w.c.count > 0)
                .order_by(w.c.seq_start)
                .limit(limit)
            ).all()
            changes: list[FeedChange] = []
            for write in writes:
                skip = max(0, after + 1 - write.seq_start)  # changes of this write the cursor has passed
                count: int = write._mapping["count"]
                wanted = min(count - skip, limit - len(changes))
                twins = count - (write.links or 0)  # its rows; the links of compact rows follow them
                of_write = (
                    twin_history.c.write_id == write.id,
                    twin_history.c.id > write.after_id,
                    *((twin_history.c.id <= write.last_id,) if write.last_id is not None else ()),
                )
                if skip < twins:
                    rows = conn.execute(
                        select(*_COLUMNS)
                        .where(*of_write)
                        .order_by(twin_history.c.id)
                        .offset(skip)
                        .limit(min(wanted, twins - skip))
                    ).all()
                    first = write.seq_start + skip
                    changes += [FeedChange.of_row(first + i, tuple(row)) for i, row in enumerate(rows)]
                    wanted -= len(rows)
                if wanted > 0 and write.links:
                    changes += _loaded_links(conn, of_write, write.seq_start + twins, max(0, skip - twins), wanted)
                if len(changes) >= limit:
                    break
        return self._opened(changes)

    def _opened(self, changes: list[FeedChange]) -> list[FeedChange]:
        """`changes` with their sealed personal values opened (graph/personal_values.py; erased ones left out)."""
        seal = self.history.seal
        if seal is None or not changes:
            return changes
        states = seal.open_states([pair for c in changes for pair in ((c.uid, c.before), (c.uid, c.after))])
        return [
            c
            if c.before is states[2 * n] and c.after is states[2 * n + 1]
            else c.seen_as(states[2 * n], states[2 * n + 1])
            for n, c in enumerate(changes)
        ]
