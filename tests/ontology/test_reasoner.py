"""DL reasoning with HermiT (owlready2): the core ontology is consistent; contradictions are found."""

from __future__ import annotations

import shutil
from pathlib import Path

import owlready2
import pytest

from ontology.core import load_core
from ontology.errors import OntologyError, ReasonerUnavailable
from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef
from ontology.reasoner import check_consistency
from ontology.schema import Schema

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no Java runtime on PATH; HermiT cannot run")

HEAD = """
@prefix ex: <http://example.org/r#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
<http://example.org/r> a owl:Ontology .
ex:Person a owl:Class . ex:Machine a owl:Class .
ex:Person owl:disjointWith ex:Machine .
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "test.ttl"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


@needs_java
def test_core_ontology_is_consistent_and_every_class_satisfiable():
    report = check_consistency(load_core())
    assert report.consistent and report.unsatisfiable == () and report.ok
    assert report.reasoner == "hermit"


@needs_java
def test_core_ttl_file_is_consistent():
    path = Path(__file__).resolve().parents[2] / "ontology" / "core.ttl"
    assert check_consistency(path).ok


@needs_java
def test_class_under_two_disjoint_classes_is_unsatisfiable(tmp_path):
    report = check_consistency(write(tmp_path, "ex:Cyborg a owl:Class ; rdfs:subClassOf ex:Person , ex:Machine ."))
    assert report.consistent
    assert report.unsatisfiable == ("http://example.org/r#Cyborg",)
    assert not report.ok


@needs_java
def test_individual_in_two_disjoint_classes_makes_the_ontology_inconsistent(tmp_path):
    report = check_consistency(write(tmp_path, "ex:robbie a owl:NamedIndividual , ex:Person , ex:Machine ."))
    assert not report.consistent and not report.ok
    assert report.message


@needs_java
def test_inferred_subclass_relations_are_reported(tmp_path):
    body = """
    ex:Operator a owl:Class ; owl:equivalentClass [ a owl:Restriction ; owl:onProperty ex:operates ;
                                                    owl:someValuesFrom ex:Machine ] .
    ex:operates a owl:ObjectProperty .
    ex:Welder a owl:Class ; rdfs:subClassOf ex:Person ,
        [ a owl:Restriction ; owl:onProperty ex:operates ; owl:someValuesFrom ex:Machine ] .
    """
    report = check_consistency(write(tmp_path, body))
    assert report.ok
    assert ("http://example.org/r#Welder", "http://example.org/r#Operator") in report.inferred_subclasses
    assert ("http://example.org/r#Welder", "http://example.org/r#Person") not in report.inferred_subclasses  # asserted


@needs_java
def test_any_model_ontology_can_be_checked():
    onto = Ontology(
        [
            ClassDef(
                "dtmi:example:Device;1",
                "Device",
                properties=(PropertyDef("serial", Schema(kind="uuid"), required=True),),
            ),
            ClassDef(
                "dtmi:example:Pump;1",
                "Pump",
                parents=("dtmi:example:Device;1",),
                relationships=(RelationshipDef("feeds", target="dtmi:example:Device;1", max=2),),
            ),
        ]
    )
    assert check_consistency(onto).ok


def test_missing_java_raises_reasoner_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java anywhere
    monkeypatch.setattr(owlready2, "JAVA_EXE", "java")
    with pytest.raises(ReasonerUnavailable, match="needs a Java runtime"):
        check_consistency(load_core())


def test_java_path_that_does_not_exist_raises_reasoner_unavailable(monkeypatch):
    monkeypatch.setattr(owlready2, "JAVA_EXE", "/nonexistent/bin/java")
    with pytest.raises(ReasonerUnavailable, match="/nonexistent/bin/java"):
        check_consistency(load_core())


def test_unknown_reasoner_and_missing_file_are_errors(tmp_path):
    with pytest.raises(OntologyError, match="unknown reasoner"):
        check_consistency(load_core(), reasoner="fact++")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on PATH")
    with pytest.raises(OntologyError, match="no such OWL file"):
        check_consistency(tmp_path / "missing.ttl")
