"""The core enterprise ontology (ontology/core.ttl): completeness, OWL conventions, and the model it loads into."""

from __future__ import annotations

import pytest
from rdflib import BNode, Literal, URIRef, namespace
from rdflib.collection import Collection
from rdflib.namespace import OWL, RDF, RDFS

from ontology.core import CORE_IRI, core_graph, load_core
from ontology.model import CLASSIFICATIONS
from ontology.owl import IMPACT_VALUES, TWIN

EXPECTED_CLASSES = {
    "Entity", "Organization", "OrgUnit", "Person", "Employee", "Contact", "Role", "Position", "Skill", "Location",
    "Site", "Asset", "Machine", "Vehicle", "ITSystem", "Application", "Facility", "WorkCenter", "Process",
    "Activity", "Capability", "Item", "Product", "Material", "Customer", "Supplier", "Contract", "Order",
    "PurchaseOrder", "SalesOrder", "Opportunity", "Project", "Task", "KPI", "Risk", "Control", "Regulation",
    "DataSource",
    "MaintenanceEvent",
}  # fmt: skip


@pytest.fixture(scope="module")
def graph():
    return core_graph()


@pytest.fixture(scope="module")
def core():
    return load_core()


def named(graph, kind):
    return sorted(s for s in graph.subjects(RDF.type, kind) if isinstance(s, URIRef))


def test_every_expected_class_is_defined_with_its_parents(core):
    assert {c.name for c in core.classes.values()} == EXPECTED_CLASSES
    assert core.labels("Employee") == ("Employee", "Person", "Entity")
    assert core.labels("Application") == ("Application", "ITSystem", "Asset", "Entity")
    assert core.labels("PurchaseOrder") == ("PurchaseOrder", "Order", "Entity")
    for sub, parent in [("Contact", "Person"), ("Position", "Role"), ("Site", "Location"), ("Customer", "Organization"),
                        ("Supplier", "Organization"), ("SalesOrder", "Order"), ("Activity", "Process"),
                        ("WorkCenter", "Asset"), ("Product", "Item"), ("Material", "Item"),
                        ("Task", "Project")]:  # fmt: skip
        assert core.is_a(sub, parent), (sub, parent)
    for asset in ("Machine", "Vehicle", "ITSystem", "Application", "Facility", "WorkCenter"):
        assert core.is_a(asset, "Asset")
    for cls in core.classes.values():
        assert core.is_a(cls.id, "Entity"), f"{cls.name} does not descend from Entity"


def test_facility_is_both_an_asset_and_a_location(core):
    facility = core.get("Facility")
    assert {core.classes[p].name for p in facility.parents} == {"Asset", "Location"}
    assert "address" in core.properties("Facility") and "serialNumber" in core.properties("Facility")


def test_every_class_and_property_has_a_label_and_a_comment(graph):
    terms = [
        *named(graph, OWL.Class),
        *named(graph, OWL.DatatypeProperty),
        *named(graph, OWL.ObjectProperty),
        *(t for t in named(graph, OWL.AnnotationProperty) if str(t).startswith(str(TWIN))),
    ]
    assert len(terms) > 150
    missing = [str(t) for t in terms if graph.value(t, RDFS.label) is None or graph.value(t, RDFS.comment) is None]
    assert missing == []


def test_ontology_has_version_iri_and_version_info(graph, core):
    head = URIRef(CORE_IRI)
    assert (head, RDF.type, OWL.Ontology) in graph
    assert graph.value(head, OWL.versionIRI) == URIRef(f"{CORE_IRI}/1.0.0")
    assert graph.value(head, OWL.versionInfo) == Literal("1.0.0")
    assert core.iri == CORE_IRI and core.version == "1.0.0"


