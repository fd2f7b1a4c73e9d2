"""Compiled selections are cached per document, role and policy (issue 25 item 4): a repeated request reuses its
plan, while a role change, another org unit or a reloaded policy never gets a plan (or a rendered query) made for
someone else; final shaping answers exactly what graphql-core's completion would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from governance.policy import Policy, load_policy
from tests.api.conftest import ApiHarness

SUPPLIES = "query Supplies { suppliers(first: 5) { nodes { uid supplies { edges { leadTimeDays node { uid } } } } } }"
PEOPLE = "query People { employees(first: 50, orderBy: [{field: name}]) { totalCount nodes { uid } } }"


def _lead_times(body: dict) -> list[object]:
    return [
        edge["leadTimeDays"]
        for supplier in body["data"]["suppliers"]["nodes"]
        for edge in supplier["supplies"]["edges"]
    ]


def _compiled(api: ApiHarness) -> object:
    return api.client.app.state.services.schema.compiled  # type: ignore[attr-defined]


@pytest.fixture
def swap_policy(api: ApiHarness) -> Iterator[object]:
    """Replace the running policy (as a reload would) and put the original back afterwards."""
    original = api.runtime.policy

    def swap(policy: Policy) -> None:
        api.runtime.__dict__["policy"] = policy

    try:
        yield swap
    finally:
        api.runtime.__dict__["policy"] = original


def test_a_repeated_document_reuses_its_compiled_plan(api: ApiHarness) -> None:
    compiled = _compiled(api)
    token = api.token("admin", sub="cache-hits")
    first = api.gql(SUPPLIES, token=token)
    hits = compiled.hits  # type: ignore[attr-defined]
    again = api.gql(SUPPLIES, token=token)
    assert again == first and _lead_times(first[1]) == [14]
    assert compiled.hits == hits + 1  # type: ignore[attr-defined]


def test_a_large_document_is_compiled_each_time_not_remembered(api: ApiHarness) -> None:
    from api.graphql.planning import CACHED_DOCUMENT_CHARS

    compiled = _compiled(api)
    token = api.token("admin", sub="cache-large")
    padded = SUPPLIES + " " * CACHED_DOCUMENT_CHARS  # whitespace costs no tokens: only its length is large
    first = api.gql(padded, token=token)
    entries, hits = len(compiled._entries), compiled.hits  # type: ignore[attr-defined]
    assert api.gql(padded, token=token) == first and _lead_times(first[1]) == [14]
    assert (len(compiled._entries), compiled.hits) == (entries, hits)  # type: ignore[attr-defined]


def test_a_role_change_does_not_serve_another_roles_plan(api: ApiHarness) -> None:
    # The same person, the same document: as admin the relationship property is shown, as viewer (Internal: null)
    # it is left out. The relationship property's mode is part of the compiled shape, so a plan cached for the
    # first role would show the value to the second.
    for _ in range(2):
        admin = api.gql(SUPPLIES, token=api.token("admin", sub="same-person"))
        viewer = api.gql(SUPPLIES, token=api.token("viewer", sub="same-person"))
        assert admin[0] == viewer[0] == 200
        assert _lead_times(admin[1]) == [14]
        assert _lead_times(viewer[1]) == [None]
        assert {"className": "supplies", "field": "leadTimeDays", "mode": "null", "count": 1} in viewer[1][
            "extensions"
        ]["masked"]
        assert admin[1]["extensions"]["masked"] == []


def test_a_reloaded_policy_does_not_serve_a_stale_plan(api: ApiHarness, swap_policy: object, tmp_path: Path) -> None:
    token = api.token("architect", sub="reload")
    assert _lead_times(api.gql(SUPPLIES, token=token)[1]) == [14]
    assert _lead_times(api.gql(SUPPLIES, token=token)[1]) == [14]  # compiled and cached for the architect
    default = Path(__file__).resolve().parents[2] / "governance" / "policies" / "default.yaml"
    text = default.read_text(encoding="utf-8")
    architect_fields = "fields: {PII: redact, Confidential: redact}"
    assert text.count(architect_fields) == 1
    stricter = tmp_path / "policy.yaml"
    # the same version string on purpose: a reload is noticed even when the file's version was not bumped
    stricter.write_text(
        text.replace(architect_fields, 'fields: {PII: redact, Confidential: redact, Internal: "null"}'),
        encoding="utf-8",
    )
    reloaded = load_policy(api.runtime.ontology, stricter, api.runtime.digest_key)
    assert reloaded.version == api.runtime.policy.version
    swap_policy(reloaded)  # type: ignore[operator]
    status, body = api.gql(SUPPLIES, token=token)
    assert status == 200 and _lead_times(body) == [None], body
    assert {"className": "supplies", "field": "leadTimeDays", "mode": "null", "count": 1} in body["extensions"][
        "masked"
    ]


def test_callers_in_other_org_units_never_share_a_compiled_read(api: ApiHarness) -> None:
    # hr reads people only within its org-unit subtree: the row rule is in the rendered query, so a query rendered
    # for one org unit and reused for another would return the wrong people.
    seen: dict[str, set[str]] = {}
    for _ in range(2):
        for unit in ("u-eng", "u-sales"):
            status, body = api.gql(PEOPLE, role="hr", org_unit=unit)
            assert status == 200 and "errors" not in body, body
            uids = {n["uid"] for n in body["data"]["employees"]["nodes"]}
            assert body["data"]["employees"]["totalCount"] == len(uids)
            assert seen.setdefault(unit, uids) == uids
    # employees i % 3 == 0 work in u-eng and i % 3 == 2 in u-eng-tools (under u-eng); i % 3 == 1 in u-sales
    assert seen["u-sales"] == {f"emp-{i:02d}" for i in range(24) if i % 3 == 1}
    assert seen["u-eng"] == {f"emp-{i:02d}" for i in range(24) if i % 3 != 1}


def test_variables_under_the_selection_compile_apart(api: ApiHarness) -> None:
    query = (
        "query Skills($n: Int) { employees(first: 2, orderBy: [{field: name}]) "
        "{ nodes { uid hasSkill(first: $n) { totalCount nodes { uid } } } } }"
    )
    for _ in range(2):
        one = api.data(query, {"n": 1})["employees"]["nodes"]
        none = api.data(query, {"n": 0})["employees"]["nodes"]
        assert [len(e["hasSkill"]["nodes"]) for e in one] == [1, 1]
        assert [len(e["hasSkill"]["nodes"]) for e in none] == [0, 0]
        assert [e["hasSkill"]["totalCount"] for e in none] == [1, 1]


def test_final_shaping_answers_typenames_aliases_and_scalars_as_graphql_core_would(api: ApiHarness) -> None:
    query = (
        "{ machines(first: 2, orderBy: [{field: name}]) { __typename t: totalCount "
        "edges { __typename cursor node { __typename kind: __typename uid cost: acquisitionCost name "
        "locatedAt { pageInfo { __typename hasNextPage endCursor } nodes { uid } } } } } "
        'twin(uid: "machine-1") { __typename uid ... on Machine { mtbfHours } } }'
    )
    data = api.data(query)
    machines = data["machines"]
    assert machines["__typename"] == "MachineConnection" and machines["t"] == 4
    first = machines["edges"][0]
    assert first["__typename"] == "MachineEdge"
    assert list(first["node"]) == ["__typename", "kind", "uid", "cost", "name", "locatedAt"]
    assert first["node"]["kind"] == "Machine" and first["node"]["cost"] == 10_000.0
    assert first["node"]["locatedAt"]["pageInfo"]["__typename"] == "PageInfo"
    assert first["node"]["locatedAt"]["nodes"] == [{"uid": "site-1"}]
    assert data["twin"] == {"__typename": "Machine", "uid": "machine-1", "mtbfHours": 501.0}


EQUIVALENCE_QUERIES = [
    "{ employees(first: 6, orderBy: [{field: name}]) { totalCount pageInfo { hasNextPage endCursor } edges { cursor "
    "node { __typename uid className labels name email phone salary hireDate jobTitle "
    "hasSkill { edges { level node { uid name } } } worksIn { nodes { uid name partOf { nodes { uid } } } } } } } }",
    '{ twin(uid: "emp-03") { __typename uid className ... on Employee { name email salary hireDate '
    "reportsTo { nodes { uid email } } } } }",
    "{ machines(first: 3) { nodes { uid name status acquisitionCost mtbfHours "
    "locatedAt { nodes { uid country } } } } }",
    "{ suppliers { nodes { uid name reliability supplies { totalCount edges { leadTimeDays node { uid } } } } } }",
]


@pytest.mark.parametrize("role", ["admin", "architect", "compliance", "hr", "data_steward", "viewer", "executive"])
def test_final_shaping_writes_the_bytes_graphql_core_completion_writes(
    api: ApiHarness, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.graphql import queries
    from api.graphql.shaping import NotFinal, Shaper

    token = api.token(role, sub=f"bytes-{role}", org_unit="u-eng" if role == "hr" else None)

    def answers() -> list[tuple[int, bytes]]:
        out = []
        for query in EQUIVALENCE_QUERIES:
            response = api.client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
            out.append((response.status_code, response.content))
        return out

    final = answers()

    class Completing(Shaper):
        """Refuses final shaping, so every field takes the fallback: shaped again and completed by graphql-core."""

        def node(self, row: Any, shape: Any) -> Any:
            if self.final:
                raise NotFinal("the reference answer")
            return super().node(row, shape)

        def connection(self, items: Any, total: Any, page: Any, shape: Any) -> Any:
            if self.final:
                raise NotFinal("the reference answer")
            return super().connection(items, total, page, shape)

    monkeypatch.setattr(queries, "Shaper", Completing)
    completed = answers()
    assert final == completed
    assert any(b'"errors"' not in body for _, body in final)
