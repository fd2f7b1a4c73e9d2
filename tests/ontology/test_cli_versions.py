"""`twin ontology activate|diff|migrate|versions`: a breaking version is refused until a migration ran; the dry run
counts, the run migrates and activates; diff exits 1 on breaking changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from graph.embedded import stop_embedded
from graph.model import Twin
from graph.store import GraphStore
from ontology.loader import load_ontology

runner = CliRunner()
PREFIXES = """@prefix ex: <http://example.org/plant#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
@prefix twin: <https://enterprise-twin.dev/ontology/core#> .
<http://example.org/plant> a owl:Ontology ; owl:imports <https://enterprise-twin.dev/ontology/core> .
ex:Gadget a owl:Class ; rdfs:subClassOf twin:Asset .
"""
OLD = (
    PREFIXES
    + """
ex:capacity a owl:DatatypeProperty ; rdfs:domain ex:Gadget ; rdfs:range xsd:string .
ex:contactEmail a owl:DatatypeProperty ; rdfs:domain ex:Gadget ; rdfs:range xsd:string .
"""
)
NEW = (
    PREFIXES
    + """
ex:capacity a owl:DatatypeProperty ; rdfs:domain ex:Gadget ; rdfs:range xsd:decimal .
ex:ownerEmail a owl:DatatypeProperty ; rdfs:domain ex:Gadget ; rdfs:range xsd:string .
ex:Widget a owl:Class ; rdfs:subClassOf twin:Asset .
"""
)
MIGRATION = """name: gadget-v2
steps:
  - rename_property: {class: Gadget, from: contactEmail, to: ownerEmail}
  - cast: {class: Gadget, property: capacity, to: decimal}
"""


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "twin"
    (tmp_path / "old.ttl").write_text(OLD)
    (tmp_path / "new.ttl").write_text(NEW)
    (tmp_path / "m.yaml").write_text(MIGRATION)
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    monkeypatch.setenv("TWIN_ONTOLOGY_PATHS", json.dumps([str(tmp_path / "old.ttl")]))
    get_settings.cache_clear()
    store = GraphStore.open(
        f"falkordb+embedded://{(data / 'graph').resolve()}",
        load_ontology([tmp_path / "old.ttl"]),
        history_url=f"sqlite:///{(data / 'twin.db').resolve()}",
    )
    store.upsert_twins(
        [
            Twin(f"g{i}", "Gadget", {"name": f"G{i}", "capacity": c, "contactEmail": f"g{i}@x.test"})
            for i, c in enumerate(["10", "12.5", "many"])
        ]
    )
    store.close()
    yield tmp_path
    get_settings.cache_clear()
    stop_embedded(data / "graph")


def _source_lineage() -> str:
    """Lineage of g0's contact e-mail from a source record; returns the run id."""
    from api.runtime import Runtime
    from governance.lineage import LineageBatch, PropertyLineage, RecordLineage

    runtime = Runtime()
    try:
        run = runtime.lineage.start_run("connector", "assets")
        fed = [RecordLineage("g0", "G0", [PropertyLineage("contactEmail", "g0@x.test", "MAIL")])]
        runtime.lineage.record_lineage(LineageBatch(run.run_id, "erp", "gadgets", fed))
        return run.run_id
    finally:
        runtime.close()


def test_activate_migrate_and_diff(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _source_lineage()
    first = runner.invoke(app, ["ontology", "activate"])
    assert first.exit_code == 0 and "version 1" in first.output, first.output
    monkeypatch.setenv("TWIN_ONTOLOGY_PATHS", json.dumps([str(data / "new.ttl")]))
    get_settings.cache_clear()
    refused = runner.invoke(app, ["ontology", "activate"])
    assert refused.exit_code == 1 and "2 breaking change" in refused.output and "Gadget.capacity" in refused.output
    dry = runner.invoke(app, ["ontology", "migrate", str(data / "m.yaml"), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output)
    assert (report["applied"], report["examined"], report["changed"], report["failed"]) == (False, 3, 3, 1)
    assert report["failures"][0]["uid"] == "g2" and "not a number" in report["failures"][0]["reason"]
    run = runner.invoke(app, ["ontology", "migrate", str(data / "m.yaml"), "--json"])
    assert run.exit_code == 0, run.output
    done = json.loads(run.output)
    assert done["applied"] and done["changed"] == 3 and done["shacl_issues"] == []
    assert done["lineage_renamed"] == 1  # the renamed value's lineage follows it to its new name
    (lineage,) = map(json.loads, runner.invoke(app, ["lineage", "g0", "ownerEmail", "--json"]).output.splitlines())
    assert (lineage["record_key"], lineage["source_field"], lineage["run_id"]) == ("G0", "MAIL", run_id)
    versions = [json.loads(line) for line in runner.invoke(app, ["ontology", "versions", "--json"]).output.splitlines()]
    assert [(v["id"], v["active"], v["breaking"], v["migration"]) for v in versions] == [
        (1, False, False, None),
        (2, True, True, "gadget-v2"),
    ]
    diff = runner.invoke(app, ["ontology", "diff", "1", "2", "--json"])
    changes = {(c["path"], c["kind"], c["breaking"]) for c in map(json.loads, diff.output.splitlines())}
    assert diff.exit_code == 1 and changes == {
        ("Gadget.contactEmail", "property-renamed", True),
        ("Gadget.capacity", "type-changed", True),
        ("Widget", "class-added", False),
    }
    files = runner.invoke(app, ["ontology", "diff", str(data / "new.ttl"), str(data / "new.ttl")])
    assert files.exit_code == 0 and "0 changes" in files.output
