"""Nested connections fetched for all rows at once answer exactly as one subquery per row does.

The root list fields fetch their nested connections with one OPTIONAL MATCH per relationship for the whole page
(graph/engine.py `_Query.batched`); the other root fields, and connections filtered by relationship existence, use one
`CALL` subquery per row (`_Query.call`). This test runs the same requests both ways and compares the whole responses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.graphql.selection import encode_cursor
from graph.engine import _Query
from graph.plan import Projection
from tests.api.conftest import ApiHarness

QUERIES = [
    # three levels, totals at two depths, edge properties, pageInfo
    """{ employees(first: 9, orderBy: [{field: name, direction: DESC}]) { totalCount pageInfo { hasNextPage }
         nodes { uid name email salary
           worksIn(first: 3) { totalCount nodes { name partOf(first: 3) { totalCount nodes { uid name
             partOf(first: 3) { nodes { uid } } } } } }
           hasSkill(first: 5) { edges { level cursor node { name } } } } } }""",
    # nested filters, sorts, pages and cursors; several connections side by side; an inverse direction
    """{ employees(first: 30, where: {jobTitle: {eq: "Engineer"}}) { nodes { uid
           manages(where: {salary: {gte: 52000}}, orderBy: [{field: salary, direction: DESC}],
                   first: 2, after: "$AFTER") {
             totalCount pageInfo { hasNextPage hasPreviousPage }
             nodes { uid salary reportsTo(first: 2) { nodes { uid } } } }
           reportsTo(first: 2) {
             nodes { uid manages(first: 3, orderBy: [{field: name}]) { totalCount nodes { name } } } }
           operates(first: 2) { nodes { name locatedAt(first: 2) { nodes { name } } } } } } }""".replace(
        "$AFTER", encode_cursor(0)
    ),
    # empty connections at every depth, and a connection under a connection that is itself empty
    """{ machines(first: 10) { nodes { uid operatedBy(first: 5, where: {name: {contains: "nobody"}}) { totalCount
           nodes { uid worksIn(first: 2) { nodes { uid } } } } requiredBy(first: 3) { nodes { name consumes(first: 3) {
           nodes { name suppliedBy(first: 3) { edges { leadTimeDays node { name } } } } } } } } } }""",
    # a relationship-existence filter inside a connection (that connection keeps its per-row subquery)
    """{ orgUnits(first: 10, orderBy: [{field: name}]) { nodes { uid hasMember(first: 30, where: {operatesExists: true})
           { totalCount nodes { uid hasSkill(first: 3) { nodes { name } } } }
           hasPart(first: 5) { nodes { uid ... on OrgUnit { hasMember(first: 2) { nodes { uid } } } } } } } }""",
]

ROLES = [("admin", None), ("architect", None), ("hr", "u-eng"), ("viewer", None), ("compliance", None)]


@pytest.fixture
def per_row(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the root list fields use one subquery per row and connection, as the other root fields do."""

    def subqueries(self: _Query, proj: Projection, keys: list[str]) -> tuple[list[str], list[str]]:
        added = [
            key
            for conn in proj.connections
            for key in ([self.keys_of(conn)[1]] if conn.total else []) + [self.keys_of(conn)[0]]
        ]
        return self.calls(proj), [*keys, *added]

    monkeypatch.setattr(_Query, "batched", subqueries)
    yield


@pytest.fixture
def batched_answers(api: ApiHarness) -> dict[tuple[int, str], dict]:  # type: ignore[type-arg]
    """Every query's response for every role, fetched the batched way."""
    return {
        (i, role): api.gql(query, role=role, org_unit=org)[1] for i, query in enumerate(QUERIES) for role, org in ROLES
    }


def test_batched_connections_answer_as_subqueries_per_row(api: ApiHarness, batched_answers, per_row) -> None:  # type: ignore[no-untyped-def]
    compared = 0
    for (i, role), batched in batched_answers.items():
        org = dict(ROLES)[role]
        _, reference = api.gql(QUERIES[i], role=role, org_unit=org)
        assert batched == reference, f"query {i} as {role}"
        compared += "errors" not in reference
        if role == "admin":
            assert "errors" not in reference, reference["errors"]
    assert compared >= len(QUERIES) * 3  # most role/query pairs are answered, not refused


def test_batched_queries_return_data(batched_answers) -> None:  # type: ignore[no-untyped-def]
    first = batched_answers[(0, "admin")]["data"]["employees"]
    assert first["totalCount"] == 24 and len(first["nodes"]) == 9
    assert [n["name"] for n in first["nodes"]] == sorted((n["name"] for n in first["nodes"]), reverse=True)
    assert any(n["worksIn"]["nodes"][0]["partOf"]["totalCount"] == 1 for n in first["nodes"])
    second = batched_answers[(1, "admin")]["data"]["employees"]["nodes"]
    managed = [n["manages"] for n in second if n["manages"]["totalCount"] > 2]
    assert managed and all(m["pageInfo"]["hasPreviousPage"] for m in managed)
    assert all(len(m["nodes"]) <= 2 for m in managed)
