"""What-if studies over GraphQL: runScenario starts one in the background, scenarioRun follows it, scenarios lists."""

from __future__ import annotations

import time

from tests.api.conftest import ApiHarness

SPEC = """
name: api-outage
horizon_days: 30
replications: 2
seed: 7
kpis: [throughput, lost_sales]
scenarios:
  - name: steel outage
    interventions:
      - {kind: supplier_outage, target: {uids: [sup-1]}, start_day: 5, duration_days: 20}
"""
RUN = "mutation Run($spec: String!) { runScenario(spec: $spec, replications: 2) { id status } }"
FOLLOW = """query Follow($id: ID!) { scenarioRun(id: $id) { id status error
  study { id name replications summaries { scenario kpi n mean ciLow ciHigh diffMean } } } }"""


def test_an_executive_runs_a_study_and_reads_its_results(api: ApiHarness) -> None:
    started = api.data(RUN, {"spec": SPEC}, role="executive")["runScenario"]
    assert started["status"] in ("queued", "running", "completed")
    deadline = time.monotonic() + 60
    while True:
        run = api.data(FOLLOW, {"id": started["id"]}, role="executive")["scenarioRun"]
        if run["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert run["status"] == "completed", run["error"]
    study = run["study"]
    assert study["name"] == "api-outage" and study["replications"] == 2
    rows = {(s["scenario"], s["kpi"]): s for s in study["summaries"]}
    assert rows[("steel outage", "throughput")]["n"] == 2
    assert rows[("steel outage", "throughput")]["diffMean"] <= 0  # the only supplier of the material is out
    listed = api.data("{ scenarios(first: 5) { id name } }", role="executive")["scenarios"]
    assert study["id"] in {s["id"] for s in listed}
    by_study_id = api.data(FOLLOW, {"id": study["id"]}, role="architect")["scenarioRun"]
    assert by_study_id["status"] == "completed" and by_study_id["study"]["summaries"] == study["summaries"]


def test_scenario_fields_follow_the_policy_and_refuse_bad_specs(api: ApiHarness) -> None:
    status, body = api.gql(RUN, {"spec": SPEC}, role="viewer")
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = api.gql("{ scenarios { id } }", role="hr")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = api.gql(RUN, {"spec": "name: x\nhorizon_days: -3\nkpis: [throughput]\n"}, role="executive")
    assert status == 200 and "horizon" in body["errors"][0]["message"]
    status, body = api.gql('{ scenarioRun(id: "nope") { id } }', role="executive")
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    one = "mutation Run($spec: String!) { runScenario(spec: $spec, replications: 1) { id status } }"
    status, body = api.gql(one, {"spec": SPEC}, role="executive")  # refused now, not by the background job
    assert status == 200 and body["data"] is None and "replications" in body["errors"][0]["message"]
