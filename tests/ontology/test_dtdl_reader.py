"""The DTDL reader: every DTDL construct it maps, and a violation naming file, JSON path and rule for broken input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ontology.dtdl_reader import DtdlError, parse_dtdl, parse_dtdl_report, read_dtdl, read_dtdl_report
from ontology.errors import OntologyError
from ontology.schema import EnumValue, Field, Schema

V2 = "dtmi:dtdl:context;2"
V3 = "dtmi:dtdl:context;3"


def interface(ident: str, *contents: dict[str, Any], context: Any = V3, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"@context": context, "@id": ident, "@type": "Interface", **extra}
    if contents:
        doc["contents"] = list(contents)
    return doc


def write(tmp_path: Path, name: str, data: Any, *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def violations(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(file name, JSON path, rule) of every violation found in tmp_path."""
    with pytest.raises(DtdlError) as info:
        read_dtdl([tmp_path])
    return [(Path(v.source).name, v.path, v.rule) for v in info.value.violations]


# ------------------------------------------------------------------------------------------ mapping


def test_reads_interfaces_contents_and_inheritance_from_files_and_folders(tmp_path: Path) -> None:
    write(
        tmp_path,
        "models/base.json",
        interface(
            "dtmi:ex:core:Asset;1",
            {
                "@type": "Property",
                "name": "serial",
                "schema": "string",
                "writable": True,
                "displayName": {"en": "Serial", "de": "Seriennummer"},
                "description": "Maker's serial",
            },
            {"@type": ["Telemetry", "Temperature"], "name": "temp", "schema": "double", "unit": "degreeCelsius"},
            displayName="Asset",
        ),
        bom=True,
    )
    write(
        tmp_path,
        "models/more/pump.json",
        [
            interface(
                "dtmi:ex:core:Pump;2",
                {
                    "@type": "Relationship",
                    "name": "feeds",
                    "target": "dtmi:ex:core:Pump;2",
                    "minMultiplicity": 0,
                    "maxMultiplicity": 3,
                    "writable": True,
                    "properties": [{"@type": "Property", "name": "since", "schema": "dateTime"}],
                },
                {"@type": "Component", "name": "motor", "schema": "dtmi:ex:core:Motor;1"},
                {
                    "@type": "Command",
                    "name": "start",
                    "request": {"name": "speed", "schema": "integer"},
                    "response": {"@type": "CommandResponse", "name": "ok", "schema": "boolean"},
                },
                extends="dtmi:ex:core:Asset;1",
            ),
            interface("dtmi:ex:core:Motor;1", {"@type": "Property", "name": "rpm", "schema": "long"}),
        ],
    )
    onto = read_dtdl([tmp_path / "models"])
    assert len(onto) == 3
    asset = onto.get("dtmi:ex:core:Asset;1")
    assert asset.name == "Asset" and asset.display_name == (("en", "Asset"),)
    serial, temp = asset.properties
    assert (serial.name, serial.schema, serial.writable, serial.kind) == ("serial", Schema("string"), True, "property")
    assert serial.display_name == (("en", "Serial"), ("de", "Seriennummer"))
    assert serial.description == (("en", "Maker's serial"),)
    assert (temp.kind, temp.unit, temp.semantic_types, temp.writable) == (
        "telemetry",
        "degreeCelsius",
        ("Temperature",),
        False,
    )
    pump = onto.get("Pump")
    assert pump.id == "dtmi:ex:core:Pump;2" and pump.parents == ("dtmi:ex:core:Asset;1",)
    assert onto.labels("Pump") == ("Pump", "Asset")
    (feeds,) = pump.relationships
    assert (feeds.target, feeds.min, feeds.max, feeds.writable) == ("dtmi:ex:core:Pump;2", 0, 3, True)
    assert feeds.properties[0].name == "since" and feeds.properties[0].schema == Schema("dateTime")
    assert pump.components[0].schema == "dtmi:ex:core:Motor;1"
    (start,) = pump.commands
    assert start.request == ("speed", Schema("integer")) and start.response == ("ok", Schema("boolean"))
    assert Path(pump.source).name == "pump.json"


