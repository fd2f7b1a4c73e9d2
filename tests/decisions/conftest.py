"""Fixtures of the decisions tests: a data directory holding the sample enterprise with its ERP synced into an
embedded twin graph (the sample generated once per session, copied per test)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.runtime import Runtime
from api.settings import Settings
from connectors.registry import ConnectorRegistry
from connectors.sample.enterprise import generate_sample
from connectors.service import run_connector
from graph.embedded import stop_embedded

REORDER = """\
automations:
  reorder-materials:
    description: Order more of a material that falls under its reorder point.
    role: data_steward
    trigger:
      change: {class: Material, properties: [stockLevel], kinds: [update]}
    neighbours: {hops: 1, via: [supplies]}
    condition: "twin.stockLevel < 5.0 && neighbours.exists(n, n.cls == 'Supplier')"
    alert: {severity: warning, key: "'reorder:' + twin.uid", message: "'low stock: ' + twin.name"}
    action:
      type: erp.purchase_order
      parameters:
        material: "twin.uid"
        supplier: "neighbours.filter(n, n.cls == 'Supplier')[0].uid"
        quantity: "50.0"
"""


@pytest.fixture(scope="session")
def sample_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sample enterprise, generated once."""
    out = tmp_path_factory.mktemp("decisions-sample") / "sample"
    generate_sample(out, "small")
    return out


def settings_for(data_dir: Path) -> Settings:
    """Settings of a test data directory (embedded graph and SQLite inside it)."""
    return Settings(
        data_dir=data_dir,
        graph_url=f"falkordb+embedded://{data_dir / 'graph'}",
        database_url=f"sqlite:///{data_dir / 'twin.db'}",
        graph_fsync="no",
    )


def sync_erp(runtime: Runtime) -> None:
    """Sync the sample ERP into the twin (incremental), as the operator."""
    registry = ConnectorRegistry.load(runtime.ontology, data_dir=runtime.settings.data_dir)
    run_connector(
        runtime.sync_engine("test"),
        registry.connector("sample-erp"),
        subject=runtime.operator(),
        policy=runtime.policy,
        audit=runtime.audit,
    )


@pytest.fixture
def erp_twin(tmp_path: Path, sample_source: Path) -> Iterator[Runtime]:
    """A runtime over a data directory with the sample's ERP synced and the reorder automation in place."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copytree(sample_source, data_dir / "sample")
    (data_dir / "automations.yaml").write_text(REORDER)
    runtime = Runtime(settings=settings_for(data_dir))
    try:
        sync_erp(runtime)
        yield runtime
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")
