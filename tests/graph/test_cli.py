"""`twin graph stats|query|impact|stop` from the command line, on a real embedded graph in a data directory."""

from __future__ import annotations

import json
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
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "twin"
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    store = GraphStore.open(f"falkordb+embedded://{data / 'graph'}", load_core())
    store.upsert_twins(
        [
            Twin("s1", "Supplier", {"name": "Acme Castings"}),
            Twin("m1", "Material", {"name": "Housing"}),
            Twin("p1", "Product", {"name": "Pump", "sku": "HP-1"}),
        ]
    )
    store.upsert_links([Link("supplies", "s1", "m1"), Link("partOf", "m1", "p1")])
    store.close()
    yield data
    get_settings.cache_clear()
    assert falkordb_processes_under(tmp_path) == [], "a command left the embedded server running"


def test_stats_query_and_impact(data_dir: Path) -> None:
    stats = json.loads(runner.invoke(app, ["graph", "stats", "--json"]).output)
    assert stats["twins"] == 3 and stats["by_type"] == {"supplies": 1, "partOf": 1}
    rows = runner.invoke(app, ["graph", "query", "MATCH (n:Item) RETURN n.uid ORDER BY n.uid"])
    assert rows.exit_code == 0 and rows.output.split() == ['["m1"]', '["p1"]']
    impact = json.loads(runner.invoke(app, ["graph", "impact", "s1", "--json"]).output)
    assert [(h["uid"], h["depth"], h["via"]) for h in impact] == [
        ("m1", 1, ["supplies"]),
        ("p1", 2, ["supplies", "partOf"]),
    ]


def test_transition_retires_a_twin_out_of_impact_and_refuses_a_bad_move(data_dir: Path) -> None:
    retired = runner.invoke(app, ["graph", "transition", "m1", "retired", "--reason", "obsolete"])
    assert retired.exit_code == 0 and "Material m1: active -> retired" in retired.output, retired.output
    impact = json.loads(runner.invoke(app, ["graph", "impact", "s1", "--json"]).output)
    assert impact == []  # the chain to p1 passed the retired m1
    everything = json.loads(runner.invoke(app, ["graph", "impact", "s1", "--json", "--include-retired"]).output)
    assert [h["uid"] for h in everything] == ["m1", "p1"]
    bad = runner.invoke(app, ["graph", "transition", "m1", "suspended"])
    assert bad.exit_code == 1 and "cannot go from retired to suspended" in bad.output
    unknown = runner.invoke(app, ["graph", "transition", "m1", "archived"])
    assert unknown.exit_code == 1 and "unknown lifecycle state 'archived'" in unknown.output


def test_refusals_exit_1_with_a_message(data_dir: Path) -> None:
    write = runner.invoke(app, ["graph", "query", "MATCH (n) DETACH DELETE n"])
    assert write.exit_code == 1 and "read-only" in write.output
    missing = runner.invoke(app, ["graph", "impact", "nobody"])
    assert missing.exit_code == 1 and "nobody" in missing.output
    assert json.loads(runner.invoke(app, ["graph", "stats", "--json"]).output)["twins"] == 3


def test_export_then_import_moves_the_graph_to_a_new_data_directory(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GraphStore.open(f"falkordb+embedded://{data_dir / 'graph'}", load_core()) as store:
        store.upsert_links([Link("supplies", "s1", "m1", {"leadTimeDays": 9})])
        store.upsert_twins([Twin("m1", "Material", {"name": "Housing", "unitCost": 12.5})])
    exported = runner.invoke(app, ["graph", "export", str(tmp_path / "twin.jsonl")])
    assert exported.exit_code == 0, exported.output
    assert "3 twins and 2 links" in exported.output
    lines = [json.loads(line) for line in (tmp_path / "twin.jsonl").read_text().splitlines()]
    assert {"link": {"type": "supplies", "source": "s1", "target": "m1", "properties": {"leadTimeDays": 9}}} in lines

    moved = tmp_path / "moved"
    monkeypatch.setenv("TWIN_DATA_DIR", str(moved))
    get_settings.cache_clear()
    imported = runner.invoke(app, ["graph", "import", str(tmp_path / "twin.jsonl")])
    assert imported.exit_code == 0, imported.output
    assert "5 created" in imported.output
    with GraphStore.open(
        f"falkordb+embedded://{moved / 'graph'}", load_core(), history_url=f"sqlite:///{moved / 'twin.db'}"
    ) as store:
        assert store.get("m1").properties == {"name": "Housing", "unitCost": 12.5}  # type: ignore[union-attr]
        assert store.query("MATCH (:Twin {uid: 's1'})-[e:supplies]->() RETURN e.leadTimeDays") == [[9]]
        assert [h.op for h in store.history_of("p1")] == ["create", "create"]  # the twin and its partOf link
    again = runner.invoke(app, ["graph", "import", str(tmp_path / "twin.jsonl")])  # now an upsert: nothing new
    assert again.exit_code == 0 and "0 created, 0 updated, 5 unchanged" in again.output


def test_import_names_the_bad_line_and_writes_nothing(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"twin": {"uid": "x1", "class": "Supplier", "properties": {"name": "X"}}}\n{"twin": {"uid": ""}}\n')
    result = runner.invoke(app, ["graph", "import", str(bad)])
    assert result.exit_code == 1 and "bad.jsonl:2" in result.output and "uid, class" in result.output
    bad.write_text('{"twin": {"uid": "x1", "class": "Spaceship", "properties": {}}}\n')
    result = runner.invoke(app, ["graph", "import", str(bad)])
    assert result.exit_code == 1 and "Spaceship" in result.output
    stats = json.loads(runner.invoke(app, ["graph", "stats", "--json"]).output)
    assert stats["twins"] == 3


def test_malformed_query_parameters_and_unwritable_exports_are_refused(data_dir: Path, tmp_path: Path) -> None:
    for bad in ("limit", "=3"):
        result = runner.invoke(app, ["graph", "query", "RETURN $limit", "--param", bad])
        assert result.exit_code == 2 and "NAME=JSON" in result.output
    ok = runner.invoke(app, ["graph", "query", "RETURN $limit", "--param", "limit=3"])
    assert ok.exit_code == 0 and ok.output.strip() == "[3]"
    result = runner.invoke(app, ["graph", "export", str(tmp_path / "missing" / "twin.jsonl")])
    assert result.exit_code == 1 and "cannot write" in result.output
    assert not list(tmp_path.glob("**/*.partial"))