def test_complex_schemas_inline_and_referenced() -> None:
    doc = interface(
        "dtmi:ex:Site;1",
        {"@type": "Property", "name": "mode", "schema": "dtmi:ex:Mode;1"},
        {
            "@type": "Property",
            "name": "address",
            "schema": {
                "@type": "Object",
                "fields": [
                    {"name": "street", "schema": "string"},
                    {
                        "name": "tags",
                        "schema": {
                            "@type": "Map",
                            "mapKey": {"name": "tag", "schema": "string"},
                            "mapValue": {"name": "label", "schema": "string"},
                        },
                    },
                ],
            },
        },
        {"@type": "Telemetry", "name": "path", "schema": {"@type": "Array", "elementSchema": "point"}},
        {"@type": "Property", "name": "spots", "schema": {"@type": "Array", "elementSchema": "integer"}},
        schemas=[
            {
                "@id": "dtmi:ex:Mode;1",
                "@type": "Enum",
                "valueSchema": "integer",
                "enumValues": [{"name": "off", "enumValue": 0}, {"name": "on", "enumValue": 1, "displayName": "On"}],
            }
        ],
    )
    site = parse_dtdl([("site.json", doc)]).get("Site")
    mode = Schema(
        "enum",
        id="dtmi:ex:Mode;1",
        enum_value_kind="integer",
        enum_values=(EnumValue("off", 0), EnumValue("on", 1, (("en", "On"),))),
    )
    assert site.schemas == (mode,)
    props = {p.name: p.schema for p in site.properties}
    assert props["mode"] == mode
    assert props["address"] == Schema(
        "object",
        fields=(
            Field("street", Schema("string")),
            Field("tags", Schema("map", element=Schema("string"), map_key="tag", map_value="label")),
        ),
    )
    assert props["path"] == Schema("array", element=Schema("point"))
    assert props["spots"].describe() == "array<integer>"


def test_members_and_values_written_in_their_dtmi_forms() -> None:
    doc = {
        "@context": [V3],
        "@id": "dtmi:ex:A;1",
        "@type": "dtmi:dtdl:class:Interface;3",
        "dtmi:dtdl:property:contents;3": [
            {
                "@type": "dtmi:dtdl:class:Property;3",
                "name": {"@value": "p"},
                "schema": "dtmi:dtdl:instance:Schema:double;3",
                "writable": [True],
            }
        ],
    }
    (prop,) = parse_dtdl([("a.json", doc)]).get("A").properties
    assert (prop.name, prop.schema.kind, prop.writable) == ("p", "double", True)


def test_v2_command_type_is_accepted_and_v3_files_may_extend_v2_files() -> None:
    old = interface(
        "dtmi:ex:Old;1",
        {
            "@type": "Command",
            "name": "reboot",
            "commandType": "synchronous",
            "request": {"name": "delay", "schema": "duration"},
        },
        context=V2,
    )
    new = interface("dtmi:ex:New;1", extends="dtmi:ex:Old;1")
    onto = parse_dtdl([("old.json", old), ("new.json", new)])
    assert onto.get("New").parents == ("dtmi:ex:Old;1",)
    assert onto.get("Old").commands[0].request == ("delay", Schema("duration"))


def test_v4_primitives_need_the_v4_context() -> None:
    prop = {"@type": "Property", "name": "id", "schema": "uuid"}
    assert parse_dtdl([("a.json", interface("dtmi:ex:A;1", prop, context="dtmi:dtdl:context;4"))]).get("A").properties[
        0
    ].schema == Schema("uuid")
    report = parse_dtdl_report([("a.json", interface("dtmi:ex:A;1", prop))])
    assert [(v.path, v.rule) for v in report.violations] == [("$.contents[0].schema", "unknown-schema")]
    assert "v4" in report.violations[0].message


def test_report_counts_without_raising(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.json",
        interface(
            "dtmi:ex:A;1",
            {"@type": "Property", "name": "p", "schema": "string"},
            {"@type": "Telemetry", "name": "t", "schema": "double"},
            {"@type": "Relationship", "name": "r"},
            {"@type": "Command", "name": "c"},
            {"@type": "Component", "name": "k", "schema": "dtmi:ex:B;1"},
        ),
    )
    write(tmp_path, "b.json", interface("dtmi:ex:B;1", {"@type": "Property", "name": "q", "schema": "nope"}))
    report = read_dtdl_report([tmp_path])
    assert (
        report.files,
        report.interfaces,
        report.properties,
        report.telemetry,
        report.relationships,
        report.commands,
        report.components,
    ) == (2, 2, 1, 1, 1, 1, 1)
    assert [(Path(v.source).name, v.rule) for v in report.violations] == [("b.json", "unknown-schema")]
    summary = report.as_dict()
    assert summary["ok"] is False and summary["violations"][0]["path"] == "$.contents[0].schema"
    assert "A" in report.ontology and "B" in report.ontology  # partial ontology still usable


