"""Replaying recorded history: the twins and links as they stood at a time (transaction time), and what changed
between two times.

A replay keeps only each twin's and link's last recorded state up to the time and decodes the JSON of those alone,
so its cost is one pass over the rows plus one decode per surviving twin or link. States are read back as history
recorded them: an erased value was dropped from every recorded state, so it stays erased in the past too.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from graph.bulk import collection_paused
from graph.history import HistoryStore, RawChange

LinkKey = tuple[str, str, str]  # (type, source uid, target uid)


@dataclass
class ReplayedGraph:
    """Twins (uid -> class name, stored properties) and links (type -> (source, target) -> properties) at a time."""

    twins: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    links_by_type: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)

    @property
    def links(self) -> dict[LinkKey, dict[str, Any]]:
        """Every link as (type, source, target) -> properties."""
        return {
            (rel_type, source, target): props
            for rel_type, pairs in self.links_by_type.items()
            for (source, target), props in pairs.items()
        }

    @property
    def link_count(self) -> int:
        """How many links there are."""
        return sum(map(len, self.links_by_type.values()))


@dataclass(frozen=True)
class GraphDelta:
    """How one twin or link differs between two times: `op` is create, update or delete (as of the end)."""

    kind: str  # twin | link
    op: str
    uid: str  # the twin, or the link's source
    cls: str | None  # the twin's class at the end (at the start when deleted); links: None
    link_type: str | None
    target: str | None
    fields: tuple[str, ...]  # the properties (and `_class`) whose values differ
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def replay(rows: Iterable[Sequence[Any]]) -> ReplayedGraph:
    """The graph that `rows` (kind, op, uid, class, link type, target, state after as JSON text, and optionally a
    compact row's links as JSON text; oldest first) leave behind."""
    twins: dict[str, tuple[str | None, str | None]] = {}  # uid -> (class, state text) of its last change
    # type -> (source, target) -> state text, or the decoded properties of a compact row's link
    links: dict[str, dict[tuple[str, str], Any]] = {}
    for kind, op, uid, cls, link_type, target, after, *rest in rows:
        if kind == "twin":
            if op == "delete":
                twins.pop(uid, None)
            else:
                twins[uid] = (cls, after)
                if rest and rest[0] is not None:  # a compact row: the links its load made from this twin
                    for rel_type, to, props in _decoded(rest[0]):
                        of_type = links.get(rel_type)
                        if of_type is None:
                            of_type = links[rel_type] = {}
                        of_type[(uid, to)] = props
        elif target is not None and link_type is not None:
            if op == "delete":
                links.get(link_type, {}).pop((uid, target), None)
            else:
                links.setdefault(link_type, {})[(uid, target)] = after
    graph = ReplayedGraph()
    for uid, (cls, state) in twins.items():
        if cls is not None:
            graph.twins[uid] = (cls, _decoded(state) if state and state != "{}" else {})
    known = graph.twins
    decoded: dict[str, dict[str, Any]] = {}  # link states repeat (most are empty): each text is decoded once
    for rel_type, pairs in links.items():
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for pair, state in pairs.items():
            if pair[0] not in known or pair[1] not in known:  # a link outlives neither of its twins
                continue
            if not state or state == "{}":
                out[pair] = {}
            elif type(state) is dict:
                out[pair] = state
            else:
                found = decoded.get(state)
                if found is None:
                    found = decoded[state] = _decoded(state)
                out[pair] = dict(found)
        if out:
            graph.links_by_type[rel_type] = out
    return graph


def _decoded(text: str) -> Any:
    """Recorded JSON text (orjson; the standard library for the NaN or Infinity the history's encoder may write)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def replay_until(history: HistoryStore, when: dt.datetime) -> ReplayedGraph:
    """The graph as history recorded it at `when`, personal values opened (those of erased subjects stay out)."""
    with collection_paused():  # hundreds of thousands of objects that all stay alive
        graph = replay(history.states_until(when))
    if history.seal is not None and graph.twins:
        uids = list(graph.twins)
        opened = history.seal.open_states([(uid, graph.twins[uid][1]) for uid in uids])
        for uid, state in zip(uids, opened, strict=True):
            graph.twins[uid] = (graph.twins[uid][0], state or {})
    return graph


def deltas(history: HistoryStore, start: dt.datetime, end: dt.datetime) -> list[GraphDelta]:
    """What differs between the graph at `start` and at `end`: one entry per twin or link whose state changed
    (one created and deleted again in between is left out), twins first, in the order of their first change."""
    first: dict[tuple[str, str, str | None, str | None], RawChange] = {}
    last: dict[tuple[str, str, str | None, str | None], RawChange] = {}
    for row in history.rows_between(start, end):
        key = (row.kind, row.uid, row.link_type, row.target)
        first.setdefault(key, row)
        last[key] = row
    start_classes = history.classes_until(sorted({k[1] for k in first if k[0] == "twin"}), start)
    found: list[GraphDelta] = []
    for key, opening in first.items():
        closing = last[key]
        before = _state(opening.before) if opening.op != "create" else None
        after = _state(closing.after) if closing.op != "delete" else None
        if history.seal is not None and key[0] == "twin":  # personal values are stored sealed
            before = None if before is None else history.seal.open_state(key[1], before)
            after = None if after is None else history.seal.open_state(key[1], after)
        if before is None and after is None:
            continue
        old_class = start_classes.get(key[1]) if key[0] == "twin" else None
        new_class = closing.cls if key[0] == "twin" else None
        names = {
            k for k in (before or {}).keys() | (after or {}).keys() if (before or {}).get(k) != (after or {}).get(k)
        }
        if before is not None and after is not None and old_class != new_class:
            names.add("_class")
        if before is not None and after is not None and not names:
            continue
        op = "create" if before is None else "delete" if after is None else "update"
        found.append(
            GraphDelta(
                key[0],
                op,
                key[1],
                (new_class if after is not None else old_class or closing.cls) if key[0] == "twin" else None,
                key[2],
                key[3],
                tuple(sorted(names)),
                before,
                after,
            )
        )
    found.sort(key=lambda d: d.kind != "twin")  # stable: twins first, each kind in order of first change
    return found


def _state(text: str | None) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text) if text else {}
    return loaded
