"""What of a set of twins and links the graph holds now: classes, stored properties, link counts (the sync engine
compares a batch with them before it writes or deletes)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import batched
from typing import Any

from graph.backends import CypherBackend

CHUNK = 10_000  # uids or links per query


def stored_classes(backend: CypherBackend, uids: Sequence[str]) -> dict[str, str]:
    """The class of each of these twins that exists."""
    return dict(_rows(backend, uids, "n._class"))


def stored_states(backend: CypherBackend, uids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The class and stored properties of each of these twins that exists."""
    return {uid: (cls, dict(props)) for uid, cls, props in _rows(backend, uids, "n._class, properties(n)")}


def existing_link_count(backend: CypherBackend, links: Sequence[tuple[str, str, str]]) -> int:
    """How many of these links (type, source uid, target uid) the graph holds."""
    found = 0
    for chunk in batched(links, CHUNK):
        rows = backend.read(
            "UNWIND $links AS l MATCH (a:Twin {uid: l[1]})-[r]->(b:Twin {uid: l[2]}) WHERE type(r) = l[0] "
            "RETURN count(r)",
            {"links": [list(link) for link in chunk]},
        )
        found += int(rows[0][0]) if rows else 0
    return found


def _rows(backend: CypherBackend, uids: Sequence[str], returns: str) -> list[list[Any]]:
    """Rows of (uid, `returns`) for the twins of `uids` that exist."""
    rows: list[list[Any]] = []
    for chunk in batched(uids, CHUNK):
        rows += backend.read(
            f"UNWIND $uids AS u MATCH (n:Twin {{uid: u}}) RETURN n.uid, {returns}", {"uids": list(chunk)}
        )
    return rows
