"""Experiments over GraphQL: runExperiment checks the spec now and runs it in the background; experimentRun follows
it to its best decision; bad specs are refused at their line; the policy decides who may start or read one."""

from __future__ import annotations

import time

from tests.api.conftest import ApiHarness

SPEC = """
name: api-outage-length
horizon_days: 30
replications: 2
seed: 7
kpis: [throughput, lost_sales]
scenarios:
  - name: steel outage
    interventions:
      - {kind: supplier_outage, target: {uids: [sup-1]}, start_day: 5, duration_days: ${days}}
experiment:
  kind: grid
  variables:
    days: {values: [2, 10, 20]}
  objective:
    maximize: {throughput: 1}
"""
RUN = "mutation Run($spec: String!) { runExperiment(spec: $spec) { id status experimentId } }"
FOLLOW = "query Follow($id: ID!) { experimentRun(id: $id) { id status error experimentId bestDecision result } }"


def test_an_executive_runs_an_experiment_and_reads_its_best_decision(api: ApiHarness) -> None:
    started = api.data(RUN, {"spec": SPEC}, role="executive")["runExperiment"]
    assert started["status"] in ("queued", "running", "completed") and started["experimentId"] is None
    deadline = time.monotonic() + 120
    while True:
        run = api.data(FOLLOW, {"id": started["id"]}, role="executive")["experimentRun"]
        if run["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert run["status"] == "completed", run["error"]
    assert run["bestDecision"] == {"days": 2}  # the shortest outage of the only supplier keeps most throughput
    result = run["result"]
    assert [e["decision"]["days"] for e in result["evaluations"]] == [2, 10, 20]
    assert result["best_vs_baseline"]["mean"] <= 0 and "targets" not in result
    by_id = api.data(FOLLOW, {"id": run["experimentId"]}, role="architect")["experimentRun"]
    assert by_id["status"] == "completed" and by_id["bestDecision"] == {"days": 2}


def test_experiment_fields_follow_the_policy_and_refuse_bad_specs(api: ApiHarness) -> None:
    status, body = api.gql(RUN, {"spec": SPEC}, role="viewer")
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    status, body = api.gql(RUN, {"spec": SPEC.replace("${days}", "${day}")}, role="executive")
    assert status == 200 and body["data"] is None
    assert "line 10: unknown decision variable ${day}" in body["errors"][0]["message"]
    status, body = api.gql(RUN, {"spec": SPEC.replace("[2, 10, 20]", "[]")}, role="executive")
    assert "line 14" in body["errors"][0]["message"] and "empty bounds" in body["errors"][0]["message"]
    status, body = api.gql('{ experimentRun(id: "nope") { id } }', role="executive")
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
