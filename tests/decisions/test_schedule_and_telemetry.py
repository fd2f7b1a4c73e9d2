"""A schedule rule over machines with a telemetry window: only the machine whose mean temperature over the window is
too high gets a `twin.edit` proposal, with the window in its evidence; approved, it changes the twin as a governed
mutation made by its proposer (the automation's role), recorded in the twin's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.runtime import Runtime
from connectors.telemetry import Reading, TelemetryStore
from governance.identity import Subject

HOT = """\
automations:
  hot-machines:
    role: admin
    trigger:
      schedule: {class: Machine, every: 1h}
    telemetry:
      temp: {metric: temperature, window: 1h}
    condition: "telemetry.temp.count > 0 && telemetry.temp.mean > 90.0"
    alert: {severity: critical, message: "'too hot: ' + twin.uid"}
    action:
      type: twin.edit
      parameters: {uid: "twin.uid", properties: "{'status': 'degraded'}"}
"""


def test_telemetry_window_proposes_a_twin_edit(erp_twin: Runtime) -> None:
    runtime = erp_twin
    (runtime.settings.data_dir / "automations.yaml").write_text(HOT)
    hot, cool = [uid for (uid,) in runtime.store.query("MATCH (m:Machine) RETURN m.uid ORDER BY m.uid LIMIT 2")]
    telemetry = TelemetryStore(runtime.settings.resolved_database_url)
    now = datetime.now(UTC)
    readings = [
        Reading(uid, "temperature", (now - timedelta(minutes=m)).isoformat(), value)
        for uid, values in ((hot, (94.0, 96.0)), (cool, (50.0, 99.0)))
        for m, value in zip((5, 2), values, strict=True)
    ]
    readings.append(Reading(cool, "temperature", (now - timedelta(hours=3)).isoformat(), 500.0))  # outside the window
    with telemetry.engine.begin() as conn:
        telemetry.append(conn, readings, "test-run")
    decisions = runtime.decision_runtime(holder="test")
    assert decisions is not None
    decisions.registry.reload()
    decisions.step()
    service = runtime.decisions
    steward = Subject(sub="ann", roles=frozenset({"data_steward"}))
    [proposal] = service.list_proposals(steward)
    assert proposal.twin_uid == hot and proposal.parameters == {"uid": hot, "properties": {"status": "degraded"}}
    [alert] = service.list_alerts(steward)
    assert alert.severity == "critical" and alert.evidence.telemetry["temp"]["mean"] == 95.0
    assert alert.evidence.telemetry["temp"]["count"] == 2
    service.approve(steward, proposal.id, "send maintenance")
    decisions.step()
    assert service.proposals.require(proposal.id).state == "executed"
    assert runtime.store.get(hot).properties["status"] == "degraded"
    last = runtime.store.history_of(hot)[-1]
    assert last.actor == "automation:hot-machines" and last.source == f"decision:{proposal.id}"


def test_automatic_where_the_policy_allows_it(erp_twin: Runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With `automatic: true` for twin.edit in the policy, an automation asking for it runs without anyone; the
    proposal's parameters are masked for a role that may not read them."""
    from importlib import resources

    from api.settings import Settings

    policy = resources.files("governance").joinpath("policies/default.yaml").read_text()
    policy = policy.replace(
        "  twin.edit:\n    approvers: [admin, data_steward]\n",
        "  twin.edit:\n    approvers: [admin, data_steward]\n    automatic: true\n",
    )
    (tmp_path / "policy.yaml").write_text(policy)
    settings: Settings = erp_twin.settings
    runtime = Runtime(settings=settings.model_copy(update={"policy_path": tmp_path / "policy.yaml"}))
    try:
        (settings.data_dir / "automations.yaml").write_text(
            HOT.replace("type: twin.edit\n", "type: twin.edit\n      approval: automatic\n")
        )
        hot = runtime.store.query("MATCH (m:Machine) RETURN m.uid ORDER BY m.uid LIMIT 1")[0][0]
        telemetry = TelemetryStore(settings.resolved_database_url)
        with telemetry.engine.begin() as conn:
            telemetry.append(conn, [Reading(hot, "temperature", datetime.now(UTC).isoformat(), 99.0)], "test-run")
        decisions = runtime.decision_runtime(holder="test")
        assert decisions is not None
        decisions.registry.reload()
        decisions.step()  # proposes, approves automatically, executes
        [proposal] = runtime.decisions.proposals.list()
        assert proposal.state == "executed" and proposal.approved_by == ("automation:hot-machines",)
        assert runtime.store.get(hot).properties["status"] == "degraded"
        viewer = Subject(sub="v", roles=frozenset({"viewer"}))
        assert runtime.decisions.proposal(viewer, proposal.id).parameters["properties"] == {}  # Internal: "null"
    finally:
        runtime.close()
