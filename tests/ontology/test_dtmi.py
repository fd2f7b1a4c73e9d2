"""DTMI syntax and version rules of DTDL v2 and v3, and the IRI -> DTMI mapping."""

from __future__ import annotations

import pytest

from ontology.dtmi import Dtmi, DtmiError, dtmi_name, dtmi_problem, iri_to_dtmi, is_dtmi, parse_dtmi, to_segment


@pytest.mark.parametrize(
    "value",
    ["dtmi:digitaltwins:rec_3_3:asset:Bed;1", "dtmi:com:example:Thermostat;123456789", "dtmi:a;1", "dtmi:a1:b_2:C;7"],
)
def test_valid_in_v2_and_v3(value: str) -> None:
    assert is_dtmi(value, 2) and is_dtmi(value, 3)


@pytest.mark.parametrize("value", ["dtmi:com:example:Thermostat", "dtmi:com:example:Thermostat;1.2"])
def test_v3_allows_no_version_and_two_part_versions_v2_does_not(value: str) -> None:
    assert is_dtmi(value, 3)
    assert not is_dtmi(value, 2)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("dtmi:com:example:Thermo-stat;1", "segment"),
        ("dtmi:com:_sys:X;1", "segment"),
        ("dtmi:com:example_:X;1", "segment"),
        ("dtmi:9lives:X;1", "segment"),
        ("dtmi:com:example:X;01", "version"),
        ("dtmi:com:example:X;1234567890", "version"),
        ("dtmi:com:example:X;1.0", "version"),
        ("dtmi:com:example:X;1.1234567", "version"),
        ("dtmi:com::X;1", "segment"),
        ("urn:com:example:X;1", "does not start"),
        ("DTMI:com:example:X;1", "does not start"),
    ],
)
def test_invalid_dtmis_explain_the_rule(value: str, why: str) -> None:
    problem = dtmi_problem(value, 3)
    assert problem is not None and why in problem


def test_length_limits_and_reserved_prefixes() -> None:
    long_id = "dtmi:" + ":".join(["segment"] * 20) + ";1"
    assert len(long_id) > 128
    assert dtmi_problem(long_id, 3) is None
    assert "128" in (dtmi_problem(long_id, 3, max_length=128) or "")
    assert "2048" in (dtmi_problem("dtmi:" + "a" * 2100 + ";1", 3) or "")
    assert "reserved" in (dtmi_problem("dtmi:dtdl:class:Interface;3", 3, as_id=True) or "")
    assert dtmi_problem("dtmi:dtdl:class:Interface;3", 3) is None
    assert "string" in (dtmi_problem(42, 3) or "")


def test_parse_gives_segments_and_versions() -> None:
    parsed = parse_dtmi("dtmi:digitaltwins:rec_3_3:asset:Bed;1")
    assert parsed == Dtmi(("digitaltwins", "rec_3_3", "asset", "Bed"), 1, None)
    assert parsed.name == "Bed" and parsed.deversioned == "dtmi:digitaltwins:rec_3_3:asset:Bed"
    two = parse_dtmi("dtmi:ex:Foo;2.15")
    assert (two.major, two.minor, two.version, str(two)) == (2, 15, "2.15", "dtmi:ex:Foo;2.15")
    assert parse_dtmi("dtmi:ex:Foo").version is None
    with pytest.raises(DtmiError, match="required in DTDL v2"):
        parse_dtmi("dtmi:ex:Foo", 2)
    assert dtmi_name("dtmi:digitaltwins:rec_3_3:asset:Bed;1") == "Bed"


def test_iri_to_dtmi_is_deterministic_and_valid() -> None:
    assert iri_to_dtmi("https://enterprise-twin.dev/ontology/core#Employee") == (
        "dtmi:dev:enterprise_twin:ontology:core:Employee;1"
    )
    assert iri_to_dtmi("http://example.org/onto/has-skill") == "dtmi:org:example:onto:has_skill;1"
    assert iri_to_dtmi("urn:isbn:0451450523") == "dtmi:isbn:x0451450523;1"
    long_iri = "https://example.org/" + "/".join(["very-long-path-segment"] * 12) + "#Thing"
    mapped = iri_to_dtmi(long_iri)
    assert len(mapped) <= 128 and is_dtmi(mapped, 2) and mapped == iri_to_dtmi(long_iri)
    assert mapped != iri_to_dtmi(long_iri + "2")
    assert to_segment("3rd party") == "x3rd_party" and to_segment("a__b_") == "a_b"
