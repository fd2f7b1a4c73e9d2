"""Compiled reads: results, pagination, per-role visibility, masking, and one round trip per root field."""

from __future__ import annotations

import pytest

from tests.api.conftest import EMPLOYEES, ApiHarness

THREE_LEVELS = """
query ThreeLevels($first: Int) {
  employees(first: $first, orderBy: [{field: name}]) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node {
      uid name email
      worksIn { nodes { name partOf { totalCount nodes { uid name } } } }
      hasSkill { edges { level node { name } } }
    } }
  }
}"""


def test_three_level_query_returns_the_graph_and_costs_one_round_trip(api: ApiHarness) -> None:
    before = api.store.backend.queries
    data = api.data(THREE_LEVELS, {"first": 20})
    assert api.store.backend.queries - before == 1
    page = data["employees"]
    assert page["totalCount"] == EMPLOYEES and page["pageInfo"]["hasNextPage"] is True
    assert len(page["edges"]) == 20
    first = page["edges"][0]["node"]
    assert first["uid"] == "emp-00" and first["email"] == "person0@example.test"
    assert first["worksIn"]["nodes"][0]["name"] == "Unit eng"
    assert first["worksIn"]["nodes"][0]["partOf"]["nodes"] == [{"uid": "u-root", "name": "Unit root"}]
    assert first["hasSkill"]["edges"] == [{"level": 1, "node": {"name": "Welding"}}]


def test_several_root_fields_cost_one_round_trip_each(api: ApiHarness) -> None:
    query = """{ a: employees(first: 20) { nodes { name worksIn { nodes { partOf { nodes { name } } } } } }
                 b: orgUnits { nodes { name hasMember(first: 5) { totalCount nodes { name } } } }
                 c: twin(uid: "emp-01") {
                   uid ... on Employee { reportsTo { nodes { reportsTo { nodes { uid } } } } } } }"""
    before = api.store.backend.queries
    data = api.data(query)
    assert api.store.backend.queries - before == 3
    assert len(data["a"]["nodes"]) == 20
    units = {u["name"]: u["hasMember"]["totalCount"] for u in data["b"]["nodes"]}
    assert units["Unit eng"] == 8 and units["Unit root"] == 0


