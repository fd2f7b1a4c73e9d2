"""The analyst may aggregate people privately but must never learn a person's row, count or value through any other
GraphQL path (written by a reviewer attacking the merged branch; each test asserts the secure behaviour)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from tests.api.conftest import ApiHarness, _settings, sample_twins


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    data_dir = tmp_path_factory.mktemp("analyst-paths")
    runtime = Runtime(settings=_settings(data_dir))
    try:
        twins, links = sample_twins()
        runtime.store.upsert_twins(twins)
        runtime.store.upsert_links(links)
        time.sleep(0.02)
        with TestClient(create_app(runtime)) as client:
            yield ApiHarness(client, runtime, LocalIssuer(data_dir))
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


def _errors(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code", "?") + ": " + e["message"] for e in body.get("errors", [])]


def test_relationship_filters_to_people_reveal_nothing(api: ApiHarness) -> None:
    """hasMemberSome, hasMemberExists, skillOfSome, operatedBySome: person-conditioned filters on readable classes."""
    queries = {
        "orgUnits": '{ orgUnits(where: {hasMemberSome: {uid: {eq: "emp-01"}}}) { totalCount } }',
        "orgUnitsExists": "{ orgUnits(where: {hasMemberExists: true}) { totalCount } }",
        "skills": '{ skills(where: {skillOfSome: {uid: {eq: "emp-01"}}}) { totalCount } }',
        "machines": '{ machines(where: {operatedBySome: {uid: {eq: "emp-02"}}}) { totalCount } }',
    }
    for name, query in queries.items():
        admin = api.data(query)
        assert next(iter(admin.values()))["totalCount"] > 0, (name, admin)  # the control: the filter matches
        status, body = api.gql(query, role="analyst")
        got = (body.get("data") or {}).get(next(iter(admin)))
        assert got is None or got["totalCount"] == 0, (name, body)


def test_exact_aggregates_of_readable_classes_filtered_by_people(api: ApiHarness) -> None:
    """An exact (free, noiseless) aggregate over OrgUnit/Skill conditioned on people counts people exactly."""
    for query in (
        '{ aggregate(className: Skill, where: {skillOfSome: {uid: {eq: "emp-01"}}}) '
        "{ metrics { value privacy { epsilon } } } }",
        '{ aggregate(className: OrgUnit, where: {hasMemberSome: {uid: {eq: "emp-01"}}}) '
        "{ metrics { value privacy { epsilon } } } }",
    ):
        status, body = api.gql(query, role="analyst")
        rows = (body.get("data") or {}).get("aggregate") or []
        assert not rows or rows[0]["metrics"][0]["value"] in (0, 0.0) or rows[0]["metrics"][0]["privacy"], body


def test_private_aggregate_filters_on_hidden_fields_at_depth_are_refused(api: ApiHarness) -> None:
    for where in (
        '{reportsToSome: {email: {eq: "person0@example.test"}}}',
        '{worksInSome: {hasMemberSome: {email: {eq: "person1@example.test"}}}}',
        '{OR: [{email: {eq: "person1@example.test"}}]}',
        "{NOT: {salary: {gt: 60000}}}",
    ):
        query = f"{{ aggregate(className: Employee, where: {where}) {{ metrics {{ value }} }} }}"
        status, body = api.gql(query, role="analyst")
        assert body.get("errors"), (where, body)
        assert body["errors"][0]["extensions"]["code"] in ("FIELD_NOT_READABLE", "BAD_USER_INPUT"), (where, body)


def test_search_impact_path_and_twin_show_no_person(api: ApiHarness) -> None:
    query = """{
      search(text: "Person", first: 50) { twin { uid className } }
      impact(uid: "machine-0", maxDepth: 4) { twin { uid className } }
      a: path(source: "u-eng", target: "skill-1", directed: false, maxDepth: 6) { nodes { uid className } }
      b: path(source: "machine-0", target: "machine-2", directed: false, maxDepth: 6) { nodes { uid className } }
      twin(uid: "emp-01", includeRetired: true) { uid }
      entities(first: 200) { totalCount nodes { uid className } }
      twinsEnt: aggregate(className: Entity, groupBy: ["className"]) { group metrics { value privacy { epsilon } } }
    }"""
    status, body = api.gql(query, role="analyst")
    data = body.get("data") or {}
    flat = repr(data)
    assert "emp-" not in flat, (flat[:3000], _errors(body))
    for row in data.get("twinsEnt") or []:
        assert row["group"].get("className") not in ("Employee", "Person"), row


def test_nested_connections_and_counts_of_people_are_empty(api: ApiHarness) -> None:
    query = """{
      machines { nodes { uid operatedBy { totalCount nodes { uid } } } }
      skills { nodes { uid skillOf { totalCount } } }
      orgUnits { nodes { uid hasMember { totalCount } } }
    }"""
    status, body = api.gql(query, role="analyst")
    flat = repr(body.get("data"))
    assert "emp-" not in flat, flat
    for m in (body.get("data") or {}).get("machines", {}).get("nodes", []):
        assert m["operatedBy"]["totalCount"] == 0, m
    for s in (body.get("data") or {}).get("skills", {}).get("nodes", []):
        assert s["skillOf"]["totalCount"] == 0, s


def test_as_of_private_aggregate_is_charged_or_refused(api: ApiHarness) -> None:
    ledger = api.runtime.privacy_budget
    rule = api.runtime.policy.roles["analyst"].privacy
    before = ledger.state(rule).spent
    at = dt.datetime.now(dt.UTC).isoformat()
    status, body = api.gql(
        "query($at: DateTime) { aggregate(className: Employee, asOf: $at) { metrics { value privacy { epsilon } } } }",
        {"at": at},
        role="analyst",
    )
    if "errors" not in body:
        metric = body["data"]["aggregate"][0]["metrics"][0]
        assert metric["privacy"] is not None, body
        assert ledger.state(rule).spent > before
    for bad in ("-1.0", "0", "1e-320", "1e308"):
        spent = ledger.state(rule).spent
        status, body = api.gql(
            f"{{ aggregate(className: Employee, epsilon: {bad}) {{ metrics {{ value }} }} }}", role="analyst"
        )
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (bad, body)
        assert ledger.state(rule).spent == spent  # refused before anything was read or charged


def test_as_of_reads_apply_the_same_row_hiding_for_the_analyst(api: ApiHarness) -> None:
    at = dt.datetime.now(dt.UTC).isoformat()
    for query in (
        "query($at: DateTime) { employees(asOf: $at) { totalCount } }",
        'query($at: DateTime) { twin(uid: "emp-01", asOf: $at) { uid } }',
        "query($at: DateTime) { orgUnits(asOf: $at, where: {hasMemberExists: true}) { totalCount } }",
        'query($at: DateTime) { search(text: "Person", asOf: $at) { twin { uid } } }',
    ):
        status, body = api.gql(query, {"at": at}, role="analyst")
        data = body.get("data") or {}
        assert "emp-" not in repr(data), (query, body)
        ou = data.get("orgUnits")
        assert not ou or ou["totalCount"] == 0, (query, body)


def test_hidden_fields_cannot_order_or_bound_rows(api: ApiHarness) -> None:
    """architect: salary and email are redacted; ordering by them or MIN/MAX over them would reveal them."""
    for query in (
        "{ employees(orderBy: [{salary: DESC}], first: 3) { nodes { uid } } }",
        "{ employees(orderBy: [{email: ASC}], first: 3) { nodes { uid } } }",
        '{ aggregate(className: Employee, metrics: [{fn: MAX, field: "salary"}]) { metrics { value } } }',
        '{ aggregate(className: Employee, metrics: [{fn: MIN, field: "email"}]) { metrics { value } } }',
        "{ employees(where: {salary: {gt: 60000}}) { totalCount } }",
        '{ machines(where: {operatedBySome: {email: {eq: "person0@example.test"}}}) { totalCount } }',
    ):
        status, body = api.gql(query, role="architect")
        assert body.get("errors"), (query, body)


def test_tiny_positive_epsilon_is_a_clear_error_and_free(api: ApiHarness) -> None:
    ledger = api.runtime.privacy_budget
    rule = api.runtime.policy.roles["analyst"].privacy
    spent = ledger.state(rule).spent
    status, body = api.gql("{ aggregate(className: Employee, epsilon: 1e-320) { metrics { value } } }", role="analyst")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert ledger.state(rule).spent == spent


def test_suppressed_group_count_does_not_reveal_one_person(api: ApiHarness) -> None:
    """With `where` narrowed to one person, nothing in the answer may tell whether that person matches a predicate."""
    seen = {}
    for uid, cond in (("emp-01", "2013-01-01"), ("emp-03", "2013-01-01"), ("emp-99", "2013-01-01")):
        query = (
            f'{{ aggregate(className: Employee, groupBy: ["jobTitle"], epsilon: 0.01, '
            f'where: {{uid: {{eq: "{uid}"}}, hireDate: {{lt: "{cond}"}}}}) {{ group }} }}'
        )
        status, body = api.gql(query, role="analyst")
        assert "errors" not in body, body
        seen[uid] = (body["data"]["aggregate"], body["extensions"]["privacy"])
    # emp-01 hired 2011, emp-03 hired 2013, emp-99 does not exist: the answers must not tell them apart
    assert all(rows == [] for rows, _ in seen.values())
    assert all("suppressedGroups" not in note[0] for _, note in seen.values())


def test_ungrouped_private_answer_has_the_same_shape_whether_anyone_matches(api: ApiHarness) -> None:
    shapes = {}
    for uid in ("emp-01", "emp-99"):
        query = (
            f'{{ aggregate(className: Employee, epsilon: 0.01, where: {{uid: {{eq: "{uid}"}}}}, '
            'metrics: [{fn: AVG, field: "salary"}]) { group metrics { value privacy { accuracy95 } } } }'
        )
        status, body = api.gql(query, role="analyst")
        assert "errors" not in body, body
        rows = body["data"]["aggregate"]
        shapes[uid] = (len(rows), [m["privacy"]["accuracy95"] is None for r in rows for m in r["metrics"]])
    assert shapes["emp-01"][0] == shapes["emp-99"][0], shapes


def test_grouping_by_a_unique_field_does_not_release_the_exact_headcount(api: ApiHarness) -> None:
    """groupBy a unique field (employeeId): every group holds one twin, so all are held back — and how many is not
    said (it would be the exact headcount of the filter)."""
    query = (
        '{ aggregate(className: Employee, groupBy: ["employeeId"], epsilon: 0.001, '
        'where: {hireDate: {lt: "2015-01-01"}}) { group } }'
    )
    status, body = api.gql(query, role="analyst")
    assert "errors" not in body, body
    assert body["data"]["aggregate"] == []  # one twin a group: none passes the threshold
    assert set(body["extensions"]["privacy"][0]) == {"className", "role", "epsilon", "remaining", "period"}
