"""The leak-path matrix: a field a role may not read can be neither returned unmasked, filtered, sorted, grouped,
aggregated nor found through search — at the root, in nested connections and in relationship filters."""

from __future__ import annotations

import pytest

from tests.api.conftest import ApiHarness

# (role, class, list field, hidden field, a value of it, GraphQL literal of the value)
HIDDEN = [
    ("architect", "Employee", "employees", "salary", 53000.0, "53000"),
    ("architect", "Employee", "employees", "email", "person3@example.test", '"person3@example.test"'),
    ("executive", "Employee", "employees", "phone", "+49 30 1234 0003", '"+49 30 1234 0003"'),
    ("compliance", "Employee", "employees", "birthDate", None, '"1990-01-01"'),
    ("data_steward", "Machine", "machines", "acquisitionCost", 10000.0, "10000"),
    ("viewer", "Machine", "machines", "mtbfHours", 500.0, "500"),
]


def _code(body: dict) -> str | None:
    errors = body.get("errors") or []
    return errors[0].get("extensions", {}).get("code") if errors else None


@pytest.mark.parametrize("role,cls,field,hidden,value,literal", HIDDEN)
def test_hidden_field_is_masked_when_returned(
    api: ApiHarness, role: str, cls: str, field: str, hidden: str, value: object, literal: str
) -> None:
    status, body = api.gql(f"{{ {field}(first: 1000) {{ nodes {{ uid {hidden} }} }} }}", role=role)
    assert status == 200 and "errors" not in body, body
    values = [n[hidden] for n in body["data"][field]["nodes"]]
    assert values and (value is None or value not in values)
    if value is not None:
        assert {m["field"] for m in body["extensions"]["masked"]} >= {hidden}


@pytest.mark.parametrize("role,cls,field,hidden,value,literal", HIDDEN)
@pytest.mark.parametrize(
    "template",
    [
        "{{ {field}(where: {{{hidden}: {{eq: {literal}}}}}) {{ totalCount }} }}",
        "{{ {field}(where: {{NOT: {{OR: [{{{hidden}: {{gt: {literal}}}}}]}}}}) {{ totalCount }} }}",
        "{{ {field}(orderBy: [{{field: {hidden}}}]) {{ totalCount }} }}",
        '{{ aggregate(className: {cls}, groupBy: ["{hidden}"]) {{ group }} }}',
        '{{ aggregate(className: {cls}, metrics: [{{fn: MAX, field: "{hidden}"}}]) {{ group }} }}',
        "{{ aggregate(className: {cls}, where: {{{hidden}: {{eq: {literal}}}}}) {{ group }} }}",
    ],
)
def test_hidden_field_cannot_be_filtered_sorted_grouped_or_aggregated(
    api: ApiHarness, role: str, cls: str, field: str, hidden: str, value: object, literal: str, template: str
) -> None:
    query = template.format(field=field, hidden=hidden, literal=literal, cls=cls)
    status, body = api.gql(query, role=role)
    assert status in (200, 400), body
    assert _code(body) in ("FIELD_NOT_READABLE", "FORBIDDEN"), body
    assert body.get("data") in (None, {}) or all(v is None for v in body["data"].values())


def test_hidden_fields_of_related_twins_cannot_be_filtered_through_relationships(api: ApiHarness) -> None:
    nested = '{ orgUnits { nodes { hasMember(where: {phone: {startsWith: "+49"}}) { totalCount } } } }'
    assert _code(api.gql(nested, role="architect")[1]) == "FIELD_NOT_READABLE"
    through = '{ orgUnits(where: {hasMemberSome: {email: {contains: "person1"}}}) { totalCount } }'
    assert _code(api.gql(through, role="architect")[1]) == "FIELD_NOT_READABLE"
    sort = "{ skills { nodes { skillOf(orderBy: [{field: email}]) { totalCount } } } }"
    assert _code(api.gql(sort, role="admin")[1]) is None
    assert _code(api.gql(sort, role="architect")[1]) == "FIELD_NOT_READABLE"


def test_subclass_fields_are_hidden_through_the_superclass(api: ApiHarness) -> None:
    status, body = api.gql('{ aggregate(className: Person, where: {email: {eq: "x"}}) { group } }', role="architect")
    assert _code(body) == "FIELD_NOT_READABLE"


def test_relationship_filters_and_counts_do_not_reveal_twins_outside_the_scope(api: ApiHarness) -> None:
    viewer = api.data(
        "{ orgUnits(where: {hasMemberExists: true}) { totalCount } "
        "machines(where: {operatedByExists: true}) { totalCount } }",
        role="viewer",
    )
    assert viewer["orgUnits"]["totalCount"] == 0 and viewer["machines"]["totalCount"] == 0
    admin = api.data("{ orgUnits(where: {hasMemberExists: true}) { totalCount } }")
    assert admin["orgUnits"]["totalCount"] == 3


def test_search_does_not_find_twins_through_fields_or_classes_the_caller_may_not_see(api: ApiHarness) -> None:
    assert api.data('{ search(text: "person") { twin { uid } } }', role="viewer")["search"] == []
    hr = api.data('{ search(text: "person", first: 50) { twin { uid } } }', role="hr", org_unit="u-sales")["search"]
    assert hr and all(int(h["twin"]["uid"][4:]) % 3 == 1 for h in hr)
    assert api.data('{ search(text: "person", first: 50) { twin { uid } } }', role="admin")["search"].__len__() == 24