# ------------------------------------------------------------------------------------------ broken input


def test_error_lists_every_violation_across_files(tmp_path: Path) -> None:
    write(tmp_path, "bad_dtmi.json", interface("dtmi:ex:bad-name;1"))
    write(tmp_path, "garbage.json", "{ this is not json")
    write(
        tmp_path,
        "unknown_schema.json",
        [
            interface("dtmi:ex:Ok;1"),
            interface(
                "dtmi:ex:U;1",
                {"@type": "Property", "name": "a", "schema": "string"},
                {"@type": "Property", "name": "b", "schema": "strnig"},
            ),
        ],
    )
    assert violations(tmp_path) == [
        ("garbage.json", "$", "not-json"),
        ("bad_dtmi.json", "$['@id']", "dtmi"),
        ("unknown_schema.json", "$[1].contents[1].schema", "unknown-schema"),
    ]
    with pytest.raises(OntologyError, match="garbage.json"):  # DtdlError is an OntologyError naming the files
        read_dtdl([tmp_path])


def test_dangling_extends_and_component(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.json",
        interface(
            "dtmi:ex:A;1",
            {"@type": "Component", "name": "c", "schema": "dtmi:ex:Gone;1"},
            extends=["dtmi:ex:Missing;1"],
        ),
    )
    assert violations(tmp_path) == [
        ("a.json", "$.extends[0]", "dangling-extends"),
        ("a.json", "$.contents[0].schema", "dangling-reference"),
    ]


def test_relationship_targets_are_checked_only_on_request() -> None:
    doc = interface("dtmi:ex:A;1", {"@type": "Relationship", "name": "r", "target": "dtmi:ex:Elsewhere;1"})
    assert parse_dtdl([("a.json", doc)]).get("A").relationships[0].target == "dtmi:ex:Elsewhere;1"
    report = parse_dtdl_report([("a.json", doc)], require_targets=True)
    assert [(v.path, v.rule) for v in report.violations] == [("$.contents[0].target", "dangling-reference")]


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a.json", interface("dtmi:ex:A;1", extends="dtmi:ex:B;1"))
    write(tmp_path, "b.json", interface("dtmi:ex:B;1", extends="dtmi:ex:C;1"))
    write(tmp_path, "c.json", interface("dtmi:ex:C;1", extends="dtmi:ex:A;1"))
    found = violations(tmp_path)
    assert [rule for _, _, rule in found] == ["extends-cycle"]
    assert found[0][1] == "$.extends"


def test_self_component_is_a_cycle_too(tmp_path: Path) -> None:
    write(tmp_path, "a.json", interface("dtmi:ex:A;1", {"@type": "Component", "name": "me", "schema": "dtmi:ex:A;1"}))
    assert violations(tmp_path) == [("a.json", "$.contents[0].schema", "component-nesting")]


@pytest.mark.parametrize(("context", "limit"), [(V2, 10), (V3, 10)])
def test_extends_depth_limit(tmp_path: Path, context: str, limit: int) -> None:
    chain = [
        interface(f"dtmi:ex:L{i};1", context=context, **({"extends": f"dtmi:ex:L{i - 1};1"} if i else {}))
        for i in range(limit + 1)
    ]
    write(tmp_path, "ok.json", chain)
    assert len(read_dtdl([tmp_path])) == limit + 1  # a chain of exactly `limit` extends is fine
    chain.append(interface(f"dtmi:ex:L{limit + 1};1", context=context, extends=f"dtmi:ex:L{limit};1"))
    write(tmp_path, "ok.json", chain)
    assert violations(tmp_path) == [("ok.json", f"$[{limit + 1}].extends", "extends-depth")]


def test_v2_allows_two_direct_extends_v3_more(tmp_path: Path) -> None:
    bases = [interface(f"dtmi:ex:B{i};1", context=V2) for i in range(3)]
    child = {"extends": [f"dtmi:ex:B{i};1" for i in range(3)]}
    write(tmp_path, "a.json", [*bases, interface("dtmi:ex:C;1", context=V2, **child)])
    assert violations(tmp_path) == [("a.json", "$[3].extends", "extends-count")]
    write(tmp_path, "a.json", [*bases, interface("dtmi:ex:C;1", context=V3, **child)])
    assert read_dtdl([tmp_path]).get("C").parents == tuple(f"dtmi:ex:B{i};1" for i in range(3))


