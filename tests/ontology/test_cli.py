"""`twin ontology show|check|export` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rdflib import Graph
from typer.testing import CliRunner

from api.cli.app import app
from ontology.core import load_core
from ontology.dtdl_reader import read_dtdl

CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "dtdl"
runner = CliRunner()


def test_check_prints_the_counts_of_a_real_corpus_as_json() -> None:
    result = runner.invoke(app, ["ontology", "check", str(CORPORA / "isa95-manufacturing"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["interfaces"] == 76 and summary["classes"] == 76
    assert summary["relationships"] == 187 and summary["properties"] == 211
    assert summary["errors"] == []


def test_check_exits_1_and_names_file_path_and_rule_for_broken_models(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(
        '{"@id": "dtmi:com:example:Pump;1", "@type": "Interface", '
        '"@context": "dtmi:dtdl:context;3", "extends": "dtmi:com:example:Nope;1"}'
    )
    (tmp_path / "broken.json").write_text("{ not json")
    result = runner.invoke(app, ["ontology", "check", str(tmp_path), "--json"])
    assert result.exit_code == 1
    errors = json.loads(result.output)["errors"]
    rules = {(Path(e["source"]).name, e["rule"]) for e in errors}
    assert ("bad.json", "dangling-extends") in rules and ("broken.json", "not-json") in rules
    assert all(e["path"] for e in errors)


def test_show_lists_classes_and_one_class_with_inherited_members() -> None:
    listing = runner.invoke(app, ["ontology", "show"])
    assert listing.exit_code == 0 and "39 classes" in listing.output
    employee = runner.invoke(app, ["ontology", "show", "Employee"], env={"COLUMNS": "200"})
    assert employee.exit_code == 0
    assert "Person → Entity" in employee.output and "salary" in employee.output and "reportsTo" in employee.output
    unknown = runner.invoke(app, ["ontology", "show", "Spaceship"])
    assert unknown.exit_code == 1 and "Spaceship" in unknown.output


@pytest.mark.parametrize(
    ("fmt", "rdf_format"), [("ttl", "turtle"), ("jsonld", "json-ld"), ("rdfxml", "xml"), ("shacl", "turtle")]
)
def test_export_writes_parseable_rdf(tmp_path: Path, fmt: str, rdf_format: str) -> None:
    out = tmp_path / f"core.{fmt}"
    result = runner.invoke(app, ["ontology", "export", "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    graph = Graph().parse(out, format=rdf_format)
    assert len(graph) > 500


def test_export_dtdl_reads_back_to_the_same_classes(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    assert runner.invoke(app, ["ontology", "export", "--format", "dtdl", "-o", str(out)]).exit_code == 0
    back = read_dtdl([out])
    core = load_core()
    assert len(back) == 39
    assert {cid: back.classes[cid] for cid in core.classes} == dict(core.classes)  # units and IRIs included


def test_check_follows_the_dtdl_severities_dangling_targets_warn_dangling_dependents_fail(tmp_path: Path) -> None:
    corpus = CORPORA / "realestatecore-building"
    for name in ("Asset", "Furniture", "Chair"):  # Asset's relationships target Space, Agent, ... not copied
        (tmp_path / f"{name}.json").write_bytes(next(corpus.rglob(f"{name}.json")).read_bytes())
    partial = runner.invoke(app, ["ontology", "check", str(tmp_path), "--json"])
    assert partial.exit_code == 0, partial.output
    summary = json.loads(partial.output)
    assert summary["errors"] == []
    assert {w["rule"] for w in summary["warnings"]} == {"dangling-target"}
    assert any("dtmi:digitaltwins:rec_3_3:core:Space;1" in w["message"] for w in summary["warnings"])
    assert "warnings" in runner.invoke(app, ["ontology", "check", str(tmp_path)]).output

    (tmp_path / "Pump.json").write_text(
        json.dumps(
            {
                "@id": "dtmi:com:example:Pump;1",
                "@type": "Interface",
                "@context": "dtmi:dtdl:context;3",
                "contents": [{"@type": "Component", "name": "motor", "schema": "dtmi:com:example:Motor;1"}],
            }
        )
    )
    dependent = runner.invoke(app, ["ontology", "check", str(tmp_path), "--json"])
    assert dependent.exit_code == 1
    assert [e["rule"] for e in json.loads(dependent.output)["errors"]] == ["dangling-reference"]


def test_the_twin_still_refuses_to_load_relationships_to_unknown_classes(tmp_path: Path) -> None:
    from ontology.errors import OntologyError
    from ontology.loader import load_ontology

    corpus = CORPORA / "realestatecore-building"
    (tmp_path / "Asset.json").write_bytes(next(corpus.rglob("Asset.json")).read_bytes())
    with pytest.raises(OntologyError) as refused:
        load_ontology([tmp_path])
    assert {v.rule for v in refused.value.violations} == {"dangling-target"}
