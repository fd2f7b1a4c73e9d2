"""Decisions over the real HTTP app: `alerts`, `proposals` and `automations` queries filtered and paged with the
policy applied before the page cut (a role without rights on a class sees no alerts about its twins; evidence masked
by field modes), the alert and proposal mutations (four eyes, override with a reason, audited), the `decisions`
subscription for roles that may see them, and alerts that resolve themselves once their condition no longer holds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from governance.decisions.evidence import Evidence, EvidenceTwin
from governance.decisions.runtime import DecisionRuntime
from governance.tokens import LocalIssuer
from graph.model import Twin
from tests.waiting import wait_for

ALERTS = """query($states: [String!], $first: Int, $after: String, $twin: ID) {
  alerts(states: $states, first: $first, after: $after, twin: $twin) {
    nodes { id state severity twin className message evidence fired snoozed updatedBy }
    pageInfo { hasNextPage endCursor }
  }
}"""
PROPOSALS = """query($states: [String!]) {
  proposals(states: $states) { nodes { id state actionType parameters twin approvedBy mayApprove result } }
}"""
APPROVE = "mutation($id: ID!, $r: String) { approveProposal(id: $id, reason: $r) { id state approvedBy } }"


@dataclass
class Served:
    client: TestClient
    runtime: Runtime
    issuer: LocalIssuer
    decisions: DecisionRuntime

    def gql(self, query: str, variables: dict[str, Any] | None = None, *, role: str, sub: str) -> dict[str, Any]:
        token = self.issuer.issue_token(role, sub=sub)
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
        body: dict[str, Any] = response.json()
        return body

    def data(self, query: str, variables: dict[str, Any] | None = None, *, role: str, sub: str) -> dict[str, Any]:
        body = self.gql(query, variables, role=role, sub=sub)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
def served(erp_twin: Runtime) -> Iterator[Served]:
    decisions = erp_twin.decision_runtime(holder="graphql-test")
    assert decisions is not None
    decisions.start()
    decisions.stop()  # driven step by step
    with TestClient(create_app(erp_twin)) as client:
        yield Served(client, erp_twin, LocalIssuer(erp_twin.settings.data_dir), decisions)


def _material_and_supplier(runtime: Runtime) -> tuple[str, str]:
    supplier, material = runtime.store.query(
        "MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN s.uid, m.uid ORDER BY m.uid LIMIT 1"
    )[0]
    return material, supplier


def _stock(runtime: Runtime, uid: str, level: float) -> None:
    runtime.store.upsert_twins([Twin(uid, "Material", {"stockLevel": level})], actor="test", source="test")


def test_alerts_and_proposals_are_governed_paged_and_decided_over_http(served: Served) -> None:
    runtime = served.runtime
    material, _ = _material_and_supplier(runtime)
    _stock(runtime, material, 2.0)
    served.decisions.step()

    [alert] = served.data(ALERTS, {"states": ["open"]}, role="data_steward", sub="ann")["alerts"]["nodes"]
    assert alert["twin"] == material and alert["className"] == "Material" and alert["state"] == "open"
    assert alert["evidence"]["twins"][0]["values"]["stockLevel"] == 2.0
    # the viewer reads Material but no Internal values: the evidence value is masked away
    [seen] = served.data(ALERTS, role="viewer", sub="vic")["alerts"]["nodes"]
    assert seen["evidence"]["twins"][0]["values"].get("stockLevel") is None
    assert seen["evidence"]["twins"][0]["masked"]["stockLevel"] == "null"
    # hr has no rights on Material: no alert, no proposal about it
    assert served.data(ALERTS, role="hr", sub="hal")["alerts"]["nodes"] == []
    assert served.data(PROPOSALS, role="hr", sub="hal")["proposals"]["nodes"] == []

    [proposal] = served.data(PROPOSALS, {"states": ["proposed"]}, role="data_steward", sub="ann")["proposals"]["nodes"]
    assert proposal["mayApprove"] is True and proposal["parameters"]["quantity"] == 50.0
    viewer_view = served.data(PROPOSALS, role="viewer", sub="vic")["proposals"]["nodes"][0]
    assert viewer_view["mayApprove"] is False

    # a role that may not approve is refused, and the refusal marks the request denied
    refused = served.gql(APPROVE, {"id": proposal["id"]}, role="viewer", sub="vic")
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "approver roles" in refused["errors"][0]["message"]

    # override: changed parameters with a reason, audited with before and after
    override = (
        "mutation($id: ID!, $p: JSON!, $r: String!) { overrideProposal(id: $id, parameters: $p, reason: $r) "
        "{ state parameters } }"
    )
    no_reason = served.gql(
        override, {"id": proposal["id"], "p": {"quantity": 80.0}, "r": " "}, role="executive", sub="bob"
    )
    assert "reason" in no_reason["errors"][0]["message"]
    bad = served.gql(override, {"id": proposal["id"], "p": {"quantity": -1}, "r": "more"}, role="executive", sub="bob")
    assert "quantity" in bad["errors"][0]["message"] and bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    changed = served.data(
        override, {"id": proposal["id"], "p": {"quantity": 80.0}, "r": "a bigger batch"}, role="executive", sub="bob"
    )
    assert changed["overrideProposal"] == {
        "state": "proposed",
        "parameters": {**proposal["parameters"], "quantity": 80.0},
    }

    # four eyes: the same person twice is refused; two people approve; the runtime executes it
    first = served.data(APPROVE, {"id": proposal["id"], "r": "low"}, role="data_steward", sub="ann")
    assert first["approveProposal"]["state"] == "proposed"
    twice = served.gql(APPROVE, {"id": proposal["id"]}, role="data_steward", sub="ann")
    assert "approved it already" in twice["errors"][0]["message"]
    second = served.data(APPROVE, {"id": proposal["id"], "r": "ok"}, role="executive", sub="bob")
    assert second["approveProposal"] == {"id": proposal["id"], "state": "approved", "approvedBy": ["ann", "bob"]}
    served.decisions.step()
    [done] = served.data(PROPOSALS, {"states": ["executed"]}, role="data_steward", sub="ann")["proposals"]["nodes"]
    assert done["result"] == f"TW-{proposal['id']}" and done["mayApprove"] is False

    # the alert: acknowledge, snooze, resolve; a transition its state does not allow is refused
    ack = 'mutation($id: ID!) { acknowledgeAlert(id: $id, reason: "on it") { state updatedBy } }'
    refused = served.gql(ack, {"id": alert["id"]}, role="viewer", sub="vic")["errors"][0]
    assert refused["extensions"]["code"] == "FORBIDDEN" and "alert.manage" in refused["message"]  # read-only role
    assert served.data(ack, {"id": alert["id"]}, role="data_steward", sub="ann")["acknowledgeAlert"] == {
        "state": "acknowledged",
        "updatedBy": "ann",
    }
    assert (
        "cannot be acknowledged"
        in served.gql(ack, {"id": alert["id"]}, role="data_steward", sub="ann")["errors"][0]["message"]
    )
    snooze = "mutation($id: ID!, $u: DateTime!) { snoozeAlert(id: $id, until: $u) { state snoozed snoozedUntil } }"
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    snoozed = served.data(snooze, {"id": alert["id"], "u": later}, role="data_steward", sub="ann")["snoozeAlert"]
    assert snoozed["snoozed"] is True and snoozed["state"] == "acknowledged"
    past = served.gql(snooze, {"id": alert["id"], "u": "2020-01-01T00:00:00+00:00"}, role="data_steward", sub="ann")
    assert "future" in past["errors"][0]["message"]
    # hr neither handles alerts nor sees this one: refused before the alert is looked up (any id answers alike)
    resolve = "mutation($id: ID!) { resolveAlert(id: $id) { state } }"
    hidden = served.gql(resolve, {"id": alert["id"]}, role="hr", sub="hal")
    assert "may not handle alerts" in hidden["errors"][0]["message"]
    assert (
        served.gql(resolve, {"id": "no-such-alert"}, role="hr", sub="hal")["errors"][0]["message"]
        == (hidden["errors"][0]["message"])
    )
    assert (
        served.data(resolve, {"id": alert["id"]}, role="data_steward", sub="ann")["resolveAlert"]["state"] == "resolved"
    )

    served.client.app.state.services.trail.flush()  # type: ignore[attr-defined]
    operations = [(r.subject, r.operation, str(r.decision)) for r in runtime.audit.query(limit=100_000)]
    for expected in [
        ("vic", "decision.approved", "deny"),
        ("bob", "decision.overridden", "allow"),
        ("ann", "decision.approval", "allow"),
        ("bob", "decision.approved", "allow"),
        ("ann", "alert.acknowledge", "allow"),
        ("ann", "alert.snooze", "allow"),
        ("ann", "alert.resolve", "allow"),
    ]:
        assert expected in operations, expected
    overridden = next(
        r
        for r in runtime.audit.query(limit=100_000)
        if r.operation == "decision.overridden" and str(r.decision) == "allow"
    )
    detail = json.loads(overridden.detail)
    assert detail["before"]["quantity"] == 50.0 and detail["after"]["quantity"] == 80.0
    assert detail["reason"] == "a bigger batch"


def test_the_policy_filters_before_the_page_is_cut(served: Served) -> None:
    runtime = served.runtime
    material, supplier = _material_and_supplier(runtime)
    store = runtime.decisions.alerts
    for i in range(2):  # older: about a supplier (hr reads Organizations)
        store.raise_alert(
            automation="a",
            rule_version="1",
            severity="info",
            key=f"s{i}",
            twin_uid=supplier,
            twin_class="Supplier",
            message=f"supplier {i}",
            evidence=Evidence((EvidenceTwin(supplier, "Supplier", {}, (), 0),)),
            actor="t",
        )
    for i in range(5):  # newer: about a material (hr may not read Material)
        store.raise_alert(
            automation="a",
            rule_version="1",
            severity="info",
            key=f"m{i}",
            twin_uid=material,
            twin_class="Material",
            message=f"material {i}",
            evidence=Evidence(),
            actor="t",
        )
    page = served.data(ALERTS, {"first": 1}, role="hr", sub="hal")["alerts"]
    assert [n["message"] for n in page["nodes"]] == ["supplier 1"] and page["pageInfo"]["hasNextPage"] is True
    rest = served.data(ALERTS, {"first": 5, "after": page["pageInfo"]["endCursor"]}, role="hr", sub="hal")["alerts"]
    assert [n["message"] for n in rest["nodes"]] == ["supplier 0"] and rest["pageInfo"]["hasNextPage"] is False
    # the CLI's list (the service's) is cut after the filter as well
    assert [a.message for a in runtime.decisions.list_alerts(runtime.operator(), limit=3)] == [
        "material 4",
        "material 3",
        "material 2",
    ]
    from governance.identity import Subject

    hr = Subject(sub="hal", roles=frozenset({"hr"}))
    assert [a.message for a in runtime.decisions.list_alerts(hr, limit=1)] == ["supplier 1"]
    # a steward pages through all seven, newest first, no duplicates
    seen: list[str] = []
    after = None
    while True:
        got = served.data(ALERTS, {"first": 3, "after": after}, role="data_steward", sub="ann")["alerts"]
        seen += [n["message"] for n in got["nodes"]]
        if not got["pageInfo"]["hasNextPage"]:
            break
        after = got["pageInfo"]["endCursor"]
    assert seen == [f"material {i}" for i in range(4, -1, -1)] + ["supplier 1", "supplier 0"]
    bad = served.gql(ALERTS, {"after": "not-a-cursor"}, role="data_steward", sub="ann")
    assert "cursor" in bad["errors"][0]["message"] and bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_automations_query_shows_what_the_role_may_read(served: Served) -> None:
    query = "{ automations { nodes { name className trigger properties condition actionType approval role } } }"
    [rule] = served.data(query, role="data_steward", sub="ann")["automations"]["nodes"]
    assert rule["name"] == "reorder-materials" and rule["className"] == "Material"
    assert rule["properties"] == ["stockLevel"] and rule["actionType"] == "erp.purchase_order"
    assert rule["approval"] == "manual" and "stockLevel" in rule["condition"]
    assert served.data(query, role="hr", sub="hal")["automations"]["nodes"] == []
    # the whole definition (action parameters, alert text) only for those who may manage automations
    whole = "{ automations { nodes { name definition } } }"
    [managed] = served.data(whole, role="data_steward", sub="ann")["automations"]["nodes"]
    assert managed["definition"]["action"]["type"] == "erp.purchase_order"
    [read_only] = served.data(whole, role="architect", sub="arc")["automations"]["nodes"]
    assert read_only == {"name": "reorder-materials", "definition": None}
    assert (
        served.data('{ automations(className: "Machine") { nodes { name } } }', role="admin", sub="a")["automations"][
            "nodes"
        ]
        == []
    )


def test_an_alert_resolves_itself_once_its_condition_no_longer_holds(served: Served) -> None:
    runtime = served.runtime
    material, _ = _material_and_supplier(runtime)
    _stock(runtime, material, 2.0)
    served.decisions.step()
    [alert] = runtime.decisions.list_alerts(runtime.operator(), ["open"])
    _stock(runtime, material, 500.0)
    served.decisions.step()
    resolved = runtime.decisions.alerts.get(alert.id)
    assert resolved is not None and resolved.state == "resolved" and resolved.updated_by == "twin decisions"
    records = [r for r in runtime.audit.query(limit=100_000) if r.operation == "alert.resolve"]
    assert records and json.loads(records[-1].detail)["reason"] == "automatic: the condition no longer holds"
    # falling again opens a new alert (the key is free once resolved)
    _stock(runtime, material, 1.0)
    served.decisions.step()
    [again] = runtime.decisions.list_alerts(runtime.operator(), ["open"])
    assert again.id != alert.id


def _wait_for_subscriptions(served: Served, count: int) -> None:
    trail = served.client.app.state.services.trail  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        trail.flush()
        started = [r for r in trail.log.query(limit=100_000) if r.operation == "graphql.subscription:decisions"]
        if len(started) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the subscriptions did not start")


def test_decisions_subscription_streams_new_alerts_and_proposals_to_roles_that_may_see_them(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pushed: with the fall-back look for other processes' writes an hour away, the events arrive on the notice
    the decisions service sends as it writes them, each subscriber reading them through the policy."""
    import api.graphql.decisions

    monkeypatch.setattr(api.graphql.decisions, "FALLBACK_SECONDS", 3600.0)
    runtime = served.runtime
    material, _ = _material_and_supplier(runtime)
    query = (
        "subscription { decisions { kind created alert { twin severity evidence } "
        "proposal { twin state actionType mayApprove } } }"
    )

    def connect(role: str, sub: str) -> tuple[Any, Any]:
        ws = served.client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"])
        socket = ws.__enter__()
        token = served.issuer.issue_token(role, sub=sub)
        socket.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        assert socket.receive_json() == {"type": "connection_ack"}
        socket.send_json({"id": "d", "type": "subscribe", "payload": {"query": query}})
        return ws, socket

    steward_ws, steward = connect("data_steward", "ann")
    hr_ws, hr = connect("hr", "hal")
    try:
        _wait_for_subscriptions(served, 2)  # both stream from before the change below
        assert wait_for(lambda: runtime.decisions.notices.listeners == 2, timeout=30)  # both wait for notices
        _stock(runtime, material, 2.0)
        served.decisions.step()
        events = [steward.receive_json() for _ in range(2)]
        time.sleep(1.0)  # hr's subscription woke on the same notice and read past the change too
        hr.send_json({"type": "ping"})
        assert hr.receive_json() == {"type": "pong"}  # hr got nothing before the pong: nothing visible to it
    finally:
        steward_ws.__exit__(None, None, None)
        hr_ws.__exit__(None, None, None)
    got = sorted((e["payload"]["data"]["decisions"] for e in events), key=lambda d: d["kind"])
    assert [(d["kind"], d["created"]) for d in got] == [("alert", True), ("proposal", True)]
    assert (
        got[0]["alert"]["twin"] == material and got[0]["alert"]["evidence"]["twins"][0]["values"]["stockLevel"] == 2.0
    )
    assert got[1]["proposal"] == {
        "twin": material,
        "state": "proposed",
        "actionType": "erp.purchase_order",
        "mayApprove": True,
    }
    served.client.app.state.services.trail.flush()  # type: ignore[attr-defined]
    assert any(r.operation == "graphql.subscription:decisions" for r in runtime.audit.query(limit=100_000))


