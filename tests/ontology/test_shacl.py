"""SHACL shapes from the ontology, twin records as RDF, and validation of twin data with pyshacl."""

from __future__ import annotations

import datetime as dt

import pytest
from rdflib import Literal, URIRef
from rdflib.namespace import RDF, SH

from ontology.core import load_core
from ontology.errors import UnknownTerm
from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef
from ontology.schema import Schema
from ontology.shacl import TwinRecord, instance_graph, shapes_for, twin_iri, validate_instances

CORE = "https://enterprise-twin.dev/ontology/core#"


@pytest.fixture(scope="module")
def core():
    return load_core()


def valid_team() -> list[TwinRecord]:
    return [
        TwinRecord("u-ops", "OrgUnit", {"name": "Operations", "costCenter": "CC-10"}),
        TwinRecord("e-boss", "Employee", {"name": "Grace", "employeeId": "E-1"}, [("worksIn", "u-ops")]),
        TwinRecord(
            "e-ada",
            "Employee",
            {"name": "Ada", "employeeId": "E-2", "hireDate": dt.date(2021, 3, 1), "salary": 85000,
             "email": "ada@example.com", "capacityHoursPerWeek": 40},
            [("worksIn", "u-ops"), ("reportsTo", "e-boss"), ("hasSkill", "s-cnc"), ("operates", "m-press")],
        ),
        TwinRecord("s-cnc", "Skill", {"name": "CNC programming"}),
        TwinRecord("m-press", "Machine", {"name": "Press 1", "status": "operational", "mtbfHours": 1200.5}),
        TwinRecord("f-plant", "Facility", {"name": "Plant B", "address": "1 Main St"}, [("partOf", "u-ops")]),
    ]  # fmt: skip


def issues_of(report, uid):
    return {(i.path, i.message) for i in report.for_twin(uid)}


def test_valid_twins_conform(core):
    report = validate_instances(core, instance_graph(valid_team(), core))
    assert report.conforms, [str(i) for i in report.issues]
    assert report.issues == ()


def test_wrong_datatype_is_reported_with_property_and_value(core):
    twins = [*valid_team(), TwinRecord("e-bad", "Employee", {"name": "Eve", "employeeId": "E-9", "salary": "lots",
                                                              "hireDate": "last spring"})]  # fmt: skip
    report = validate_instances(core, instance_graph(twins, core))
    assert not report.conforms
    assert issues_of(report, "e-bad") == {
        ("salary", "'salary' must be double, got 'lots' (string)"),
        ("hireDate", "'hireDate' must be date, got 'last spring' (string)"),
    }
    assert all(i.severity == "Violation" for i in report.issues)


def test_missing_required_property_is_reported_including_inherited_ones(core):
    twins = [TwinRecord("e-anon", "Employee", {"email": "x@example.com"})]
    report = validate_instances(core, instance_graph(twins, core))
    assert issues_of(report, "e-anon") == {("employeeId", "'employeeId' is required"), ("name", "'name' is required")}


def test_too_many_managers_is_reported(core):
    twins = [*valid_team(), TwinRecord("e-two", "Employee", {"name": "Tim", "employeeId": "E-3"},
                                       [("reportsTo", "e-boss"), ("reportsTo", "e-ada")])]  # fmt: skip
    report = validate_instances(core, instance_graph(twins, core))
    assert issues_of(report, "e-two") == {("reportsTo", "at most 1 'reportsTo' allowed, got 2")}


def test_link_to_the_wrong_class_is_reported(core):
    twins = [*valid_team(), TwinRecord("e-lost", "Employee", {"name": "Lu", "employeeId": "E-4"},
                                       [("worksIn", "m-press"), ("hasSkill", "nobody")])]  # fmt: skip
    report = validate_instances(core, instance_graph(twins, core))
    assert issues_of(report, "e-lost") == {
        ("worksIn", "'worksIn' must point to a OrgUnit, not m-press (Machine)"),
        ("hasSkill", "'hasSkill' must point to a Skill, not nobody (untyped (not in the data))"),
    }


