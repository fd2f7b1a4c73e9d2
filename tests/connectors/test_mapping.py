"""Mappings: YAML checked against the ontology at load time (file, line, term), and the value transforms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from connectors.mapping import MappingError, load_mapping, parse_mapping
from connectors.transforms import Expression, Template, TransformError, cast_value, convert_unit, normalise_email
from ontology.model import Ontology
from tests.connectors.twin_fixtures import core  # noqa: F401

MAPPINGS = Path(__file__).resolve().parents[2] / "connectors" / "mappings"

GOOD = """\
system: hr
entities:
  - name: employees
    class: Employee
    uid: "hr:employee:{employee_id}"
    key: employee_id
    watermark: updated_at
    properties:
      employeeId: employee_id
      name: {template: "{first} {last}"}
      salary: {field: salary_cents, unit: {from: cent, to: unit}, cast: double}
      email: {field: mail, transform: [trim, lower]}
      capacityHoursPerWeek: {expr: "hours_per_day * 5"}
      hireDate: {field: hired, cast: date}
      jobTitle: {field: grade, lookup: {map: {A: Engineer, B: Technician}, default: Staff}}
    links:
      - type: reportsTo
        target: "hr:employee:{manager_id}"
        target_class: Employee
"""


@pytest.mark.parametrize("name", ["sample_hr", "sample_crm", "sample_erp", "tryton", "telemetry"])
def test_packaged_mappings_load_against_the_core_ontology(core: Ontology, name: str) -> None:
    mapping = load_mapping(MAPPINGS / f"{name}.yaml", core)
    assert mapping.entities
    for entity in mapping.entities:
        assert (entity.cls is None) == entity.is_association


def test_a_good_mapping_computes_every_property(core: Ontology) -> None:
    mapping = parse_mapping(GOOD, core, "hr.yaml")
    entity = mapping.entity("employees")
    record = {
        "employee_id": "E1",
        "first": "Ada",
        "last": "Lovelace",
        "salary_cents": 6_500_000,
        "mail": "  Ada.Lovelace@Example.COM ",
        "hours_per_day": 8,
        "hired": "2020-01-02 00:00:00",
        "grade": "C",
        "manager_id": None,
    }
    values = {rule.name: rule.compute(record) for rule in entity.properties}
    assert values == {
        "employeeId": "E1",
        "name": "Ada Lovelace",
        "salary": 65_000.0,
        "email": "ada.lovelace@example.com",
        "capacityHoursPerWeek": 40.0,
        "hireDate": "2020-01-02",
        "jobTitle": "Staff",
    }
    assert entity.uid is not None and entity.uid.render(record) == "hr:employee:E1"
    assert entity.links[0].target_of(record) is None  # no manager: no link
    salary = next(rule for rule in entity.properties if rule.name == "salary")
    assert salary.source_fields == ("salary_cents",)
    assert salary.transform_text == "unit:cent->unit | cast:double"
    assert entity.rule_name("salary") == "hr.yaml#employees.salary"


def _problems(core: Ontology, text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, core, "bad.yaml")
    assert all(p.file == "bad.yaml" for p in caught.value.problems)
    assert "bad.yaml:" in str(caught.value)
    return [(p.line, p.term, p.message) for p in caught.value.problems]


def test_unknown_property_is_refused_with_file_line_term_and_a_suggestion(core: Ontology) -> None:
    problems = _problems(core, GOOD.replace("      salary:", "      salry:"))
    assert problems == [(11, "salry", "Employee has no property 'salry'; did you mean 'salary'?")]


def test_unknown_class_is_refused_naming_the_line(core: Ontology) -> None:
    problems = _problems(core, GOOD.replace("class: Employee", "class: Employe"))
    assert problems[0][:2] == (4, "Employe")
    assert "unknown class" in problems[0][2] and "'Employee'" in problems[0][2]


def test_mistyped_cast_lookup_and_constant_are_refused(core: Ontology) -> None:
    text = (
        GOOD.replace("cast: double}", "cast: date}")
        + """\
  - name: machines
    class: Machine
    uid: "erp:machine:{tag}"
    properties:
      name: tag
      status: {field: state, lookup: {map: {run: running, down: down}}}
      powerKw: {const: "lots"}
