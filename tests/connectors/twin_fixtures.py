"""Fixtures and helpers for sync tests: an embedded twin graph that is always closed, graph snapshots.

Import the fixtures into a test module (``from tests.connectors.twin_fixtures import core, twin  # noqa: F401``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.sync import SyncEngine
from graph.embedded import stop_embedded
from graph.store import GraphStore
from ontology.core import load_core
from ontology.model import Ontology
from tests.server_leaks import falkordb_processes_under


@dataclass
class TwinEnv:
    """An open graph store with its data dir and a relational state URL."""

    store: GraphStore
    state_url: str
    path: Path

    def engine(self, **options: Any) -> SyncEngine:
        """A sync engine over this store and state."""
        return SyncEngine(self.store, self.state_url, **options)


@pytest.fixture(scope="session")
def core() -> Ontology:
    """The core ontology."""
    return load_core()


def open_twin(path: Path, ontology: Ontology) -> GraphStore:
    """An embedded graph store in `path`/graph."""
    return GraphStore.open(f"falkordb+embedded://{path / 'graph'}", ontology, fsync="no")


@pytest.fixture
def twin(tmp_path: Path, core: Ontology) -> Iterator[TwinEnv]:
    """A fresh embedded graph + SQLite state; the graph server is stopped afterwards and must not outlive the test."""
    store = open_twin(tmp_path, core)
    try:
        yield TwinEnv(store, f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    finally:
        store.close()
        stop_embedded(tmp_path / "graph")
        assert falkordb_processes_under(tmp_path) == [], "a FalkorDB server outlived its test"


def snapshot(store: GraphStore) -> tuple[dict[str, tuple[str, dict[str, Any]]], set[tuple[str, str, str, str]]]:
    """Every twin (uid -> class, properties) and every link (type, source, target, properties as text)."""
    twins = {}
    for uid, cls, props in store.backend.read("MATCH (n:Twin) RETURN n.uid, n._class, properties(n)"):
        props = dict(props)
        props.pop("uid", None)
        props.pop("_class", None)
        twins[uid] = (cls, props)
    links = {
        (t, s, d, repr(sorted(dict(p).items())))
        for t, s, d, p in store.backend.read("MATCH (a:Twin)-[r]->(b:Twin) RETURN type(r), a.uid, b.uid, properties(r)")
    }
    return twins, links
