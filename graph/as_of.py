"""The whole twin graph as it was at a past time (transaction time), read with the normal read engine.

Design: the recorded history up to the time is replayed (graph/replay.py) into a scratch graph on the same FalkorDB
server, created in one GRAPH.BULK write (graph/bulk.py), and read through an ordinary `TwinReader`: every query, the
caller's scope and the policy's masks work unchanged, because the engine does not know it reads the past. Scratch
graphs are cached per history point (`HistoryStore.point`: the confirmed writes up to the time and the erasures
since), not per time: every time between the same two writes shares one graph. The cache is bounded (LRU); an
evicted graph is deleted from the server. An erasure changes the point, so a graph built before it is never read
again and is deleted when the graph server's log is compacted (`forget`).

Scratch graphs are named `<graph>@asof/<owner>/<random>`, the owner being this process (host/pid/start): a process that
died leaves its graphs behind, and the next one to travel in time deletes them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import threading
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graph.backends import CypherBackend, FalkorBackend
from graph.bulk import EdgeGroup, NodeGroup, collection_paused
from graph.errors import GraphError, HistoryUnavailable
from graph.history import HistoryPoint, HistoryStore, _owner, _owner_gone
from graph.model import ReadScope
from graph.plan import SearchRead, SearchRow
from graph.reads import TwinReader
from graph.replay import GraphDelta, ReplayedGraph, deltas, replay_until
from graph.valid_time import ValidPoint, valid_overlay, valid_point
from ontology.errors import UnknownTerm
from ontology.model import Ontology

_Key = tuple[HistoryPoint, ValidPoint | None]  # a cached graph: its history point, and its valid-time point
CACHED_GRAPHS = 4  # scratch graphs kept per store (each about as large as the graph was at its time)
_SCRATCH = "@asof/"


class AsOfOutOfRange(GraphError):
    """An as-of time before the first recorded change or in the future."""


class AsOfUnsupported(GraphError):
    """The graph backend cannot hold scratch graphs (as-of reads need FalkorDB)."""


@dataclass(frozen=True)
class PastGraph:
    """A scratch graph holding the twin graph as of a history point, and the reader over it."""

    point: HistoryPoint
    reader: TwinReader
    twins: int
    links: int


class PastReader(TwinReader):
    """A reader of a scratch graph: its full-text index is built by the first search (most past graphs are read
    by uid, filters and traversals only, and the index is the costliest part of a build)."""

    def __init__(self, backend: FalkorBackend, ontology: Ontology, timeout_ms: int | None) -> None:
        super().__init__(backend, ontology, timeout_ms)
        self._scratch = backend
        self._text_lock = threading.Lock()
        self._text_ready = False

    def read_search(self, plan: SearchRead, scope: ReadScope, timeout_ms: int | None = None) -> list[SearchRow]:
        """Full-text hits, after building the full-text index once."""
        if not self._text_ready:
            with self._text_lock:
                if not self._text_ready:
                    self._scratch.ensure_indexes(full_text=True)
                    self._text_ready = True
        return super().read_search(plan, scope, timeout_ms)


class TimeTravel:
    """Readers of the graph as it was at past times, built by replay and cached per history point."""

    def __init__(
        self,
        backend: CypherBackend,
        ontology: Ontology,
        history: HistoryStore | None,
        capacity: int = CACHED_GRAPHS,
        timeout_ms: int | None = 30_000,
    ) -> None:
        self.backend = backend
        self.ontology = ontology
        self.history = history
        self.capacity = max(1, capacity)
        self.timeout_ms = timeout_ms
        self._graphs: OrderedDict[_Key, PastGraph] = OrderedDict()
        self._lock = threading.Lock()  # one build at a time; lookups take it briefly
        self._swept = False
        self.builds = 0  # graphs built (tests and benchmarks tell a cache hit from a build)

    def check_time(self, when: dt.datetime) -> dt.datetime:
        """`when` in UTC, refused when it lies in the future or before the first recorded change."""
        history = self._history()
        if not isinstance(when, dt.datetime):
            raise AsOfOutOfRange(f"asOf must be a date and time, got {type(when).__name__}")
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        now = dt.datetime.now(dt.UTC)
        if when > now:
            raise AsOfOutOfRange(
                f"asOf {when.isoformat()} is in the future (now is {now.isoformat(timespec='seconds')}); "
                "the graph cannot be read as it will be"
            )
        first = history.first_time()
        if first is None:
            raise AsOfOutOfRange("asOf: no change is recorded yet, so there is no past graph to read")
        if when < first:
            raise AsOfOutOfRange(
                f"asOf {when.isoformat()} is before the first recorded change ({first.isoformat()}); "
                "nothing is known of the graph then"
            )
        return when

    def reader(self, when: dt.datetime, valid_at: dt.datetime | None = None) -> TwinReader:
        """A reader of the graph as it was at `when` (built on first use, then cached); with `valid_at`, as valid
        then by the sources' effective dates, as known at `when` (graph/valid_time.py)."""
        return self.graph(when, valid_at).reader

    def graph(self, when: dt.datetime, valid_at: dt.datetime | None = None) -> PastGraph:
        """The scratch graph of the graph as it was at `when` (and valid at `valid_at`, when given)."""
        when = self.check_time(when)
        history = self._history()
        point = history.point(when)
        key: _Key = (point, None if valid_at is None else valid_point(history, when, valid_at))
        with self._lock:
            cached = self._graphs.get(key)
            if cached is not None:
                self._graphs.move_to_end(key)
                return cached
            self._drop_outdated(point)
            past = self._build(point, when, valid_at)
            self._graphs[key] = past
            while len(self._graphs) > self.capacity:
                _, evicted = self._graphs.popitem(last=False)
                _drop(evicted.reader.backend)
            return past

    def diff(self, start: dt.datetime, end: dt.datetime) -> list[GraphDelta]:
        """What changed between `start` and `end` (both checked like as-of times; `start` before `end`)."""
        start, end = self.check_time(start), self.check_time(end)
        if start >= end:
            raise AsOfOutOfRange(f"diff: `from` ({start.isoformat()}) must be before `to` ({end.isoformat()})")
        return deltas(self._history(), start, end)

    def forget(self, *, lenient: bool = False) -> None:
        """Delete every cached scratch graph (before the server's log is compacted after an erasure, and at close);
        `lenient`: one the server cannot delete now is left to the next process's sweep instead of raising."""
        with self._lock:
            while self._graphs:
                _, past = self._graphs.popitem()
                if lenient:
                    with contextlib.suppress(GraphError):
                        _drop(past.reader.backend)
                else:
                    _drop(past.reader.backend)

    # ------------------------------------------------------------------ building

    def _history(self) -> HistoryStore:
        if self.history is None:
            raise HistoryUnavailable("as-of reads need history (open the store with a history_url)")
        return self.history

    def _falkor(self) -> FalkorBackend:
        if not isinstance(self.backend, FalkorBackend):
            raise AsOfUnsupported("as-of reads need a FalkorDB graph (scratch graphs are built on the same server)")
        return self.backend

    def _build(self, point: HistoryPoint, when: dt.datetime, valid_at: dt.datetime | None = None) -> PastGraph:
        live = self._falkor()
        if not self._swept:
            self._sweep(live)
        replayed = replay_until(self._history(), when)
        if valid_at is not None:  # the one hook of valid time: the replayed graph as valid then
            replayed = valid_overlay(self._history(), replayed, when, valid_at)
        # a name never used before: FalkorDB cannot replay a log in which a deleted graph is created again
        scratch = live.sibling(f"{live.graph_name}{_SCRATCH}{_owner()}/{uuid.uuid4().hex}")
        try:
            with collection_paused():
                nodes, edges = self._groups(replayed)
                if nodes and not scratch.bulk_create(nodes, edges):
                    raise GraphError(f"could not create the scratch graph {scratch.graph_name!r}: it already exists")
                del nodes, edges
            scratch.ensure_indexes(full_text=False)  # the uid index (uids are unique by replay); full text on demand
        except BaseException:
            _drop(scratch)
            raise
        self.builds += 1
        return PastGraph(
            point, PastReader(scratch, self.ontology, self.timeout_ms), len(replayed.twins), replayed.link_count
        )

    def _groups(self, graph: ReplayedGraph) -> tuple[list[NodeGroup], list[EdgeGroup]]:
        """The replayed twins as node groups (one per class; ids in the order sent) and links as edge groups."""
        by_class: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for uid, (cls, state) in graph.twins.items():
            by_class[cls].append((uid, state))
        ids: dict[str, int] = {}
        nodes: list[NodeGroup] = []
        for cls, members in by_class.items():
            names = dict.fromkeys(itertools.chain.from_iterable(state for _, state in members))
            names.pop("uid", None)
            names.pop("_class", None)
            columns = tuple(names)
            first = len(ids)
            ids.update(zip((uid for uid, _ in members), range(first, first + len(members)), strict=True))
            nodes.append(
                NodeGroup(
                    ("Twin", *self._labels(cls)),
                    ("uid", "_class", *columns),
                    [[uid, cls, *map(state.get, columns)] for uid, state in members],
                )
            )
        edges = []
        rows: list[Sequence[Any]]
        for rel_type, pairs in graph.links_by_type.items():
            columns = tuple(dict.fromkeys(itertools.chain.from_iterable(pairs.values())))
            if columns:
                rows = [[ids[s], ids[t], *map(props.get, columns)] for (s, t), props in pairs.items()]
            else:  # most links have no properties: ends only
                rows = [(ids[s], ids[t]) for s, t in pairs]
            edges.append(EdgeGroup(rel_type, columns, rows))
        return nodes, edges

    def _labels(self, cls: str) -> tuple[str, ...]:
        try:
            return tuple(self.ontology.labels(cls))
        except UnknownTerm:  # a class the ontology no longer has (a migration moved its twins): its own name
            return (cls,)

    def _drop_outdated(self, point: HistoryPoint) -> None:
        """Delete cached graphs built before an erasure that `point` has seen: they may hold erased values."""
        for key in [key for key in self._graphs if key[0].erasures != point.erasures]:
            _drop(self._graphs.pop(key).reader.backend)

    def _sweep(self, live: FalkorBackend) -> None:
        """Delete scratch graphs that processes which are gone left on the server."""
        self._swept = True
        prefix = f"{live.graph_name}{_SCRATCH}"
        for name in live.graph_names():
            if not name.startswith(prefix):
                continue
            owner = name[len(prefix) :].rpartition("/")[0]
            if owner != _owner() and _owner_gone(owner, dt.datetime.now(dt.UTC)):
                _drop(live.sibling(name))


def _drop(backend: CypherBackend) -> None:
    if isinstance(backend, FalkorBackend):
        backend.drop_graph()
