"""Neighbourhoods of many twins in one round trip: for each twin, the twins within N hops (either direction, over
given relationship types or all), each with its distance and the relationship types of its shortest path found —
what automations bind as `neighbours`. Scoped like every read: a path through a twin the scope hides is not taken."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graph.cypher import ident
from graph.errors import QueryError
from graph.model import UNRESTRICTED, ReadScope, TwinRecord
from graph.reads import TwinReader

MAX_HOPS = 3
MAX_PATHS = 20_000  # paths one call reads at most


@dataclass(frozen=True)
class Neighbour:
    """A twin near another: the twin, its distance in hops, and the relationship types along the way."""

    twin: TwinRecord
    hops: int
    via: tuple[str, ...]


def neighbourhoods(
    reader: TwinReader, uids: Sequence[str], hops: int = 1, types: Sequence[str] = (), scope: ReadScope = UNRESTRICTED
) -> dict[str, list[Neighbour]]:
    """uid -> its neighbours within `hops` (nearest first), for every uid of `uids` the scope lets through."""
    if not 1 <= hops <= MAX_HOPS:
        raise QueryError(f"hops must be between 1 and {MAX_HOPS}, got {hops}")
    known = reader.ontology.relationship_types()
    for rel_type in types:
        if rel_type not in known:
            raise QueryError(f"unknown relationship type {rel_type[:80]!r}")
    if not uids:
        return {}
    rel = f"[{':' + '|'.join(ident(t) for t in types) if types else ''}*1..{hops}]"
    rows = reader.backend.read(
        f"UNWIND $uids AS u MATCH (a:Twin {{uid: u}}) MATCH p = (a)-{rel}-(m:Twin) WHERE m.uid <> u {_visible(scope)}"
        "RETURN u, m.uid, labels(m), properties(m), length(p), [r IN relationships(p) | type(r)] LIMIT $limit",
        {"uids": list(dict.fromkeys(uids)), "limit": MAX_PATHS, **scope.params},
        timeout_ms=reader.timeout_ms,
    )
    found: dict[str, dict[str, Neighbour]] = {}
    for uid, other, labels, props, length, via in rows:
        near = found.setdefault(uid, {})
        if other not in near or near[other].hops > length:
            near[other] = Neighbour(reader.record(other, labels, props), int(length), tuple(via))
    return {uid: sorted(near.values(), key=lambda n: (n.hops, n.twin.uid)) for uid, near in found.items()}


def _visible(scope: ReadScope) -> str:
    """Cypher keeping a path only when the scope sees every twin on it (a row rule's graph pattern cannot be
    evaluated on a node taken out of a path in FalkorDB: the path's twins are matched again by uid and counted)."""
    if scope.render("x") == "true":
        return ""
    if scope.predicate is None:
        return f"AND all(x IN nodes(p) WHERE {scope.render('x')}) "
    return (
        "WITH u, m, p, [y IN nodes(p) | y.uid] AS path_uids "
        f"CALL {{ WITH path_uids UNWIND path_uids AS v MATCH (x:Twin {{uid: v}}) WHERE {scope.render('x')} "
        "RETURN count(x) AS path_visible } WITH u, m, p, path_uids, path_visible "
        "WHERE path_visible = size(path_uids) "
    )