@pytest.mark.parametrize(
    ("relationship", "path"),
    [
        ({"minMultiplicity": 1}, "$.contents[0].minMultiplicity"),
        ({"maxMultiplicity": 0}, "$.contents[0].maxMultiplicity"),
        ({"minMultiplicity": "0"}, "$.contents[0].minMultiplicity"),
    ],
)
def test_wrong_multiplicity(tmp_path: Path, relationship: dict[str, Any], path: str) -> None:
    write(tmp_path, "m.json", interface("dtmi:ex:A;1", {"@type": "Relationship", "name": "r", **relationship}))
    assert [(f, p) for f, p, _ in violations(tmp_path)] == [("m.json", path)]


def test_v2_max_multiplicity_is_at_most_500(tmp_path: Path) -> None:
    rel = {"@type": "Relationship", "name": "r", "maxMultiplicity": 501}
    write(tmp_path, "m.json", interface("dtmi:ex:A;1", rel, context=V2))
    assert violations(tmp_path) == [("m.json", "$.contents[0].maxMultiplicity", "multiplicity")]
    write(tmp_path, "m.json", interface("dtmi:ex:A;1", rel))
    assert read_dtdl([tmp_path]).get("A").relationships[0].max == 501


def test_duplicate_names_own_and_inherited(tmp_path: Path) -> None:
    write(tmp_path, "base.json", interface("dtmi:ex:Base;1", {"@type": "Property", "name": "x", "schema": "string"}))
    write(
        tmp_path,
        "sub.json",
        interface(
            "dtmi:ex:Sub;1",
            {"@type": "Property", "name": "x", "schema": "string"},
            {"@type": "Telemetry", "name": "y", "schema": "double"},
            {"@type": "Relationship", "name": "y"},
            extends="dtmi:ex:Base;1",
        ),
    )
    assert sorted(violations(tmp_path)) == [
        ("sub.json", "$.contents[0]", "duplicate-name"),
        ("sub.json", "$.contents[2]", "duplicate-name"),
    ]


def test_diamond_inheritance_is_not_a_duplicate(tmp_path: Path) -> None:
    write(
        tmp_path,
        "d.json",
        [
            interface("dtmi:ex:Top;1", {"@type": "Property", "name": "x", "schema": "string"}),
            interface("dtmi:ex:L;1", extends="dtmi:ex:Top;1"),
            interface("dtmi:ex:R;1", extends="dtmi:ex:Top;1"),
            interface("dtmi:ex:Bottom;1", extends=["dtmi:ex:L;1", "dtmi:ex:R;1"]),
        ],
    )
    assert read_dtdl([tmp_path]).properties("Bottom")["x"].schema == Schema("string")


def test_schema_nesting_depth_limit(tmp_path: Path) -> None:
    def nested(levels: int) -> Any:
        schema: Any = "integer"
        for _ in range(levels):
            schema = {"@type": "Array", "elementSchema": schema}
        return schema

    write(tmp_path, "s.json", interface("dtmi:ex:A;1", {"@type": "Telemetry", "name": "t", "schema": nested(6)}))
    assert read_dtdl([tmp_path]).get("A").properties[0].schema.describe().count("array") == 6
    write(tmp_path, "s.json", interface("dtmi:ex:A;1", {"@type": "Telemetry", "name": "t", "schema": nested(7)}))
    deep = "$.contents[0].schema" + ".elementSchema" * 6
    assert violations(tmp_path) == [("s.json", deep, "schema-depth")]


def test_v2_property_may_not_hold_an_array(tmp_path: Path) -> None:
    prop = {"@type": "Property", "name": "p", "schema": {"@type": "Array", "elementSchema": "string"}}
    write(tmp_path, "a.json", interface("dtmi:ex:A;1", prop, context=V2))
    assert violations(tmp_path) == [("a.json", "$.contents[0].schema", "schema-not-allowed")]


def test_context_rules(tmp_path: Path) -> None:
    write(tmp_path, "none.json", {"@id": "dtmi:ex:A;1", "@type": "Interface"})
    write(tmp_path, "old.json", interface("dtmi:ex:B;1", context="dtmi:dtdl:context;1"))
    write(tmp_path, "ext.json", interface("dtmi:ex:C;1", context=[V3, "dtmi:dtdl:extension:quantitativeTypes;1"]))
    write(tmp_path, "unknown_ext.json", interface("dtmi:ex:D;1", context=[V3, "dtmi:com:acme:magic;1"]))
    write(tmp_path, "order.json", interface("dtmi:ex:E;1", context=["dtmi:dtdl:extension:quantitativeTypes;1", V3]))
    assert sorted(violations(tmp_path)) == [
        ("none.json", "$['@context']", "context"),
        ("old.json", "$['@context']", "context"),
        ("order.json", "$['@context']", "context"),
        ("unknown_ext.json", "$['@context']", "context"),
    ]