def test_every_datatype_property_has_an_xsd_range(graph):
    def xsd_based(node) -> bool:
        if isinstance(node, URIRef):
            return str(node).startswith(str(namespace.XSD))
        if graph.value(node, OWL.onDatatype) is not None:
            return xsd_based(graph.value(node, OWL.onDatatype))
        one_of = graph.value(node, OWL.oneOf)
        return one_of is not None and all(isinstance(v, Literal) for v in Collection(graph, one_of))

    props = named(graph, OWL.DatatypeProperty)
    assert len(props) > 80
    bad = [str(p) for p in props if not xsd_based(graph.value(p, RDFS.range))]
    assert bad == []


def test_every_object_property_has_domain_and_range_or_is_a_declared_inverse(graph):
    props = named(graph, OWL.ObjectProperty)
    forward = [p for p in props if graph.value(p, RDFS.domain) is not None]
    assert len(forward) >= 30
    assert [str(p) for p in forward if graph.value(p, RDFS.range) is None] == []
    for prop in props:
        if prop in forward:
            continue
        inverse_of = graph.value(prop, OWL.inverseOf)
        assert inverse_of in forward, f"{prop} has no domain and is not the inverse of a forward relationship"
        assert graph.value(prop, RDFS.range) is None


def test_reports_to_and_part_of_are_transitive(graph, core):
    for name in ("reportsTo", "partOf"):
        assert (TWIN[name], RDF.type, OWL.TransitiveProperty) in graph
    assert core.relationships("Employee")["reportsTo"].transitive
    assert core.relationships("Machine")["partOf"].transitive
    assert not core.relationships("Person")["worksIn"].transitive


def test_transitive_properties_stay_out_of_cardinality_restrictions(graph):
    """OWL 2 DL: a non-simple (transitive) property may not be counted, so its link limit is an annotation."""
    transitive = set(graph.subjects(RDF.type, OWL.TransitiveProperty))
    counted = {
        graph.value(r, OWL.onProperty)
        for r in graph.subjects(RDF.type, OWL.Restriction)
        if any(graph.value(r, p) is not None for p in (OWL.maxCardinality, OWL.maxQualifiedCardinality,
                                                       OWL.minCardinality, OWL.minQualifiedCardinality,
                                                       OWL.cardinality, OWL.qualifiedCardinality))
    }  # fmt: skip
    assert transitive and not (transitive & counted)
    assert not (transitive & set(graph.subjects(RDF.type, OWL.FunctionalProperty)))
    assert graph.value(TWIN.reportsTo, TWIN.maxLinks) == Literal(1)


def test_personal_and_confidential_fields_are_classified(graph, core):
    person = core.properties("Employee")
    for pii in ("email", "phone", "birthDate"):
        assert person[pii].classification == "PII", pii
    for confidential in ("salary",):
        assert person[confidential].classification == "Confidential"
    assert core.properties("Asset")["acquisitionCost"].classification == "Confidential"
    assert core.properties("Order")["amount"].classification == "Confidential"
    assert person["jobTitle"].classification is None  # absent means Internal
    values = {str(v) for v in graph.objects(None, TWIN.classification)}
    assert values <= set(CLASSIFICATIONS) and {"PII", "Confidential", "Public"} <= values


def test_impact_annotations_point_the_right_way(graph, core):
    assert {str(v) for v in graph.objects(None, TWIN.impact)} == set(IMPACT_VALUES)
    rels = core.relationship_types()
    direction = {name: defs[0][1] for name, defs in rels.items()}
    for name in ("requires", "consumes", "dependsOn", "locatedAt", "reportsTo", "measures", "placedWith"):
        assert direction[name].dependency and not direction[name].supports, name
    for name in ("supplies", "produces", "partOf", "hosts", "operates", "worksIn", "realizes", "mitigates"):
        assert direction[name].supports and not direction[name].dependency, name
    for name in ("owns", "governs", "hasContract", "maintains"):
        assert not (direction[name].supports or direction[name].dependency), name


