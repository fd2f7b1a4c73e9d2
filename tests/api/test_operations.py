"""REST operations: health, readiness, metrics, OpenAPI, GraphiQL, connector and scenario runs."""

from __future__ import annotations

from tests.api.conftest import ApiHarness


def test_health_ready_metrics_openapi_and_graphiql(api: ApiHarness) -> None:
    assert api.client.get("/health").json() == {"status": "ok"}
    ready = api.client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "graph": "ok", "database": "ok"}
    api.data("{ employees { totalCount } }")
    metrics = api.client.get("/metrics")
    assert (
        metrics.status_code == 200
        and 'twin_api_requests_total{method="POST",route="/graphql",status="200"}' in metrics.text
    )
    assert "twin_graph_round_trips_total" in metrics.text and "twin_audit_events_lost 0.0" in metrics.text
    spec = api.client.get("/openapi.json").json()
    assert {
        "/health",
        "/ready",
        "/metrics",
        "/operations/audit/verify",
        "/operations/connectors/{name}/runs",
        "/operations/scenarios",
        "/operations/jobs/{job_id}",
    } <= set(spec["paths"])
    ide = api.client.get("/graphql", headers={"Accept": "text/html"})
    assert ide.status_code == 200 and "graphiql" in ide.text.lower()


def test_operations_need_a_token_and_the_right_operation(api: ApiHarness) -> None:
    assert api.client.post("/operations/connectors/hr/runs").status_code == 401
    response = api.client.post(
        "/operations/connectors/hr/runs", headers={"Authorization": f"Bearer {api.token('viewer')}"}
    )
    assert response.status_code == 403 and "connector.run" in response.json()["detail"]
    response = api.client.post(
        "/operations/connectors/no-such-connector/runs",
        headers={"Authorization": f"Bearer {api.token('data_steward')}"},
    )
    assert response.status_code == 404 and "no-such-connector" in response.json()["detail"]


def test_scenario_spec_errors_are_422_with_the_problems(api: ApiHarness) -> None:
    response = api.client.post(
        "/operations/scenarios",
        json={"spec": "name: [unclosed"},
        headers={"Authorization": f"Bearer {api.token('executive')}"},
    )
    assert response.status_code == 422 and "YAML" in response.json()["detail"]
    response = api.client.post(
        "/operations/scenarios", json={"spec": "name: x"}, headers={"Authorization": f"Bearer {api.token('hr')}"}
    )
    assert response.status_code == 403


def test_a_connector_run_takes_a_deletion_allowance_in_percent(api: ApiHarness) -> None:
    headers = {"Authorization": f"Bearer {api.token('data_steward')}"}
    response = api.client.post(
        "/operations/connectors/no-such-connector/runs", headers=headers, json={"mode": "full", "allow_deletions": 150}
    )
    assert response.status_code == 422 and "allow_deletions" in response.text
    response = api.client.post(
        "/operations/connectors/no-such-connector/runs", headers=headers, json={"mode": "full", "allowDeletions": 35}
    )
    assert response.status_code == 404  # accepted, then the connector is looked up
