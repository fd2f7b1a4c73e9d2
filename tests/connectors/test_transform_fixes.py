"""Expression and template fixes: `part` with negative indexes, a record field named `value` in a top-level
expression, templates filled in one pass."""

from __future__ import annotations

import pytest

from connectors.mapping import parse_mapping
from connectors.transforms import Expression, Template, TransformError
from ontology.model import Ontology
from tests.connectors.twin_fixtures import core  # noqa: F401


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, "ACME"), (2, "42"), (-1, "42"), (-2, "EU"), (-3, "ACME"), (-4, None), (3, None), (5, None)],
)
def test_part_counts_negative_indexes_from_the_end_and_is_none_out_of_range(index: int, expected: str | None) -> None:
    assert Expression.compile(f"part(code, '-', {index})").evaluate({"code": "ACME-EU-42"}) == expected


def test_part_of_nothing_is_nothing() -> None:
    assert Expression.compile("part(code, '-', -1)").evaluate({"code": None}) is None


MAPPING = """\
system: plant
entities:
  - name: machines
    class: Machine
    uid: "plant:machine:{code}"
    key: code
    properties:
      name: name
      powerKw: {expr: "coalesce(value, 0) / 1000"}
      description: {field: name, transform: [{expr: "concat(value, ' #', code)"}]}
"""


def test_a_top_level_expression_reads_a_record_field_named_value(core: Ontology) -> None:
    entity = parse_mapping(MAPPING, core, "plant.yaml").entity("machines")
    rules = {rule.name: rule for rule in entity.properties}
    record = {"code": "M1", "name": "Press", "value": 7500}
    assert rules["powerKw"].compute(record) == 7.5
    assert rules["powerKw"].compute({**record, "value": None}) == 0
    assert rules["powerKw"].source_fields == ("value",)  # lineage names the field read


def test_in_a_pipeline_step_value_is_still_the_pipeline_value(core: Ontology) -> None:
    rule = next(
        r for r in parse_mapping(MAPPING, core, "plant.yaml").entity("machines").properties if r.name == "description"
    )
    assert rule.compute({"code": "M1", "name": "Press", "value": 7500}) == "Press #M1"
    assert Expression.compile("value * 2").evaluate({"value": 21}) == 42
    assert Expression.compile("value * 2").evaluate({"value": 21}, 5) == 10


def test_templates_fill_in_one_pass_so_values_with_braces_stay_as_they_are() -> None:
    uid = Template.compile("crm:{region}:{code}")
    assert uid.render({"region": "{code}", "code": "X1"}) == "crm:{code}:X1"  # not crm:X1:X1
    assert uid.render({"region": "EU", "code": "A{{B}}"}) == "crm:EU:A{{B}}"
    assert Template.compile("lit:{{a}}:{a}").render({"a": "v"}) == "lit:{a}:v"
    assert Template.compile("hr:employee:{id}").render({"id": 42}) == "hr:employee:42"
    with pytest.raises(TransformError, match="field 'code'"):
        uid.render({"region": "EU", "code": ""})
