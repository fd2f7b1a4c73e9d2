"""Valid time beside transaction time: when a source says a change takes effect (a transfer effective next month).

History (graph/history.py) keeps transaction time: what the graph held when. Where a connector mapping names a
source's effective-date field (`valid_from: FIELD`), each write of a twin from that source also records a *version*
here: the twin, the property names the mapping sets, the time the version is valid from, and the time it was
recorded. A version holds no values: its values are the twin's values in history at the time it was recorded, so
sealed personal values stay sealed and an erasure erases them here too. Before the first version of a twin that
already existed, a baseline version (valid since ever, recorded just before the write) keeps what the twin held.

A read `asOf: A, validAt: T` answers on the graph as of A (transaction time, graph/as_of.py), where each twin that has
versions recorded by A shows, for every property its versions cover, the value of the latest version valid from T or
earlier (the latest recorded one when a version is given again); a property none of those versions holds is absent,
and a twin none of whose versions is valid yet (created with an effective date after T) is left out with its links.
Twins without versions read as history has them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, func, or_, select

from graph.errors import GraphError
from graph.history import HistoryStore
from graph.relational import create_tables, relational_engine
from graph.replay import ReplayedGraph

metadata = MetaData()

twin_valid_time = Table(
    "twin_valid_time",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("uid", String(512), nullable=False),
    Column("valid_from", DateTime(timezone=True)),  # None: valid since ever (a baseline: what the twin held before)
    Column("recorded_at", DateTime(timezone=True), nullable=False),  # transaction time; the values are history's then
    Column("properties", Text, nullable=False),  # JSON list of the property names the version sets
    Column("source", String(256)),
    Index("ix_twin_valid_time_uid", "uid"),
    Index("ix_twin_valid_time_recorded_at", "recorded_at"),
)


class ValidTimeUnavailable(GraphError):
    """A validAt read where no valid time is recorded (no connector mapping names an effective-date field)."""


class ValidTimeInvalid(GraphError):
    """A valid time that is not a date and time."""


@dataclass(frozen=True)
class ValidVersion:
    """One twin's values for `properties`, valid from `valid_from` as a source says (to record)."""

    uid: str
    valid_from: dt.datetime
    properties: tuple[str, ...]


class ValidPoint(NamedTuple):
    """What identifies a valid-time view: the last version recorded by the as-of time and how many of the versions
    recorded by then are valid at the valid time (equal points give equal overlays)."""

    last_id: int
    valid: int


class _Version(NamedTuple):
    id: int
    valid_from: dt.datetime | None
    recorded_at: dt.datetime
    properties: tuple[str, ...]


def utc(when: dt.datetime, name: str) -> dt.datetime:
    """`when` in UTC (naive means UTC); ValidTimeInvalid when it is not a datetime."""
    if not isinstance(when, dt.datetime):
        raise ValidTimeInvalid(f"{name} must be a date and time, got {type(when).__name__}")
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


