"""GraphQL aggregates with differential privacy: a role with a budget gets noisy counts, sums and means that say so,
spends its budget (audited) until it is refused; a role without one gets exact answers or none, as the policy says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources

import pytest
import yaml
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings
from governance.tokens import LocalIssuer
from graph.embedded import stop_embedded
from tests.api.conftest import EMPLOYEES, ApiHarness, sample_twins

BUDGET = 4.0


@pytest.fixture(scope="module")
def private_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """The app over the sample graph with a policy that gives budgets: the executive 4 epsilon a day (PII classes),
    the architect (who may not read salaries) a budget with clamp bounds on salary; the data steward no aggregates
    over sensitive classes at all."""
    data_dir = tmp_path_factory.mktemp("private-api")
    spec = yaml.safe_load(resources.files("governance").joinpath("policies/default.yaml").read_text())
    spec["roles"]["executive"]["privacy"] = {
        "epsilon_per_period": BUDGET,
        "epsilon_per_query": 1.0,
        "classifications": ["PII"],
    }
    spec["roles"]["architect"]["privacy"] = {"epsilon_per_period": 100.0, "bounds": {"salary": [0, 100_000]}}
    spec["roles"]["data_steward"]["sensitive_aggregates"] = "none"
    policy_path = data_dir / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(spec))
    settings = Settings(
        data_dir=data_dir,
        graph_url=f"falkordb+embedded://{data_dir / 'graph'}",
        database_url=f"sqlite:///{data_dir / 'twin.db'}",
        policy_path=policy_path,
    )
    runtime = Runtime(settings=settings)
    try:
        twins, links = sample_twins()
        runtime.store.upsert_twins(twins)
        runtime.store.upsert_links(links)
        with TestClient(create_app(runtime)) as client:
            yield ApiHarness(client, runtime, LocalIssuer(data_dir))
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")


COUNT = "{ aggregate(className: Employee) { group metrics { name value privacy { epsilon accuracy95 mechanism } } } }"


def test_admin_gets_exact_counts_without_a_privacy_note(private_api: ApiHarness) -> None:
    rows = private_api.data(COUNT)["aggregate"]
    assert rows[0]["metrics"][0] == {"name": "count", "value": float(EMPLOYEES), "privacy": None}


def test_a_role_without_aggregates_over_people_is_refused(private_api: ApiHarness) -> None:
    status, body = private_api.gql(COUNT, role="data_steward")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "may aggregate Employee" in body["errors"][0]["message"]
    status, body = private_api.gql("{ aggregate(className: Machine) { group } }", role="data_steward")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # acquisitionCost is Confidential
    rows = private_api.data(
        "{ aggregate(className: Skill) { metrics { value privacy { epsilon } } } }", role="data_steward"
    )
    assert rows["aggregate"][0]["metrics"][0] == {"value": 3.0, "privacy": None}  # not a sensitive class


def test_the_executive_gets_noisy_counts_spends_its_budget_and_is_then_refused(private_api: ApiHarness) -> None:
    values = []
    for _ in range(int(BUDGET)):
        status, body = private_api.gql(COUNT, role="executive")
        assert status == 200 and "errors" not in body, body
        metric = body["data"]["aggregate"][0]["metrics"][0]
        assert metric["privacy"]["epsilon"] == 1.0 and metric["privacy"]["mechanism"] == "discrete_laplace"
        assert 2.9 < metric["privacy"]["accuracy95"] < 3.5
        values.append(metric["value"])
        note = body["extensions"]["privacy"][0]
        assert note["role"] == "executive" and note["className"] == "Employee"
    assert note["remaining"] == 0.0
    assert all(abs(v - EMPLOYEES) <= 15 for v in values)  # noise of scale 1: far inside 15 (p < 1e-6 each)
    status, body = private_api.gql(COUNT, role="executive")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "privacy budget of role executive for this day is spent" in body["errors"][0]["message"]
    assert body["data"] is None or body["data"]["aggregate"] is None
    # non-personal classes stay exact and free for the executive
    machines = private_api.data(
        "{ aggregate(className: Machine) { metrics { value privacy { epsilon } } } }", role="executive"
    )
    assert machines["aggregate"][0]["metrics"][0] == {"value": 4.0, "privacy": None}
    # every spend is in the audit trail, with the epsilon it cost
    spends = [
        json.loads(r.detail)["privacy"]
        for r in private_api.audit_records()
        if r.subject == "test-executive" and '"privacy"' in (r.detail or "")
    ]
    assert len(spends) == int(BUDGET) and all(s[0]["epsilon"] == 1.0 for s in spends)


def test_a_hidden_field_can_be_measured_with_bounds_but_not_grouped_or_filtered(private_api: ApiHarness) -> None:
    query = (
        '{ aggregate(className: Employee, groupBy: ["jobTitle"], epsilon: 1.0, metrics: '
        '[{fn: COUNT}, {fn: AVG, field: "salary"}]) { group metrics { name value privacy { accuracy95 } } } }'
    )
    rows = private_api.data(query, role="architect")["aggregate"]
    by_title = {r["group"]["jobTitle"]: r["metrics"] for r in rows}
    assert set(by_title) <= {"Engineer", "Sales"}  # a group may be held back only if its noisy count is tiny
    for metrics in by_title.values():
        count, mean = metrics
        assert count["privacy"] is not None and mean["privacy"] is not None
        assert 0 <= mean["value"] <= 100_000  # clamped to the bounds
    # salaries 50,000..73,000: the noisy mean lands near them with high probability at this accuracy
    for metrics in by_title.values():
        accuracy = metrics[1]["privacy"]["accuracy95"]
        assert accuracy is None or accuracy > 0
    group = '{ aggregate(className: Employee, groupBy: ["salary"]) { group } }'
    assert private_api.gql(group, role="architect")[1]["errors"][0]["extensions"]["code"] == "FIELD_NOT_READABLE"
    filtered = (
        '{ aggregate(className: Employee, where: {salary: {gt: 60000}}, metrics: [{fn: AVG, field: "salary"}]) '
        "{ group } }"
    )
    assert private_api.gql(filtered, role="architect")[1]["errors"][0]["extensions"]["code"] == "FIELD_NOT_READABLE"
    email = '{ aggregate(className: Employee, metrics: [{fn: COUNT, field: "email"}]) { group } }'
    assert private_api.gql(email, role="architect")[1]["errors"][0]["extensions"]["code"] == "FIELD_NOT_READABLE"


def test_bad_private_requests_are_clear_errors_and_spend_nothing(private_api: ApiHarness) -> None:
    ledger = private_api.runtime.privacy_budget
    rule = private_api.runtime.policy.roles["architect"].privacy
    before = ledger.state(rule).spent
    cases = {
        '{ aggregate(className: Employee, metrics: [{fn: MAX, field: "hireDate"}]) { group } }': "MAX cannot be",
        "{ aggregate(className: Employee, epsilon: 5.0) { group } }": "`epsilon` must be between",
        "{ aggregate(className: Employee, epsilon: 1e-320) { group } }": "`epsilon` must be between",
        '{ aggregate(className: Machine, metrics: [{fn: SUM, field: "mtbfHours"}]) { group } }': "needs clamp bounds",
    }
    for query, message in cases.items():
        status, body = private_api.gql(query, role="architect")
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert message in body["errors"][0]["message"]
    assert ledger.state(rule).spent == before
    status, body = private_api.gql("{ aggregate(className: Machine, epsilon: 0.5) { group } }", role="admin")
    assert "epsilon applies only to noisy ones" in body["errors"][0]["message"]


def test_the_analyst_aggregates_people_privately_but_never_reads_a_person(private_api: ApiHarness) -> None:
    query = (
        '{ aggregate(className: Employee, metrics: [{fn: COUNT}, {fn: SUM, field: "salary"}])'
        " { group metrics { name value privacy { epsilon mechanism } } } }"
    )
    status, body = private_api.gql(query, role="analyst")
    assert status == 200 and "errors" not in body, body
    (row,) = body["data"]["aggregate"]
    count, total = row["metrics"]
    assert count["privacy"] == {"epsilon": 0.5, "mechanism": "discrete_laplace"}  # 1.0 split over two metrics
    assert total["privacy"] == {"epsilon": 0.5, "mechanism": "laplace"}
    assert abs(count["value"] - EMPLOYEES) < 40  # scale 2: |noise| >= 40 has probability ~2e-9
    assert body["extensions"]["privacy"][0]["role"] == "analyst"
    # groups of 12 people are too small to release at this epsilon: their keys alone could single someone out
    grouped = '{ aggregate(className: Employee, groupBy: ["jobTitle"]) { group metrics { value } } }'
    status, body = private_api.gql(grouped, role="analyst")
    assert body["data"]["aggregate"] == []
    assert "suppressedGroups" not in body["extensions"]["privacy"][0]  # an exact count of the filter's groups
    # no row, no count and no twin of a person reaches the analyst any other way
    listed = private_api.gql("{ employees { totalCount } }", role="analyst")[1]
    assert listed["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "GRAPHQL_VALIDATION_FAILED"), listed
    one = private_api.gql('{ twin(uid: "emp-01") { uid } }', role="analyst")[1]
    assert (one.get("data") or {}).get("twin") is None
    members = private_api.data("{ orgUnits { nodes { uid hasMember { totalCount } } } }", role="analyst")
    assert all(n["hasMember"]["totalCount"] == 0 for n in members["orgUnits"]["nodes"])
    email = '{ aggregate(className: Employee, groupBy: ["email"]) { group } }'
    assert private_api.gql(email, role="analyst")[1]["errors"][0]["extensions"]["code"] == "FIELD_NOT_READABLE"
    exact = private_api.data(
        "{ aggregate(className: Skill) { metrics { value privacy { epsilon } } } }", role="analyst"
    )
    assert exact["aggregate"][0]["metrics"][0] == {"value": 3.0, "privacy": None}