def test_cursor_pagination_walks_every_row_once(api: ApiHarness) -> None:
    seen, after = [], None
    while True:
        data = api.data(
            "query($after: String) { employees(first: 7, after: $after) { pageInfo { hasNextPage endCursor }"
            " nodes { uid } } }",
            {"after": after},
        )["employees"]
        seen += [n["uid"] for n in data["nodes"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == EMPLOYEES


def test_filters_sorts_and_relationship_filters(api: ApiHarness) -> None:
    query = """{ employees(where: {salary: {gte: 60000}, worksInSome: {name: {eq: "Unit eng"}}},
                          orderBy: [{field: salary, direction: DESC}]) { totalCount nodes { uid salary } } }"""
    page = api.data(query)["employees"]
    expected = sorted(
        (f"emp-{i:02d}" for i in range(EMPLOYEES) if 50_000 + 1_000 * i >= 60_000 and i % 3 == 0),
        key=lambda u: -int(u[4:]),
    )
    assert [n["uid"] for n in page["nodes"]] == expected and page["totalCount"] == len(expected)
    nobody = api.data("{ employees(where: {reportsToExists: false}) { nodes { uid } } }")["employees"]["nodes"]
    assert nobody == [{"uid": "emp-00"}]
    either = api.data(
        '{ employees(where: {OR: [{uid: {eq: "emp-01"}}, {name: {contains: "son 02"}}]}) { nodes { uid } } }'
    )["employees"]["nodes"]
    assert [n["uid"] for n in either] == ["emp-01", "emp-02"]


def test_interfaces_and_fragments_resolve_concrete_types(api: ApiHarness) -> None:
    data = api.data("""{ assets(orderBy: [{field: name}]) { nodes { __typename uid name
                          ... on Machine { mtbfHours locatedAt { nodes { ... on Site { country } } } } } }
                        entities(where: {uid: {in: ["emp-01", "site-1"]}}) {
                          nodes { __typename className labels } } }""")
    machines = data["assets"]["nodes"]
    assert {m["__typename"] for m in machines} == {"Machine"} and machines[0]["mtbfHours"] == 500.0
    assert machines[0]["locatedAt"]["nodes"] == [{"country": "DE"}]
    types = {n["className"]: (n["__typename"], n["labels"]) for n in data["entities"]["nodes"]}
    assert types["Employee"] == ("Employee", ["Employee", "Person", "Entity"])
    assert types["Site"][0] == "Site"


def test_search_impact_path_aggregate(api: ApiHarness) -> None:
    hits = api.data('{ search(text: "press", classes: [Machine]) { score twin { uid } } }')["search"]
    assert sorted(h["twin"]["uid"] for h in hits) == [f"machine-{k}" for k in range(4)]
    impact = api.data('{ impact(uid: "machine-0") { depth via twin { uid } } }')["impact"]
    assert [(h["twin"]["uid"], h["depth"]) for h in impact] == [("proc-1", 1), ("prod-1", 2)]
    path = api.data('{ path(source: "emp-05", target: "u-root") { length types nodes { uid } } }')["path"]
    assert path["types"] == ["worksIn", "partOf", "partOf"] and path["nodes"][-1]["uid"] == "u-root"
    rows = api.data(
        '{ aggregate(className: Employee, groupBy: ["jobTitle"], metrics: [{fn: COUNT}, '
        '{fn: MAX, field: "salary"}]) { group metrics { name value } } }'
    )["aggregate"]
    assert {r["group"]["jobTitle"]: r["metrics"][0]["value"] for r in rows} == {"Engineer": 12.0, "Sales": 12.0}
    assert max(r["metrics"][1]["value"] for r in rows) == 50_000 + 1_000 * (EMPLOYEES - 1)


@pytest.mark.parametrize(
    "role,email,salary",
    [
        ("admin", "person3@example.test", 53000.0),
        ("architect", "***", None),
        ("executive", "***", 53000.0),
        ("compliance", "sha256:", 53000.0),
        ("data_steward", "p***", None),
    ],
)
def test_each_role_sees_fields_masked_as_its_policy_says(
    api: ApiHarness, role: str, email: str, salary: float | None
) -> None:
    status, body = api.gql('{ twin(uid: "emp-03") { ... on Employee { email salary } } }', role=role)
    assert status == 200 and "errors" not in body
    twin = body["data"]["twin"]
    assert twin["email"].startswith(email) and twin["salary"] == salary
    masked = {(m["field"], m["mode"]) for m in body["extensions"]["masked"]}
    assert ("email" in {f for f, _ in masked}) == (role != "admin")


def test_viewer_sees_no_people_and_hr_only_its_subtree(api: ApiHarness) -> None:
    status, body = api.gql("{ employees { totalCount } }", role="viewer")
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    viewer = api.data("{ orgUnits { nodes { hasMember { totalCount } } } }", role="viewer")
    assert all(u["hasMember"]["totalCount"] == 0 for u in viewer["orgUnits"]["nodes"])
    status, body = api.gql("{ machines { totalCount } }", role="hr", org_unit="u-eng")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    hr = api.data(
        "{ employees { totalCount nodes { uid email worksIn { nodes { uid } } } } }", role="hr", org_unit="u-eng"
    )["employees"]
    units = {n["worksIn"]["nodes"][0]["uid"] for n in hr["nodes"]}
    assert units == {"u-eng", "u-eng-tools"} and hr["totalCount"] == 16
    assert all("@" in n["email"] for n in hr["nodes"])
    assert api.data('{ twin(uid: "emp-01") { uid } }', role="hr", org_unit="u-eng")["twin"] is None
    assert api.data('{ twin(uid: "emp-01") { uid } }', role="hr")["twin"] is None  # no org unit in the token


def test_variables_inside_the_selection_set_are_honoured(api: ApiHarness) -> None:
    query = """
    query Nested($n: Int, $withParent: Boolean!) {
      orgUnits(first: 10, orderBy: [{field: uid}]) {
        nodes { uid hasMember(first: $n) { totalCount nodes { uid } } partOf @include(if: $withParent) { totalCount } }
      }
    }"""
    one = api.data(query, {"n": 1, "withParent": False})["orgUnits"]["nodes"]
    crowded = [u for u in one if u["hasMember"]["totalCount"] > 1]
    assert crowded, "the sample needs a unit with several members"
    assert all(len(u["hasMember"]["nodes"]) == 1 for u in crowded)
    assert all("partOf" not in u for u in one)
    more = api.data(query, {"n": 50, "withParent": True})["orgUnits"]["nodes"]
    assert all(len(u["hasMember"]["nodes"]) == u["hasMember"]["totalCount"] for u in more)
    assert all("partOf" in u for u in more)
