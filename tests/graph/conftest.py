"""Fixtures for graph tests: data dirs whose FalkorDB servers are always stopped, and a leak check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.embedded import EmbeddedHandle, open_embedded, stop_embedded
from tests.server_leaks import falkordb_processes_under


@pytest.fixture
def graph_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh graph data dir; its server is stopped afterwards and no server process may remain."""
    data_dir = tmp_path / "graph"
    yield data_dir
    stop_embedded(data_dir)
    assert falkordb_processes_under(tmp_path) == [], "a FalkorDB server outlived its test"


@pytest.fixture
def embedded_graph(graph_data_dir: Path) -> Iterator[EmbeddedHandle]:
    """An open embedded FalkorDB (fsync=always) on a fresh data dir."""
    handle = open_embedded(graph_data_dir)
    yield handle
    handle.close()
