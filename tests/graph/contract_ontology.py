"""A small ontology for the graph contract tests, independent of the core ontology."""

from __future__ import annotations

from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef
from ontology.schema import EnumValue, Field, Schema, primitive

NS = "https://example.test/twin#"


def contract_ontology() -> Ontology:
    """Entity > Person > Employee, Unit, Machine, Supplier, Material, Process; typed properties and relationships."""
    s = primitive
    status = Schema(
        kind="enum", enum_value_kind="string", enum_values=(EnumValue("up", "up"), EnumValue("down", "down"))
    )
    spec = Schema(kind="object", fields=(Field("rpm", s("integer")), Field("vendor", s("string"))))
    return Ontology(
        [
            ClassDef(
                NS + "Entity",
                "Entity",
                properties=(PropertyDef("name", s("string")), PropertyDef("description", s("string"))),
            ),
            ClassDef(
                NS + "Person",
                "Person",
                parents=(NS + "Entity",),
                properties=(
                    PropertyDef("email", s("string"), classification="PII"),
                    PropertyDef("born", s("date"), classification="PII"),
                ),
                relationships=(RelationshipDef("operates", NS + "Machine"),),
            ),
            ClassDef(
                NS + "Employee",
                "Employee",
                parents=(NS + "Person",),
                properties=(
                    PropertyDef("employeeId", s("string"), required=True),
                    PropertyDef("salary", s("double"), classification="Confidential"),
                    PropertyDef("age", s("integer")),
                ),
                relationships=(
                    RelationshipDef("worksIn", NS + "Unit", max=1),
                    RelationshipDef("reportsTo", NS + "Employee", max=1, characteristics=frozenset({"transitive"})),
                    RelationshipDef("hasSkill", NS + "Skill", properties=(PropertyDef("level", s("integer")),)),
                ),
            ),
            ClassDef(
                NS + "Unit",
                "Unit",
                parents=(NS + "Entity",),
                relationships=(RelationshipDef("partOf", NS + "Unit", characteristics=frozenset({"transitive"})),),
            ),
            ClassDef(NS + "Skill", "Skill", parents=(NS + "Entity",)),
            ClassDef(
                NS + "Machine",
                "Machine",
                parents=(NS + "Entity",),
                properties=(
                    PropertyDef("status", status),
                    PropertyDef("spec", spec),
                    PropertyDef("capacity", s("double")),
                    PropertyDef("installed", s("dateTime")),
                ),
                relationships=(RelationshipDef("dependsOn", NS + "Entity", characteristics=frozenset({"dependency"})),),
            ),
            ClassDef(
                NS + "Supplier",
                "Supplier",
                parents=(NS + "Entity",),
                relationships=(
                    RelationshipDef(
                        "supplies",
                        NS + "Material",
                        characteristics=frozenset({"supports"}),
                        properties=(PropertyDef("leadTimeDays", s("integer")),),
                    ),
                ),
            ),
            ClassDef(NS + "Material", "Material", parents=(NS + "Entity",)),
            ClassDef(
                NS + "Process",
                "Process",
                parents=(NS + "Entity",),
                relationships=(
                    RelationshipDef("consumes", NS + "Material", characteristics=frozenset({"dependency"})),
                    RelationshipDef("requires", NS + "Machine", characteristics=frozenset({"dependency"})),
                ),
            ),
        ],
        iri="https://example.test/twin",
    )