def test_required_fields_unknown_types_names_and_members(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.json",
        [
            {"@context": V3, "@type": "Interface"},
            interface(
                "dtmi:ex:A;1",
                {"@type": "Property", "name": "noSchema"},
                {"@type": "Proprety", "name": "typo", "schema": "string"},
                {"@type": "Property", "name": "bad name", "schema": "string"},
                {"@type": "Property", "name": "p", "schema": "string", "shema": "double"},
                {"@type": "Relationship", "target": "dtmi:ex:A;1"},
            ),
        ],
    )
    assert violations(tmp_path) == [
        ("r.json", "$[0]", "required-field"),
        ("r.json", "$[1].contents[0]", "required-field"),
        ("r.json", "$[1].contents[1]['@type']", "unknown-type"),
        ("r.json", "$[1].contents[2].name", "name"),
        ("r.json", "$[1].contents[3].shema", "unknown-member"),
        ("r.json", "$[1].contents[4]", "required-field"),
    ]


def test_enum_rules(tmp_path: Path) -> None:
    enum = {
        "@type": "Enum",
        "valueSchema": "integer",
        "enumValues": [
            {"name": "a", "enumValue": 1},
            {"name": "a", "enumValue": 2},
            {"name": "b", "enumValue": 1},
            {"name": "c", "enumValue": "three"},
        ],
    }
    write(tmp_path, "e.json", interface("dtmi:ex:A;1", {"@type": "Property", "name": "p", "schema": enum}))
    assert violations(tmp_path) == [
        ("e.json", "$.contents[0].schema.enumValues[1]", "duplicate-name"),
        ("e.json", "$.contents[0].schema.enumValues[2].enumValue", "enum-value"),
        ("e.json", "$.contents[0].schema.enumValues[3].enumValue", "value-type"),
    ]


def test_duplicate_ids_and_schema_scope(tmp_path: Path) -> None:
    write(
        tmp_path,
        "one.json",
        interface(
            "dtmi:ex:A;1",
            {"@type": "Property", "name": "x", "schema": "string"},
            schemas=[
                {
                    "@id": "dtmi:ex:S;1",
                    "@type": "Enum",
                    "valueSchema": "string",
                    "enumValues": [{"name": "a", "enumValue": "a"}],
                }
            ],
        ),
    )
    write(tmp_path, "two.json", interface("dtmi:ex:A;1", {"@type": "Property", "name": "y", "schema": "string"}))
    write(tmp_path, "three.json", interface("dtmi:ex:B;1", {"@type": "Property", "name": "s", "schema": "dtmi:ex:S;1"}))
    found = violations(tmp_path)
    assert ("two.json", "$['@id']", "duplicate-id") in found
    assert ("three.json", "$.contents[0].schema", "reference-scope") in found


def test_identical_definitions_in_two_files_are_accepted(tmp_path: Path) -> None:
    doc = interface("dtmi:ex:A;1", {"@type": "Property", "name": "x", "schema": "string"})
    write(tmp_path, "a.json", doc)
    write(tmp_path, "copy/a.json", doc)
    assert len(read_dtdl([tmp_path])) == 1


def test_localized_text_and_length_rules(tmp_path: Path) -> None:
    write(
        tmp_path,
        "t.json",
        [
            interface("dtmi:ex:A;1", displayName={"EN_us": "bad code"}),
            interface("dtmi:ex:B;1", context=V2, displayName="x" * 65),
            interface(
                "dtmi:ex:C;1", displayName=[{"@value": "Hi", "@language": "en"}, {"@value": "Hallo", "@language": "de"}]
            ),
        ],
    )
    assert violations(tmp_path) == [
        ("t.json", "$[0].displayName", "localized-text"),
        ("t.json", "$[1].displayName", "string-length"),
    ]
    write(
        tmp_path,
        "t.json",
        interface(
            "dtmi:ex:C;1", displayName=[{"@value": "Hi", "@language": "en"}, {"@value": "Hallo", "@language": "de"}]
        ),
    )
    assert read_dtdl([tmp_path]).get("C").display_name == (("en", "Hi"), ("de", "Hallo"))


