"""Issue 22 items 5 and 12 at the API: scenario jobs are readable by their owner (and admins) only, token lifetimes
have a maximum, request bodies a size limit, several operations need an operationName, and a YAML alias bomb in a
scenario spec is refused without stalling the server."""

from __future__ import annotations

import json
from datetime import timedelta

from tests.api.conftest import ApiHarness
from tests.ontology.test_safe_yaml import alias_bomb

RUN = "mutation Run($spec: String!) { runScenario(spec: $spec, replications: 2) { id status } }"
FOLLOW = "query Follow($id: ID!) { scenarioRun(id: $id) { id status } }"
SPEC = """
name: job-owner
horizon_days: 5
replications: 2
seed: 3
kpis: [throughput]
scenarios:
  - name: outage
    interventions:
      - {kind: supplier_outage, target: {uids: [sup-1]}, start_day: 1, duration_days: 2}
"""


def _gql(api: ApiHarness, query: str, variables: dict[str, object], token: str) -> tuple[int, dict[str, object]]:
    answer = api.client.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"}
    )
    return answer.status_code, answer.json()


def test_a_scenario_job_is_readable_by_its_owner_and_admins_only(api: ApiHarness) -> None:
    owner = api.issuer.issue_token("executive", sub="exec-owner")
    other = api.issuer.issue_token("executive", sub="exec-other")
    status, body = _gql(api, RUN, {"spec": SPEC}, owner)
    assert status == 200 and "errors" not in body, body
    job_id = body["data"]["runScenario"]["id"]  # type: ignore[index]
    status, body = _gql(api, FOLLOW, {"id": job_id}, owner)
    assert "errors" not in body and body["data"]["scenarioRun"]["id"] == job_id  # type: ignore[index]
    status, body = _gql(api, FOLLOW, {"id": job_id}, api.token("admin"))
    assert "errors" not in body, body
    status, body = _gql(api, FOLLOW, {"id": job_id}, other)
    assert body["data"] is None or body["data"]["scenarioRun"] is None  # type: ignore[index]
    assert "no scenario run" in json.dumps(body["errors"])  # the same answer as for an id that does not exist
    rest_other = api.client.get(f"/operations/jobs/{job_id}", headers={"Authorization": f"Bearer {other}"})
    assert rest_other.status_code == 404
    rest_owner = api.client.get(f"/operations/jobs/{job_id}", headers={"Authorization": f"Bearer {owner}"})
    assert rest_owner.status_code == 200


def test_tokens_living_longer_than_the_maximum_are_refused(api: ApiHarness) -> None:
    forever = api.issuer.issue_token("viewer", sub="long-lived", ttl=timedelta(days=3650))
    status, body = _gql(api, "{ __typename }", {}, forever)
    assert status == 401
    assert "lifetime" in json.dumps(body)
    usual = api.issuer.issue_token("viewer", sub="usual", ttl=timedelta(hours=8))
    assert _gql(api, "{ __typename }", {}, usual)[0] == 200


def test_request_bodies_have_a_size_limit(api: ApiHarness) -> None:
    token = api.token("viewer")
    big = json.dumps({"query": "{ __typename }", "variables": {"pad": "x" * 2_000_000}})
    answer = api.client.post(
        "/graphql", content=big, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert "1048576" in answer.text
    streamed = api.client.post(
        "/graphql",
        content=(chunk for chunk in [big.encode()[:600_000], big.encode()[600_000:]]),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413


def test_several_operations_without_an_operation_name_are_refused(api: ApiHarness) -> None:
    token = api.token("viewer")
    start = api.audit_records()[-1].seq
    status, body = _gql(api, "query A { __typename } mutation B { __typename }", {}, token)
    assert status == 400
    assert "operationName" in json.dumps(body)
    records = [r for r in api.audit_records() if r.seq > start and r.subject == "test-viewer"]
    assert [r.operation.split(":")[0] for r in records] == ["graphql.invalid"]
    assert [r.decision.value for r in records] == ["deny"]


def test_a_scenario_spec_alias_bomb_is_refused(api: ApiHarness) -> None:
    status, body = _gql(api, RUN, {"spec": alias_bomb()}, api.token("executive"))
    assert "alias" in json.dumps(body["errors"])  # type: ignore[index]
    assert api.client.get("/health").status_code == 200