class ValidTimes:
    """The valid-time versions of twins, in the relational store beside history (same URL, same engine)."""

    _opened: dict[str, ValidTimes] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    @classmethod
    def beside(cls, history: HistoryStore) -> ValidTimes:
        """The valid-time store at history's URL (opened once per process and URL)."""
        found = cls._opened.get(history.url)
        if found is None:
            found = cls._opened[history.url] = cls(history.url)
        return found

    def record(self, versions: Sequence[ValidVersion], before: dt.datetime, source: str | None = None) -> int:
        """Record `versions` of twins just written (recorded now, after the write); a twin with no version yet gets
        a baseline first, recorded at `before` (a time before the write). Returns the versions recorded."""
        if not versions:
            return 0
        t = twin_valid_time
        now = dt.datetime.now(dt.UTC)
        before = utc(before, "the time before the write")
        uids = sorted({v.uid for v in versions})
        with self.engine.begin() as conn:
            known: set[str] = set()
            for start in range(0, len(uids), 500):
                known |= set(
                    conn.execute(select(t.c.uid).where(t.c.uid.in_(uids[start : start + 500])).distinct()).scalars()
                )
            rows = []
            baselined: set[str] = set()
            for version in versions:
                names = json.dumps(sorted(version.properties))
                if version.uid not in known and version.uid not in baselined:
                    baselined.add(version.uid)
                    rows.append(
                        {
                            "uid": version.uid,
                            "valid_from": None,
                            "recorded_at": before,
                            "properties": names,
                            "source": source,
                        }
                    )
                rows.append(
                    {
                        "uid": version.uid,
                        "valid_from": utc(version.valid_from, "valid_from"),
                        "recorded_at": now,
                        "properties": names,
                        "source": source,
                    }
                )
            conn.execute(t.insert(), rows)
        return len(versions)

    def recorded(self, as_of: dt.datetime) -> bool:
        """Whether any version was recorded by `as_of`."""
        t = twin_valid_time
        with self.engine.connect() as conn:
            return (
                conn.execute(select(t.c.id).where(t.c.recorded_at <= utc(as_of, "asOf")).limit(1)).first() is not None
            )

    def point(self, as_of: dt.datetime, valid_at: dt.datetime) -> ValidPoint:
        """The point of the view `valid_at` as known at `as_of`."""
        t = twin_valid_time
        as_of, valid_at = utc(as_of, "asOf"), utc(valid_at, "validAt")
        with self.engine.connect() as conn:
            last, valid = conn.execute(
                select(
                    func.coalesce(func.max(t.c.id), 0),
                    func.count().filter(or_(t.c.valid_from.is_(None), t.c.valid_from <= valid_at)),
                ).where(t.c.recorded_at <= as_of)
            ).one()
        return ValidPoint(int(last), int(valid or 0))

    def versions(self, as_of: dt.datetime) -> dict[str, list[_Version]]:
        """Every twin's versions recorded by `as_of`, oldest recorded first."""
        t = twin_valid_time
        query = (
            select(t.c.id, t.c.uid, t.c.valid_from, t.c.recorded_at, t.c.properties)
            .where(t.c.recorded_at <= utc(as_of, "asOf"))
            .order_by(t.c.id)
        )
        found: dict[str, list[_Version]] = {}
        with self.engine.connect() as conn:
            for row_id, uid, valid_from, recorded_at, names in conn.execute(query):
                found.setdefault(uid, []).append(
                    _Version(
                        row_id,
                        None if valid_from is None else utc(valid_from, "valid_from"),
                        utc(recorded_at, "recorded_at"),
                        tuple(json.loads(names)),
                    )
                )
        return found

    def overlay(
        self, graph: ReplayedGraph, history: HistoryStore, as_of: dt.datetime, valid_at: dt.datetime
    ) -> ReplayedGraph:
        """`graph` (the graph as of `as_of`) as valid at `valid_at`: see the module's description."""
        valid_at = utc(valid_at, "validAt")
        hidden: set[str] = set()
        for uid, versions in self.versions(as_of).items():
            if uid not in graph.twins:
                continue
            covered = {name for version in versions for name in version.properties}
            latest: dict[dt.datetime | None, _Version] = {}
            for version in versions:  # a version given again (same valid-from) replaces the earlier one
                latest[version.valid_from] = version
            applicable = sorted(
                (v for v in latest.values() if v.valid_from is None or v.valid_from <= valid_at),
                key=lambda v: (v.valid_from is not None, v.valid_from or v.recorded_at, v.id),
            )
            merged: dict[str, object] = {}
            held = False
            for version in applicable:
                state = history.as_of(uid, version.recorded_at)
                if state is None:  # a baseline of a twin that did not exist yet
                    continue
                held = True
                for name in version.properties:
                    if state.get(name) is not None:
                        merged[name] = state[name]
                    else:
                        merged.pop(name, None)
            if not held:
                hidden.add(uid)
                continue
            cls, current = graph.twins[uid]
            graph.twins[uid] = (cls, {**{k: v for k, v in current.items() if k not in covered}, **merged})
        if hidden:
            for uid in hidden:
                del graph.twins[uid]
            graph.links_by_type = {
                rel_type: {
                    (source, target): props
                    for (source, target), props in pairs.items()
                    if source not in hidden and target not in hidden
                }
                for rel_type, pairs in graph.links_by_type.items()
            }
        return graph


def valid_point(history: HistoryStore, as_of: dt.datetime, valid_at: dt.datetime) -> ValidPoint:
    """The valid-time point of a read `asOf`/`validAt` (graph/as_of.py caches graphs by it); ValidTimeUnavailable when
    no valid time was recorded by `as_of`."""
    store = ValidTimes.beside(history)
    valid_at = utc(valid_at, "validAt")
    if not store.recorded(as_of):
        raise ValidTimeUnavailable(
            f"validAt {valid_at.isoformat()}: no valid time is recorded (as of {utc(as_of, 'asOf').isoformat()}); "
            "it is kept only for twins whose connector mapping names an effective-date field (`valid_from:`), "
            "so read with asOf alone"
        )
    return store.point(as_of, valid_at)


def valid_overlay(
    history: HistoryStore, graph: ReplayedGraph, as_of: dt.datetime, valid_at: dt.datetime
) -> ReplayedGraph:
    """The replayed graph as of `as_of`, as valid at `valid_at` (graph/as_of.py's hook)."""
    return ValidTimes.beside(history).overlay(graph, history, as_of, valid_at)
