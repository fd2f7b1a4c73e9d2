"""Fixtures for simulation tests: a small enterprise in a real embedded twin graph, closed after the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.embedded import stop_embedded
from graph.store import GraphStore
from ontology.core import load_core
from simulation.results import ResultsStore
from tests.simulation.enterprise_graph import EnterpriseLayout, build_enterprise, load_enterprise


@pytest.fixture(scope="session")
def enterprise_layout() -> EnterpriseLayout:
    """Three independent lines (one per work centre, two in Plant A, one in Plant B), each single-sourced."""
    return build_enterprise()


@pytest.fixture(scope="session")
def enterprise_store(
    tmp_path_factory: pytest.TempPathFactory, enterprise_layout: EnterpriseLayout
) -> Iterator[GraphStore]:
    """The enterprise in an embedded FalkorDB; the server is stopped when the session ends."""
    data_dir = tmp_path_factory.mktemp("sim-graph") / "graph"
    store = GraphStore.open(f"falkordb+embedded://{data_dir}", load_core())
    try:
        load_enterprise(store, enterprise_layout)
        yield store
    finally:
        store.close()
        stop_embedded(data_dir)


@pytest.fixture
def results_store(tmp_path: Path) -> Iterator[ResultsStore]:
    """A results store in a fresh SQLite file."""
    store = ResultsStore(f"sqlite:///{tmp_path / 'results.db'}")
    yield store
    store.engine.dispose()