def test_top_level_must_be_interface_object(tmp_path: Path) -> None:
    write(tmp_path, "x.json", [42, {"@context": V3, "@id": "dtmi:ex:E;1", "@type": "Enum"}])
    assert violations(tmp_path) == [("x.json", "$[0]", "not-object"), ("x.json", "$[1]['@type']", "unknown-type")]


def test_missing_path_is_reported(tmp_path: Path) -> None:
    report = read_dtdl_report([tmp_path / "nowhere"])
    assert [(v.rule, Path(v.source).name) for v in report.violations] == [("not-json", "nowhere")]


def test_broken_twin_metadata_in_a_comment_is_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "card.json",
        interface(
            "dtmi:ex:Card;1",
            {"@type": "Property", "name": "holder", "schema": "string", "comment": 'twin:{"classification": "PII"'},
            {"@type": "Property", "name": "pin", "schema": "string", "comment": "twin:[1, 2]"},
        ),
    )
    with pytest.raises(DtdlError) as info:
        read_dtdl([tmp_path])
    found = [(v.rule, v.message) for v in info.value.violations]
    assert [rule for rule, _ in found] == ["annotation", "annotation"]
    assert "not valid JSON" in found[0][1] and "JSON object" in found[1][1]


# ------------------------------------------------------------------------------------------ depth limits (issue 23)


def _timed_violations(tmp_path: Path) -> list[Any]:
    import time

    started = time.perf_counter()
    report = read_dtdl_report([tmp_path])
    print(
        f"\n  read {report.files} file(s), {len(report.violations)} violation(s) in "
        f"{time.perf_counter() - started:.3f} s"
    )
    return report.violations


def test_a_10000_deep_extends_chain_is_one_clear_error_naming_file_and_chain(tmp_path: Path) -> None:
    depth = 10_000
    chain = [interface(f"dtmi:ex:L{i};1", **({"extends": f"dtmi:ex:L{i - 1};1"} if i else {})) for i in range(depth)]
    write(tmp_path, "deep.json", chain)
    found = _timed_violations(tmp_path)
    assert [(Path(v.source).name, v.path, v.rule) for v in found] == [("deep.json", "$[11].extends", "extends-depth")]
    message = found[0].message
    assert "dtmi:ex:L11;1 -> dtmi:ex:L10;1" in message and "dtmi:ex:L0;1" in message and "allows 10" in message
    assert len(message) < 2_000


def test_a_10000_deep_inline_extends_chain_is_refused_without_recursing(tmp_path: Path) -> None:
    depth = 10_000
    head = "".join(
        '{"@id": "dtmi:ex:L%d;1", "@type": "Interface", %s"extends": '
        % (i, f'"@context": "{V3}", ' if i == depth - 1 else "")
        for i in range(depth - 1, 0, -1)
    )
    (tmp_path / "inline.json").write_text(head + '{"@id": "dtmi:ex:L0;1", "@type": "Interface"}' + "}" * (depth - 1))
    found = _timed_violations(tmp_path)
    assert [(Path(v.source).name, v.rule) for v in found] == [("inline.json", "not-json")]
    assert "nest" in found[0].message and len(found[0].message) < 300


def test_inline_extends_deeper_than_the_limit_name_the_chain(tmp_path: Path) -> None:
    node: dict[str, Any] = {"@id": "dtmi:ex:L0;1", "@type": "Interface"}
    for i in range(1, 14):
        node = {"@id": f"dtmi:ex:L{i};1", "@type": "Interface", "extends": node}
    node["@context"] = V3
    write(tmp_path, "inline.json", node)
    found = violations(tmp_path)
    assert [rule for _, _, rule in found] == ["extends-depth"]
    assert found[0][1] == "$" + ".extends" * 11


def test_a_wide_deep_parsed_document_never_recurses_without_bound() -> None:
    """Documents handed over as Python objects (parse_dtdl) may nest deeper than the JSON reader allows."""
    node: dict[str, Any] = {"@id": "dtmi:ex:L0;1", "@type": "Interface"}
    for i in range(1, 5_000):
        node = {"@id": f"dtmi:ex:L{i};1", "@type": "Interface", "extends": [node]}
    node["@context"] = V3
    report = parse_dtdl_report([("objects", node)])
    assert [v.rule for v in report.violations] == ["extends-depth"]
    assert report.violations[0].path == "$" + ".extends[0]" * 11