def test_relationship_domains_ranges_and_inverses(core):
    expect = {
        ("Person", "worksIn"): "OrgUnit",
        ("Employee", "reportsTo"): "Employee",
        ("Person", "holdsRole"): "Role",
        ("Person", "hasSkill"): "Skill",
        ("Entity", "locatedAt"): "Location",
        ("Entity", "partOf"): "Entity",
        ("Person", "operates"): "Asset",
        ("WorkCenter", "performs"): "Process",
        ("Process", "requires"): "Entity",  # Asset or Skill: nearest common superclass
        ("Supplier", "supplies"): "Item",
        ("WorkCenter", "produces"): "Product",
        ("Process", "consumes"): "Material",
        ("Organization", "sells"): "Product",
        ("Organization", "owns"): "Asset",
        ("Control", "governs"): "Process",
        ("KPI", "measures"): "Entity",
        ("Control", "mitigates"): "Risk",
        ("Risk", "threatens"): "Entity",
        ("PurchaseOrder", "placedWith"): "Supplier",
        ("SalesOrder", "placedBy"): "Customer",
        ("Order", "orders"): "Item",
        ("MaintenanceEvent", "maintains"): "Asset",
    }
    for (cls, rel), target in expect.items():
        definition = core.relationships(cls)[rel]
        assert core.classes[definition.target].name == target, (cls, rel)
    assert core.relationships("Machine")["partOf"].inverse == "hasPart"
    assert core.relationships("Employee")["reportsTo"].inverse == "manages"
    assert "reportsTo" not in core.relationships("Contact")


def test_multiplicity_from_restrictions_functional_properties_and_link_limits(core):
    works_in = core.relationships("Employee")["worksIn"]
    assert (works_in.min, works_in.max) == (None, 1)
    reports_to = core.relationships("Employee")["reportsTo"]
    assert reports_to.max == 1 and reports_to.transitive
    placed_with = core.relationships("PurchaseOrder")["placedWith"]
    assert (placed_with.min, placed_with.max) == (1, 1) and "functional" in placed_with.characteristics
    assert core.relationships("Order")["orders"].min == 1
    assert core.relationships("Machine")["locatedAt"].max == 1
    assert core.validate_multiplicity("reportsTo", "Employee", 2) != []
    assert core.validate_multiplicity("reportsTo", "Employee", 1) == []


def test_relationship_properties(core):
    level = core.relationships("Employee")["hasSkill"].property("level")
    assert level is not None and level.schema.kind == "integer"
    assert core.relationships("PurchaseOrder")["orders"].property("quantity").schema.kind == "double"
    assert core.relationships("Supplier")["supplies"].property("leadTimeDays").schema.kind == "integer"
    assert "level" not in core.properties("Person")  # edge properties are not node properties
    assert core.validate_relationship("hasSkill", "Employee", "Skill", {"level": 3}) == []
    problems = core.validate_relationship("hasSkill", "Employee", "Skill", {"level": "expert"})
    assert [p.rule for p in problems] == ["type"] and "level" in problems[0].path


def test_union_domains_put_a_property_on_each_class(core):
    assert core.properties("Material")["leadTimeDays"] == core.properties("Supplier")["leadTimeDays"]
    assert "jobTitle" in core.properties("Contact") and "jobTitle" in core.properties("Employee")
    assert "jobTitle" not in core.properties("Person")
    for cls in ("Product", "Order", "Contract", "Opportunity"):
        assert core.properties(cls)["currency"].schema.kind == "string"


def test_property_types_and_required_flags(core):
    employee = core.properties("Employee")
    assert employee["hireDate"].schema.kind == "date"
    assert employee["salary"].schema.kind == "double"
    assert employee["name"].required and employee["employeeId"].required
    assert not employee["email"].required
    assert core.properties("Product")["sku"].required
    status = core.properties("Machine")["status"].schema
    assert status.kind == "enum" and "operational" in [v.value for v in status.enum_values]
    assert core.properties("Activity")["plannedDuration"].schema.kind == "duration"
    assert core.properties("KPI")["measuredAt"].schema.kind == "dateTime"
    assert core.properties("Supplier")["reliability"].schema.kind == "double"  # restricted double -> base type


def test_structural_check_finds_nothing(core):
    assert core.check() == []