def test_ontology_classes_named_like_the_decision_fields_do_not_collide() -> None:
    from api.graphql.builder import build_schema
    from api.graphql.decisions import TYPES
    from api.graphql.naming import DECISION_TYPES
    from ontology.core import load_core
    from ontology.model import ClassDef, Ontology

    assert set(DECISION_TYPES) == set(TYPES)
    extra = Ontology(
        [ClassDef(id=f"urn:test:{name}", name=name) for name in ("Alert", "Proposal", "Automation", "DecisionAlert")]
    )
    schema = build_schema(load_core().merge(extra))  # load_core is shared: never add to it in place
    query = schema.graphql.query_type
    assert query is not None
    assert str(query.fields["alerts"].type) == "DecisionAlertPage!"
    assert {"alertsList", "proposalsList", "automationsList"} <= set(query.fields)
    assert schema.graphql.type_map["DecisionAlert"].description.startswith("An alert an automation raised")


CREATE_AUTOMATION = """mutation($name: String!, $definition: JSON!) {
  createAutomation(name: $name, definition: $definition) {
    name change versionBefore versionAfter automation { name enabled trigger className condition definition }
  }
}"""
SET_ENABLED = """mutation($name: String!, $enabled: Boolean!) {
  setAutomationEnabled(name: $name, enabled: $enabled) { change versionAfter automation { enabled } }
}"""
UPDATE_AUTOMATION = """mutation($name: String!, $changes: JSON!) {
  updateAutomation(name: $name, changes: $changes) { change automation { condition } }
}"""
DELETE_AUTOMATION = (
    "mutation($name: String!) { deleteAutomation(name: $name) { change versionBefore automation { name } } }"
)
HOT = {
    "role": "data_steward",
    "trigger": {"change": {"class": "Material", "properties": ["stockLevel"]}},
    "condition": "twin.stockLevel > 1000.0",
    "alert": {"severity": "critical"},
}


