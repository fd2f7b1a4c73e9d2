"""`twin lineage UID [PROPERTY] [--json]` parses its arguments as written and prints non-ASCII values as they are;
`twin graph stats` shows relationship names in brackets (not eaten as Rich markup)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from governance.lineage import LineageStore, ProvenanceRecord, RunKind
from graph.model import Link, Twin
from graph.store import GraphStore
from ontology.core import load_core
from tests.server_leaks import falkordb_processes_under

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data directory with two employees (one reports to the other) and lineage for one of them."""
    data = tmp_path / "twin"
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    store = GraphStore.open(f"falkordb+embedded://{data / 'graph'}", load_core())
    store.upsert_twins(
        [
            Twin("e1", "Employee", {"name": "Łucja Nowak", "employeeId": "1"}),
            Twin("e2", "Employee", {"name": "Paweł Kos", "employeeId": "2"}),
        ]
    )
    store.upsert_links([Link("reportsTo", "e2", "e1")])
    store.close()
    lineage = LineageStore(get_settings().resolved_database_url)
    run = lineage.start_run(RunKind.CONNECTOR, "hr")
    lineage.record(
        [
            ProvenanceRecord.of(
                "e1",
                "name",
                "Łucja Nowak",
                source_system="hr",
                source_object="employees",
                record_key="1",
                run_id=run.run_id,
                source_field="full_name",
            ),
            ProvenanceRecord.of(
                "e1",
                "employeeId",
                "1",
                source_system="hr",
                source_object="employees",
                record_key="1",
                run_id=run.run_id,
                source_field="id",
            ),
        ]
    )
    yield data
    get_settings.cache_clear()
    assert falkordb_processes_under(tmp_path) == [], "a command left the embedded server running"


def test_lineage_of_one_property_as_json(data_dir: Path) -> None:
    result = runner.invoke(app, ["lineage", "e1", "name", "--json"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert json.loads(line)["value"] == "Łucja Nowak"


def test_lineage_json_flag_is_not_taken_for_the_property(data_dir: Path) -> None:
    result = runner.invoke(app, ["lineage", "e1", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["property"] for line in result.output.splitlines()) == ["employeeId", "name"]


def test_lineage_table_prints_non_ascii_values_as_they_are(data_dir: Path) -> None:
    result = runner.invoke(app, ["lineage", "e1", "name"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert '"Łucja Nowak"' in result.output and "\\u0141" not in result.output


def test_graph_stats_shows_relationship_names(data_dir: Path) -> None:
    result = runner.invoke(app, ["graph", "stats"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "-[reportsTo]->" in result.output
