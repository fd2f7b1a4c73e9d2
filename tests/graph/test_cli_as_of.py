"""`twin graph stats|query|impact --as-of` and `twin graph diff`: the graph as it was, from the command line."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from graph.model import Link, Twin
from graph.store import GraphStore
from ontology.core import load_core
from tests.server_leaks import falkordb_processes_under

runner = CliRunner()


@pytest.fixture
def changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A data directory whose graph lost a supplier after the time yielded."""
    data = tmp_path / "twin"
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    store = GraphStore.open(
        f"falkordb+embedded://{(data / 'graph').resolve()}",
        load_core(),
        history_url=f"sqlite:///{(data / 'twin.db').resolve()}",
    )
    store.upsert_twins(
        [
            Twin("s1", "Supplier", {"name": "Acme Castings"}),
            Twin("m1", "Material", {"name": "Housing"}),
            Twin("p1", "Product", {"name": "Pump", "sku": "HP-1"}),
        ]
    )
    store.upsert_links([Link("supplies", "s1", "m1"), Link("partOf", "m1", "p1")])
    time.sleep(0.01)
    before = dt.datetime.now(dt.UTC).isoformat()
    time.sleep(0.01)
    store.delete_twins(["s1"])
    store.upsert_twins([Twin("p1", "Product", {"sku": "HP-2"})])
    store.close()
    yield before
    get_settings.cache_clear()
    assert falkordb_processes_under(tmp_path) == [], "a command left the embedded server running"


def test_reads_as_of_and_diff(changed: str) -> None:
    result = runner.invoke(app, ["graph", "stats", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    now = json.loads(result.output)
    then = json.loads(runner.invoke(app, ["graph", "stats", "--json", "--as-of", changed]).output)
    assert (now["twins"], then["twins"]) == (2, 3) and then["by_type"] == {"supplies": 1, "partOf": 1}
    rows = runner.invoke(app, ["graph", "query", "MATCH (n:Product) RETURN n.sku", "--as-of", changed])
    assert rows.exit_code == 0 and rows.output.split() == ['["HP-1"]']
    impact = runner.invoke(app, ["graph", "impact", "s1", "--json", "--as-of", changed])
    assert impact.exit_code == 0, impact.output
    assert [h["uid"] for h in json.loads(impact.output)] == ["m1", "p1"]
    lines = runner.invoke(app, ["graph", "diff", changed, "--json"]).output.splitlines()
    found = {(d["kind"], d["op"], d["uid"], tuple(d["fields"])) for d in map(json.loads, lines)}
    assert ("twin", "delete", "s1", ("name",)) in found and ("twin", "update", "p1", ("sku",)) in found
    assert ("link", "delete", "s1", ()) in found


def test_bad_times_exit_1_with_a_message(changed: str) -> None:
    future = runner.invoke(app, ["graph", "stats", "--as-of", "2999-01-01T00:00:00"])
    assert future.exit_code == 1 and "in the future" in future.output
    early = runner.invoke(app, ["graph", "stats", "--as-of", "2000-01-01"])
    assert early.exit_code == 1 and "before the first recorded change" in early.output
    garbled = runner.invoke(app, ["graph", "stats", "--as-of", "last tuesday"])
    assert garbled.exit_code == 2 and "ISO 8601" in garbled.output