def test_enum_and_domain_violations_are_reported(core):
    twins = [
        *valid_team(),
        TwinRecord("m-odd", "Machine", {"name": "Lathe", "status": "broken"}, [("reportsTo", "e-boss")]),
    ]
    report = validate_instances(core, instance_graph(twins, core))
    messages = issues_of(report, "m-odd")
    assert (
        "status",
        "'broken' is not one of ['operational', 'degraded', 'down', 'maintenance', 'retired']",
    ) in messages
    assert ("reportsTo", "Machine may not have 'reportsTo': 'reportsTo' is only allowed on Employee") in messages


def test_required_relationship_is_reported(core):
    twins = [TwinRecord("po-1", "PurchaseOrder", {"name": "PO 1"}), TwinRecord("mat", "Material", {"name": "Steel"})]
    report = validate_instances(core, instance_graph(twins, core))
    assert issues_of(report, "po-1") == {("orders", "'orders' is required"), ("placedWith", "'placedWith' is required")}


def test_shapes_describe_each_class(core):
    shapes = shapes_for(core)
    employee_shape = next(shapes.subjects(SH.targetClass, URIRef(CORE + "Employee")))
    props = {shapes.value(p, SH.path): p for p in shapes.objects(employee_shape, SH.property)}
    employee_id = props[URIRef(CORE + "employeeId")]
    assert shapes.value(employee_id, SH.minCount) == Literal(1)
    assert shapes.value(employee_id, SH.datatype) == URIRef("http://www.w3.org/2001/XMLSchema#string")
    reports_to = props[URIRef(CORE + "reportsTo")]
    assert shapes.value(reports_to, SH.maxCount) == Literal(1)
    assert shapes.value(reports_to, SH["class"]) == URIRef(CORE + "Employee")
    assert URIRef(CORE + "name") not in props  # inherited from Entity's shape through rdfs:subClassOf
    assert len(set(shapes.subjects(SH.targetClass, None))) == len(core)


def test_instance_graph_types_values_by_schema(core):
    g = instance_graph([TwinRecord("e", "Employee", {"name": "A", "employeeId": "1", "hireDate": "2020-01-02",
                                                     "salary": 5, "capacityHoursPerWeek": None})], core)  # fmt: skip
    node = twin_iri("e")
    assert (node, RDF.type, URIRef(CORE + "Employee")) in g
    assert g.value(node, URIRef(CORE + "hireDate")).datatype == URIRef("http://www.w3.org/2001/XMLSchema#date")
    assert g.value(node, URIRef(CORE + "salary")) == Literal(5.0)
    assert g.value(node, URIRef(CORE + "capacityHoursPerWeek")) is None


def test_unknown_terms_raise_naming_the_twin(core):
    with pytest.raises(UnknownTerm, match="twin 'x1'.*Spaceship"):
        instance_graph([TwinRecord("x1", "Spaceship")], core)
    with pytest.raises(UnknownTerm, match="twin 'x2'.*property 'warpFactor'"):
        instance_graph([TwinRecord("x2", "Machine", {"warpFactor": 9})], core)
    with pytest.raises(UnknownTerm, match="twin 'x3'.*relationship 'orbits'"):
        instance_graph([TwinRecord("x3", "Machine", {}, [("orbits", "x1")])], core)


def test_works_for_ontologies_without_iris():
    device = ClassDef(
        "dtmi:example:Device;1", "Device", properties=(PropertyDef("serial", Schema(kind="string"), required=True),)
    )
    pump = ClassDef("dtmi:example:Pump;1", "Pump", parents=("dtmi:example:Device;1",),
                    relationships=(RelationshipDef("feeds", target="dtmi:example:Pump;1", max=1),))  # fmt: skip
    onto = Ontology([device, pump])
    good = [TwinRecord("p1", "Pump", {"serial": "A"}, [("feeds", "p2")]), TwinRecord("p2", "Pump", {"serial": "B"})]
    assert validate_instances(onto, instance_graph(good, onto)).conforms
    bad = [TwinRecord("p3", "Pump", {}, [("feeds", "p1"), ("feeds", "p2")]), *good]
    report = validate_instances(onto, instance_graph(bad, onto))
    assert issues_of(report, "p3") == {
        ("serial", "'serial' is required"),
        ("feeds", "at most 1 'feeds' allowed, got 2"),
    }
