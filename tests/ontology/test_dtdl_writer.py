"""The DTDL writer: any Ontology (OWL-style IRIs included) written as DTDL reads back as the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ontology.dtdl_reader import DtdlError, parse_dtdl, read_dtdl
from ontology.dtdl_writer import dump_dtdl, ontology_dtmis, write_dtdl
from ontology.dtmi import is_dtmi
from ontology.model import ClassDef, CommandDef, ComponentDef, Ontology, PropertyDef, RelationshipDef
from ontology.schema import EnumValue, Field, Schema

CORE = "https://enterprise-twin.dev/ontology/core#"


def owl_like() -> Ontology:
    """An ontology shaped like one read from OWL: IRIs for ids, XSD-ish primitives, cardinalities, characteristics."""
    status = Schema(
        "enum",
        id=f"{CORE}EmploymentStatus",
        enum_value_kind="string",
        enum_values=(EnumValue("active", "active"), EnumValue("on-leave", "on-leave")),
    )
    return Ontology(
        [
            ClassDef(id=f"{CORE}Agent", name="Agent", display_name=(("en", "Agent"), ("de", "Akteur"))),
            ClassDef(
                id=f"{CORE}Person",
                name="Person",
                parents=(f"{CORE}Agent",),
                properties=(
                    PropertyDef(
                        "name", Schema("string"), required=True, iri=f"{CORE}name", display_name=(("en", "Name"),)
                    ),
                    PropertyDef("salary", Schema("decimal"), classification="Confidential", iri=f"{CORE}salary"),
                    PropertyDef("badge", Schema("uuid"), writable=True),
                    PropertyDef("birth-date", Schema("date"), classification="PII"),
                    PropertyDef(
                        "bodyTemp",
                        Schema("double"),
                        kind="telemetry",
                        unit="degreeCelsius",
                        semantic_types=("Temperature",),
                    ),
                    PropertyDef("status", status),
                    PropertyDef("skills", Schema("map", element=Schema("integer"))),
                    PropertyDef("levels", Schema("enum", enum_values=(EnumValue("low", 1), EnumValue("high", 2)))),
                    PropertyDef(
                        "history",
                        Schema(
                            "array",
                            element=Schema(
                                "object",
                                fields=(Field("from", Schema("date")), Field("amount", Schema("unsignedLong"))),
                            ),
                        ),
                    ),
                ),
                relationships=(
                    RelationshipDef(
                        "reportsTo",
                        target=f"{CORE}Person",
                        max=1,
                        min=1,
                        inverse="manages",
                        characteristics=frozenset({"transitive"}),
                        iri=f"{CORE}reportsTo",
                    ),
                    RelationshipDef(
                        "hasSkill",
                        target=f"{CORE}Skill",
                        min=0,
                        properties=(PropertyDef("level", Schema("integer"), required=True),),
                    ),
                    RelationshipDef("relatedTo"),
                    RelationshipDef("worksFor", target="https://other.example/org#Company"),
                ),
                commands=(
                    CommandDef("promote", request=("grade", Schema("short")), response=("ok", Schema("boolean"))),
                ),
                components=(ComponentDef("address", f"{CORE}Address"),),
                schemas=(status,),
            ),
            ClassDef(id=f"{CORE}Skill", name="Skill"),
            ClassDef(id=f"{CORE}Address", name="Address", properties=(PropertyDef("city", Schema("string")),)),
            ClassDef(id="dtmi:ex:AlreadyDtmi;1", name="AlreadyDtmi", parents=(f"{CORE}Agent",)),
            ClassDef(id="urn:x:Odd", name="OddName"),
        ]
    )


def test_iris_become_deterministic_dtmis() -> None:
    dtmis = ontology_dtmis(owl_like())
    assert dtmis[f"{CORE}Person"] == "dtmi:dev:enterprise_twin:ontology:core:Person;1"
    assert dtmis["dtmi:ex:AlreadyDtmi;1"] == "dtmi:ex:AlreadyDtmi;1"
    assert all(is_dtmi(d, 2) for d in dtmis.values())
    assert ontology_dtmis(owl_like()) == dtmis


@pytest.mark.parametrize("version", [2, 3, 4])
def test_owl_like_ontology_round_trips(version: int) -> None:
    original = owl_like()
    documents = write_dtdl(original, version)
    person = next(d for d in documents if d["@id"].endswith(":Person;1"))
    assert person["extends"] == "dtmi:dev:enterprise_twin:ontology:core:Agent;1"
    assert person["comment"].startswith("twin:")  # the original IRI is recorded
    again = parse_dtdl([("out.json", json.loads(json.dumps(documents)))])
    assert dict(again.classes) == dict(original.classes)
    assert again.ancestors(f"{CORE}Person") == (f"{CORE}Agent",)
    assert again.get("Person").relationships[0].characteristics == frozenset({"transitive"})


def test_primitives_missing_from_the_version_fall_back_and_v4_keeps_them() -> None:
    v3 = {c["name"]: c for c in write_dtdl(owl_like(), 3)[1]["contents"]}
    assert v3["salary"]["schema"] == "double" and v3["badge"]["schema"] == "string"
    v4 = {c["name"]: c for c in write_dtdl(owl_like(), 4)[1]["contents"]}
    assert v4["salary"]["schema"] == "decimal" and v4["badge"]["schema"] == "uuid"
    assert v3["birth_date"]["comment"] == 'twin:{"classification":"PII","name":"birth-date"}'


def test_colliding_iris_get_distinct_dtmis() -> None:
    onto = Ontology(
        [ClassDef(id="http://a.org/x#Thing-One", name="A"), ClassDef(id="http://a.org/x#Thing_One", name="B")]
    )
    dtmis = ontology_dtmis(onto)
    assert len(set(dtmis.values())) == 2
    assert dict(parse_dtdl([("x", write_dtdl(onto))]).classes) == dict(onto.classes)


def test_dump_to_folder_and_file(tmp_path: Path) -> None:
    onto = owl_like()
    files = dump_dtdl(onto, tmp_path / "models")
    assert len(files) == len(onto)
    assert (tmp_path / "models/dev/enterprise_twin/ontology/core/Person.json") in files
    assert dict(read_dtdl([tmp_path / "models"]).classes) == dict(onto.classes)
    (single,) = dump_dtdl(onto, tmp_path / "all.json", version=2)
    assert dict(read_dtdl([single]).classes) == dict(onto.classes)


def test_unwritable_ontology_is_refused_with_violations() -> None:
    parents = tuple(f"dtmi:ex:P{i};1" for i in range(3))
    onto = Ontology(
        [
            *(ClassDef(id=p, name=p[8:10]) for p in parents),
            ClassDef(id="dtmi:ex:Child;1", name="Child", parents=parents),
        ]
    )
    assert len(write_dtdl(onto, 3)) == 4
    with pytest.raises(DtdlError) as info:
        write_dtdl(onto, 2)
    assert [v.rule for v in info.value.violations] == ["extends-count"]
    with pytest.raises(DtdlError, match="v7"):
        write_dtdl(onto, 7)