def test_valid_employee_passes_validation(core):
    employee = {
        "name": "Ada Lovelace",
        "employeeId": "E-001",
        "email": "ada@example.com",
        "hireDate": "2021-03-01",
        "salary": 85000,
        "capacityHoursPerWeek": 40.0,
        "jobTitle": "Engineer",
    }
    assert core.validate("Employee", employee) == []


def test_validation_names_the_wrongly_typed_property(core):
    problems = core.validate(
        "Employee", {"name": "Ada", "employeeId": "E-1", "hireDate": "last spring", "salary": "lots"}
    )
    assert {(p.path, p.rule) for p in problems} == {("hireDate", "type"), ("salary", "type")}


def test_values_no_graph_can_hold_fail_validation(core):
    problems = core.validate("Employee", {"name": "Ada\x00", "employeeId": "E-1", "salary": float("nan")})
    assert {(p.path, p.rule) for p in problems} == {("name", "type"), ("salary", "type")}
    assert any("NUL" in p.message for p in problems) and any("finite" in p.message for p in problems)
    assert core.validate("Employee", {"name": "Ada", "employeeId": "E-1", "salary": float("-inf")})[0].path == "salary"


def test_validation_reports_missing_required_and_bad_enum(core):
    problems = core.validate("Employee", {"name": "Ada"})
    assert [(p.path, p.rule) for p in problems] == [("employeeId", "required")]
    problems = core.validate("Machine", {"name": "Press 1", "status": "broken"})
    assert [(p.path, p.rule) for p in problems] == [("status", "type")]
    assert "broken" in problems[0].message


def test_relationship_validation_uses_domain_and_range(core):
    assert core.validate_relationship("worksIn", "Employee", "OrgUnit") == []
    assert [p.rule for p in core.validate_relationship("worksIn", "Employee", "Machine")] == ["range"]
    assert [p.rule for p in core.validate_relationship("reportsTo", "Machine", "Employee")] == ["domain"]
    assert core.validate_relationship("requires", "Activity", "Skill") == []
    assert core.validate_relationship("supplies", "Supplier", "Material") == []


def test_load_core_is_cached(core):
    assert load_core() is core
    assert isinstance(core_graph().value(URIRef(CORE_IRI), OWL.versionIRI), URIRef)
    assert not isinstance(core_graph().value(URIRef(CORE_IRI), OWL.versionIRI), BNode)


def test_an_unknown_classification_is_a_structural_problem_and_masked_as_the_most_sensitive(core):
    from governance.identity import Subject
    from governance.policy import load_policy
    from graph.model import TwinRecord
    from ontology.model import ClassDef, Ontology, PropertyDef
    from ontology.schema import primitive

    card = ClassDef(
        "dtmi:acme:Card;1",
        "Card",
        parents=(core.get("Entity").id,),
        properties=(
            PropertyDef("holderEmail", primitive("string"), classification="pii"),
            PropertyDef("holderPhone", primitive("string"), classification="PII"),
        ),
    )
    merged = core.merge(Ontology([card]))
    problems = [p for p in merged.check() if p.rule == "classification"]
    assert [(p.path, "'pii'" in p.message) for p in problems] == [("dtmi:acme:Card;1/holderEmail", True)]
    viewer = Subject("v", frozenset({"executive"}))
    view = load_policy(merged).mask(
        viewer, TwinRecord("c1", "Card", ("Card", "Entity"), {"holderEmail": "a@b.test", "holderPhone": "+49 1"})
    )
    assert view.properties["holderEmail"] == view.properties["holderPhone"] != "a@b.test"


def test_the_loader_reads_every_owl_suffix_the_owl_reader_knows(tmp_path, core):
    from importlib.resources import files

    from ontology.loader import load_ontology

    text = files("ontology").joinpath("core.ttl").read_text(encoding="utf-8")
    for name in ("core.turtle", "core.ttl"):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert len(load_ontology([tmp_path / name])) == len(core)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "core.turtle").write_text(text, encoding="utf-8")
    (tmp_path / "folder" / "pom.xml").write_text("<project/>")  # not RDF: a folder's .xml files are left alone
    assert len(load_ontology([tmp_path / "folder"])) == len(core)