"""
    )
    problems = _problems(core, text)
    assert (11, "cast:date", "employees.salary is double but the rule casts to date") in problems
    assert any(
        line == 25 and term == "running" and "does not fit machines.status" in message
        for line, term, message in problems
    )
    assert any(line == 26 and term == "'lots'" for line, term, _ in problems)


def test_unknown_relationship_domain_and_range_are_refused(core: Ontology) -> None:
    text = GOOD.replace("type: reportsTo", "type: reportTo")
    assert _problems(core, text)[0][:2] == (17, "reportTo")
    text = GOOD.replace("type: reportsTo", "type: placedWith")
    assert _problems(core, text)[0] == (17, "placedWith", "Employee may not have relationship 'placedWith'")
    text = GOOD.replace("target_class: Employee", "target_class: Machine")
    assert _problems(core, text)[0][:2] == (19, "Machine")


def test_required_property_left_unmapped_is_refused(core: Ontology) -> None:
    problems = _problems(core, GOOD.replace("      employeeId: employee_id\n", ""))
    assert problems == [
        (8, "employees.employeeId", "Employee requires 'employeeId' but the mapping sets no rule for it")
    ]


def test_every_problem_is_reported_at_once(core: Ontology) -> None:
    text = GOOD.replace("salary:", "salry:").replace("email:", "emial:").replace("[trim, lower]", "[trim, lowr]")
    problems = _problems(core, text)
    assert {term for _, term, _ in problems} >= {"salry", "emial"}
    assert len(problems) >= 2


def test_malformed_yaml_and_bad_rules_name_the_line(core: Ontology) -> None:
    assert _problems(core, GOOD + "  - name: [unclosed\n")[0][1] == "yaml"
    problems = _problems(core, GOOD.replace('{expr: "hours_per_day * 5"}', '{expr: "hours_per_day *"}'))
    assert problems[0][:2] == (13, "employees.capacityHoursPerWeek")
    problems = _problems(core, GOOD.replace("{first} {last}", "{first!r}"))
    assert problems[0][:2] == (10, "employees.name")
    problems = _problems(core, GOOD.replace("    key: employee_id\n", "    key: employee_id\n    kye: x\n"))
    assert problems[0][:2] == (7, "kye")


# --------------------------------------------------------------------------------------------- transforms
def test_casts_convert_or_refuse_with_the_value() -> None:
    assert cast_value("12.50", "double") == 12.5
    assert cast_value("12.0", "integer") == 12
    assert cast_value(7, "string") == "7"
    assert cast_value("yes", "boolean") is True
    assert cast_value(dt.date(2024, 5, 1), "date") == "2024-05-01"
    assert cast_value("2024-05-01 08:30:00", "dateTime") == "2024-05-01T08:30:00+00:00"
    assert cast_value(5400, "duration") == "PT1H30M"
    assert cast_value(None, "double") is None
    with pytest.raises(TransformError, match="'abc' cannot be cast to double"):
        cast_value("abc", "double")
    with pytest.raises(TransformError, match="fractional"):
        cast_value("1.5", "integer")


def test_units_convert_within_a_dimension_only() -> None:
    assert convert_unit(90, "minute", "hour") == 1.5
    assert convert_unit("100", "celsius", "kelvin") == pytest.approx(373.15)
    assert convert_unit(212, "fahrenheit", "celsius") == pytest.approx(100.0)
    with pytest.raises(TransformError, match="cannot convert time"):
        convert_unit(1, "hour", "kg")


def test_email_normalisation_strips_plus_tags_for_configured_domains() -> None:
    assert normalise_email("  Ada+CRM@Example.com ") == "ada@example.com"
    assert normalise_email("ada+crm@other.org", frozenset({"example.com"})) == "ada+crm@other.org"
    assert normalise_email("ada+crm@example.com", frozenset({"example.com"})) == "ada@example.com"


def test_expressions_are_evaluated_safely() -> None:
    assert Expression.compile("round(a * 1.1, 2) if a > 0 else None").evaluate({"a": 10}) == 11.0
    assert Expression.compile("concat(lower(x), '-', part(y, ',', 1))").evaluate({"x": "AB", "y": "m,7"}) == "ab-7"
    for hostile in ("__import__('os').system('true')", "x.__class__", "open('/etc/passwd')"):
        with pytest.raises(TransformError):
            Expression.compile(hostile).evaluate({"x": 1})
    with pytest.raises(TransformError, match="unknown field 'missing'"):
        Expression.compile("missing + 1").evaluate({})


def test_templates_fill_fields_and_refuse_empty_ones() -> None:
    template = Template.compile("hr:employee:{employee_id}")
    assert template.fields == ("employee_id",)
    assert template.render({"employee_id": 42}) == "hr:employee:42"
    with pytest.raises(TransformError, match="'employee_id'"):
        template.render({"employee_id": ""})
    assert template.render_or_none({}) is None


def test_connector_settings_fill_secrets_and_variables_in_one_pass() -> None:
    from connectors.registry import RegistryError, _fill

    filled = _fill(
        {"url": "postgresql://u:${PW}@db/{data_dir}", "other": ["{unknown}"]},
        {"data_dir": "twin"},
        {"PW": "p{data_dir}w"},
        "connectors.yaml: hr",
    )
    assert filled == {"url": "postgresql://u:p{data_dir}w@db/twin", "other": ["{unknown}"]}
    with pytest.raises(RegistryError, match=r"connectors.yaml: hr: secret \$\{MISSING\} is not set"):
        _fill("${MISSING}", {}, {}, "connectors.yaml: hr")


def test_a_source_option_typo_or_a_missing_connection_setting_is_refused_by_name(core: Ontology) -> None:
    from dataclasses import replace

    from connectors.registry import RegistryError, _SourceFactory

    mapping = load_mapping(MAPPINGS / "sample_hr.yaml", core)
    entity = mapping.entities[0]
    typo = replace(entity, source={"tabel": "employees"})
    with pytest.raises(RegistryError, match=r"entity .*: unknown source option\(s\) tabel; a sql entity takes"):
        _SourceFactory("sql", {"url": "sqlite://"}, "hr")(typo)
    with pytest.raises(RegistryError, match="connector hr: a sql source needs url"):
        _SourceFactory("sql", {}, "hr")(entity)
    with pytest.raises(RegistryError, match="needs url, database, username, password"):
        _SourceFactory("tryton", {}, "erp")(entity)


def test_names_and_flags_of_the_wrong_shape_are_refused(core: Ontology) -> None:
    text = GOOD.replace("    key: employee_id\n", '    key: 5\n    update_only: "no"\n') + (
        "    identity:\n      domain: person\n      email: email\n      exact: 7\n"
        '      plus_domains: {a: 1}\n      authoritative: "no"\n'
        "    telemetry: {time: ts, metrics: 3}\n"
    )
    problems = {term: message for _, term, message in _problems(core, text)}
    assert problems["employees.key"] == "key must be a name or a list of names"
    assert problems["employees.update_only"] == "update_only must be true or false, not 'no'"
    assert problems["employees.identity.exact"] == "exact must be a name or a list of names"
    assert problems["employees.identity.plus_domains"] == "plus_domains must be a name or a list of names"
    assert problems["employees.identity.authoritative"] == "authoritative must be true or false, not 'no'"
    assert problems["employees.telemetry.metrics"] == "metrics must be a name or a list of names"
    single = parse_mapping(
        GOOD.replace(
            "    watermark", "    identity: {domain: person, email: email, plus_domains: acme.test}\n    watermark"
        ),
        core,
        "ok.yaml",
    )
    assert single.entities[0].identity.plus_domains == frozenset({"acme.test"})  # type: ignore[union-attr]


OPTIONAL_ENTITY = """
system: erp
entities:
  - name: purchases
    optional: true
    class: PurchaseOrder
    uid: "erp:purchase:{id}"
    source: {model: purchase.purchase, fields: [id, rec_name, party.name]}
    properties:
      name: rec_name
      description: {template: "{party.name}"}
  - name: parties
    class: Organization
    uid: "erp:party:{id}"
    source: {model: party.party, fields: [id, name]}
    properties:
      name: name
"""


def test_optional_entities_and_the_lines_that_read_a_source_field(core: Ontology) -> None:
    mapping = parse_mapping(OPTIONAL_ENTITY, core, "erp.yaml")
    purchases, parties = mapping.entities
    assert (purchases.optional, parties.optional) == (True, False)
    assert purchases.line_of_field("party.name") == 11  # the rule that reads it
    assert purchases.line_of_field("id") == 4  # read by the uid rule: the entity's line
    assert purchases.line_of_field("not_read") == 8  # only fetched: the `source:` line
    with pytest.raises(MappingError, match=r"erp\.yaml:5: purchases\.optional: optional must be true or false"):
        parse_mapping(OPTIONAL_ENTITY.replace("optional: true", "optional: maybe"), core, "erp.yaml")
