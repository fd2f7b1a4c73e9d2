"""One Schema codec: every schema of the real DTDL corpora survives its JSON form, the DTDL writer's element comments
and OWL's annotations; older DTDL comments still read; a broken recorded schema is a violation, not a crash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ontology.dtdl_reader import parse_dtdl, parse_dtdl_report, read_dtdl
from ontology.dtdl_writer import write_dtdl
from ontology.errors import OntologyError
from ontology.model import ClassDef, Ontology, PropertyDef
from ontology.owl import ontology_graph, parse_owl_graph, read_owl, write_owl
from ontology.schema import EnumValue, Field, Schema
from ontology.schema_codec import enum_value_kind, schema_from_json, schema_to_json

CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "dtdl"
NAMES = ("cim-energygrid", "isa95-manufacturing", "realestatecore-building")
_LOADED: dict[str, Ontology] = {}


def corpus(name: str) -> Ontology:
    """A real DTDL corpus read in place (skipped when the corpora are not beside the repository)."""
    if not CORPORA.is_dir():
        pytest.skip(f"DTDL corpora not found at {CORPORA}")
    if name not in _LOADED:
        _LOADED[name] = read_dtdl([CORPORA / name])
    return _LOADED[name]


def schemas_of(ontology: Ontology) -> Iterator[Schema]:
    """Every schema the ontology holds: properties, telemetry, edge properties, command payloads, named schemas."""
    yield from ontology.schemas.values()
    for cls in ontology.classes.values():
        yield from cls.schemas
        yield from (p.schema for p in cls.properties)
        yield from (p.schema for r in cls.relationships for p in r.properties)
        yield from (payload[1] for c in cls.commands for payload in (c.request, c.response) if payload)


def texts_of(schema: Schema) -> Any:
    """The display texts of a schema and its parts (Schema equality leaves its own out)."""
    return (
        schema.display_name,
        schema.description,
        [(v.display_name, v.description) for v in schema.enum_values],
        [(f.display_name, texts_of(f.schema)) for f in schema.fields],
        texts_of(schema.element) if schema.element else None,
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_of_a_real_corpus_survives_its_json_form(name: str) -> None:
    schemas = list(schemas_of(corpus(name)))
    complex_kinds = {s.kind for s in schemas if not s.is_primitive}
    assert schemas and complex_kinds, f"{name} holds no complex schema to test the codec with"
    for schema in schemas:
        encoded = schema_to_json(schema)
        back = schema_from_json(json.loads(json.dumps(encoded)))
        assert back == schema and texts_of(back) == texts_of(schema)
        assert schema_to_json(back) == encoded
        compact = schema_from_json(schema_to_json(schema, texts=False))
        assert schema_to_json(compact, texts=False) == schema_to_json(schema, texts=False)
        assert "displayName" not in json.dumps(schema_to_json(schema, texts=False))


@pytest.mark.parametrize("name", ["cim-energygrid", "isa95-manufacturing"])
def test_a_real_corpus_reads_back_equal_through_dtdl_v2_and_owl(name: str) -> None:
    ontology = corpus(name)
    # OWL refuses the corpora's relationships to interfaces outside them (DTDL allows those): the schemas are the point
    schemas_only = Ontology([replace(cls, relationships=()) for cls in ontology.classes.values()], iri=ontology.iri)
    through_owl = parse_owl_graph(ontology_graph(schemas_only))
    through_v2 = parse_dtdl([("v2", write_dtdl(ontology, 2))])  # v4 primitives' exact schemas ride in comments
    for copy in (through_owl, through_v2):
        for cls_id, cls in ontology.classes.items():
            again = copy.classes[cls_id] if cls_id in copy.classes else copy.get(cls.name)
            assert [p.schema for p in again.properties] == [p.schema for p in cls.properties], cls_id


def _with_schema(schema: Schema) -> Ontology:
    prop = PropertyDef("reading", schema)
    return Ontology([ClassDef("dtmi:example:Meter;1", "Meter", properties=(prop,))], iri="dtmi:example")


def test_a_schema_dtdl_v2_cannot_hold_is_recorded_in_the_comment_and_read_back_exactly() -> None:
    exact = Schema(
        "object",
        fields=(
            Field("id", Schema("uuid")),
            Field("level", Schema("unsignedShort")),
            Field(
                "mode",
                Schema("enum", enum_value_kind="integer", enum_values=(EnumValue("low", 1), EnumValue("high", 2))),
            ),
        ),
    )
    document = write_dtdl(_with_schema(exact), 2)[0]
    comment = document["contents"][0]["schema"]["comment"]
    assert json.loads(comment.removeprefix("twin:"))["schema"] == schema_to_json(exact, texts=False)
    assert parse_dtdl([("meter.json", document)]).get("Meter").properties[0].schema == exact


def test_a_comment_in_the_older_spelling_still_reads() -> None:
    older = {
        "kind": "map",
        "element": {"kind": "enum", "enum_value_kind": "string", "enum_values": [{"name": "on", "value": "ON"}]},
        "map_key": "switch",
        "map_value": "state",
    }
    assert schema_from_json(older) == Schema(
        "map",
        map_key="switch",
        map_value="state",
        element=Schema("enum", enum_value_kind="string", enum_values=(EnumValue("on", "ON"),)),
    )


@pytest.mark.parametrize(
    ("recorded", "problem"),
    [
        ({"nokind": 1}, "'kind'"),
        ({"kind": "hologram"}, "unknown schema kind 'hologram'"),
        ({"kind": "array"}, "the array schema has no element"),
        ("string", "JSON object"),
    ],
)
def test_a_broken_recorded_schema_is_a_violation_not_a_crash(recorded: Any, problem: str) -> None:
    comment = "twin:" + json.dumps({"schema": recorded})
    document = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Meter;1",
        "@type": "Interface",
        "contents": [{"@type": "Property", "name": "reading", "schema": "string", "comment": comment}],
    }
    report = parse_dtdl_report([("meter.json", document)])
    assert [(v.rule, problem in v.message) for v in report.violations] == [("annotation", True)]


def test_a_broken_named_schema_in_owl_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    text = write_owl(_with_schema(Schema("string")))
    path = tmp_path / "meter.ttl"
    path.write_text(
        text + "\n<dtmi:example:Meter;1> <https://enterprise-twin.dev/ontology/core#schemas> "
        '"[{\\"kind\\": \\"hologram\\"}]" .\n'
    )
    with pytest.raises(OntologyError, match="twin:schemas holds something that is not a schema"):
        read_owl(path)


def test_an_enum_of_booleans_is_not_an_integer_enum() -> None:
    assert enum_value_kind([1, 2]) == "integer"
    assert enum_value_kind([True, False]) == "string"
    assert enum_value_kind(["a", 1]) == "string" and enum_value_kind([]) == "string"
