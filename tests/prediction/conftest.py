"""Fixtures for prediction tests: the sample enterprise with its demand history, and a small twin graph with sales
orders in a real embedded FalkorDB (with history in SQLite), closed after the session."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sample.enterprise import SampleManifest, generate_sample, generate_sample_demand
from graph.embedded import stop_embedded
from graph.model import Link, Twin
from graph.store import GraphStore
from ontology.core import load_core
from ontology.model import Ontology

ORDER_WEEKS = 30
PRODUCTS = ("erp:product:HP-1000", "erp:product:IV-1000", "erp:product:GB-1000")


@pytest.fixture(scope="session")
def ontology() -> Ontology:
    """The core ontology."""
    return load_core()


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    """The small sample enterprise with three years of daily demand (demand.sqlite) beside it."""
    out = tmp_path_factory.mktemp("prediction-sample") / "sample"
    manifest = generate_sample(out, "small")
    generate_sample_demand(out)
    return manifest


@pytest.fixture(scope="session")
def order_store(tmp_path_factory: pytest.TempPathFactory, ontology: Ontology) -> Iterator[GraphStore]:
    """Products, a customer, and two sales orders a week for ORDER_WEEKS weeks, each ordering one product."""
    base = tmp_path_factory.mktemp("prediction-graph")
    data_dir = base / "graph"
    store = GraphStore.open(f"falkordb+embedded://{data_dir}", ontology, history_url=f"sqlite:///{base / 'history.db'}")
    rng = random.Random(5)
    twins = [Twin(uid, "Product", {"name": uid.rsplit(":", 1)[1], "sku": uid.rsplit(":", 1)[1]}) for uid in PRODUCTS]
    twins.append(Twin("customer:C1", "Customer", {"name": "Customer One"}))
    links = []
    start = dt.date(2025, 1, 6)
    for week in range(ORDER_WEEKS):
        for k in range(2):
            uid = f"erp:so:T-{week:03d}-{k}"
            day = start + dt.timedelta(days=7 * week + rng.randint(0, 4))
            quantity = float(10 + week % 4 + k)
            twins.append(
                Twin(uid, "SalesOrder", {"name": uid, "orderDate": day.isoformat(), "amount": 100.0 * quantity})
            )
            links += [
                Link("placedBy", uid, "customer:C1"),
                Link("orders", uid, PRODUCTS[(week + k) % 3], {"quantity": quantity}),
            ]
    try:
        store.upsert_twins(twins, actor="test", source="prediction-test", run_id="run-orders-1")
        store.upsert_links(links, actor="test", source="prediction-test", run_id="run-orders-1")
        yield store
    finally:
        store.close()
        stop_embedded(data_dir)


@pytest.fixture
def data_dir(sample: SampleManifest) -> Path:
    """A data directory whose `sample/` is the generated sample (what `{data_dir}` in series URLs names)."""
    return sample.out_dir.parent