def test_automations_managed_over_graphql_run_without_a_restart(erp_twin: Runtime) -> None:
    """An app started without automations.yaml: the first automation created over GraphQL starts the decisions
    runtime, which raises its alert on the next change; refusals come back as clear errors."""
    from tests.waiting import wait_for

    (erp_twin.settings.data_dir / "automations.yaml").unlink()
    app = create_app(erp_twin, live=True)
    assert app.state.services.decisions is None
    with TestClient(app) as client:
        served = Served(client, erp_twin, LocalIssuer(erp_twin.settings.data_dir), None)  # type: ignore[arg-type]
        refused = served.gql(CREATE_AUTOMATION, {"name": "hot", "definition": HOT}, role="viewer", sub="vic")
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN", refused
        bad = served.gql(
            CREATE_AUTOMATION,
            {"name": "hot", "definition": {**HOT, "condition": "twin.stockLevel >"}},
            role="data_steward",
            sub="ann",
        )
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "automation 'hot': condition: expression error" in bad["errors"][0]["message"]
        assert not (erp_twin.settings.data_dir / "automations.yaml").exists()

        made = served.data(CREATE_AUTOMATION, {"name": "hot", "definition": HOT}, role="data_steward", sub="ann")
        change = made["createAutomation"]
        assert change["change"] == "create" and change["versionBefore"] is None
        assert change["automation"]["enabled"] and change["automation"]["definition"]["condition"] == HOT["condition"]
        assert app.state.services.decisions is not None  # started by the first automation

        material, _ = _material_and_supplier(erp_twin)
        _stock(erp_twin, material, 5000.0)
        assert wait_for(lambda: len(erp_twin.decisions.alerts.list()) == 1, timeout=30)
        [alert] = erp_twin.decisions.alerts.list()
        assert alert.automation == "hot" and alert.twin_uid == material

        off = served.data(SET_ENABLED, {"name": "hot", "enabled": False}, role="data_steward", sub="ann")
        assert off["setAutomationEnabled"]["automation"] == {"enabled": False}
        listed = served.data("{ automations { nodes { name enabled } } }", role="data_steward", sub="ann")
        assert listed["automations"]["nodes"] == [{"name": "hot", "enabled": False}]
        changed = served.data(
            UPDATE_AUTOMATION,
            {"name": "hot", "changes": {"condition": "twin.stockLevel > 10.0"}},
            role="data_steward",
            sub="ann",
        )
        assert changed["updateAutomation"]["automation"]["condition"] == "twin.stockLevel > 10.0"
        gone = served.data(DELETE_AUTOMATION, {"name": "hot"}, role="data_steward", sub="ann")
        assert gone["deleteAutomation"]["automation"] is None and gone["deleteAutomation"]["versionBefore"]
        assert app.state.services.decisions.registry.current.automations == ()
    records = [
        (r.operation, str(r.decision))
        for r in erp_twin.audit.query(limit=5000)
        if r.operation.startswith("automation.")
    ]
    assert records == [
        ("automation.create", "deny"),
        ("automation.create", "deny"),
        ("automation.create", "allow"),
        ("automation.disable", "allow"),
        ("automation.update", "allow"),
        ("automation.delete", "allow"),
    ]
