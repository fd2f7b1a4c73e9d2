"""The reorder loop against the real sample ERP: stock falls under the reorder point -> an alert and a proposal with
evidence and lineage -> refused approvals (not an approver, the proposer, the same person twice) -> four eyes approve
-> exactly one purchase order in the ERP, keyed by the proposal -> the next sync brings it into the twin with
lineage; every transition audited."""

from __future__ import annotations

import json
import sqlite3

import pytest

from api.runtime import Runtime
from governance.decisions.approval import ApprovalRefused
from governance.identity import Subject
from graph.model import Twin
from tests.decisions.conftest import sync_erp

STEWARD = Subject(sub="ann", roles=frozenset({"data_steward"}))
EXECUTIVE = Subject(sub="bob", roles=frozenset({"executive"}))
HR = Subject(sub="hal", roles=frozenset({"hr"}), org_unit="OU-0001")
VIEWER = Subject(sub="vic", roles=frozenset({"viewer"}))


def _material_with_supplier(runtime: Runtime) -> str:
    rows = runtime.store.query("MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN m.uid ORDER BY m.uid LIMIT 1")
    return rows[0][0]


def _lower_stock(runtime: Runtime, uid: str, level: float) -> None:
    runtime.store.upsert_twins([Twin(uid, "Material", {"stockLevel": level})], actor="test", source="test")


def test_stock_under_reorder_point_ends_in_one_purchase_order(erp_twin: Runtime) -> None:
    runtime = erp_twin
    decisions = runtime.decision_runtime(holder="test-runtime")
    assert decisions is not None
    decisions.start()
    decisions.stop()  # the loop is driven step by step below
    material = _material_with_supplier(runtime)
    _lower_stock(runtime, material, 2.0)
    decisions.step()
    assert decisions.status.firings == 1, decisions.status.errors

    service = runtime.decisions
    [alert] = service.list_alerts(STEWARD, ["open"])
    assert alert.twin_uid == material and alert.severity == "warning" and alert.key == f"reorder:{material}"
    root = alert.evidence.twins[0]
    assert root.values["stockLevel"] == 2.0
    assert any(t.cls == "Supplier" for t in alert.evidence.twins[1:])
    [proposal] = service.list_proposals(STEWARD, ["proposed"])
    assert proposal.parameters["material"] == material and proposal.parameters["quantity"] == 50.0

    # the same condition holding again neither opens a second alert nor a second proposal
    _lower_stock(runtime, material, 1.0)
    decisions.step()
    assert len(service.list_alerts(STEWARD, ["open"])) == 1
    assert len(service.list_proposals(STEWARD)) == 1

    # policy: hr may not read materials -> sees neither; the viewer sees the alert with masked values
    assert service.list_alerts(HR) == [] and service.list_proposals(HR) == []
    [seen] = service.list_alerts(VIEWER)
    assert seen.evidence.twins[0].values.get("stockLevel") is None
    assert seen.evidence.twins[0].masked.get("stockLevel") == "null"

    # refusals: a role that may not approve, the proposer, the same person twice (four eyes)
    with pytest.raises(ApprovalRefused, match="approver roles"):
        service.approve(VIEWER, proposal.id)
    with pytest.raises(ApprovalRefused, match="own proposal"):
        service.approve(Subject(sub=proposal.proposer, roles=frozenset({"data_steward"})), proposal.id)
    assert service.approve(STEWARD, proposal.id, "stock is low").state == "proposed"
    with pytest.raises(ApprovalRefused, match="already"):
        service.approve(STEWARD, proposal.id)
    approved = service.approve(EXECUTIVE, proposal.id, "agreed")
    assert approved.state == "approved" and approved.approved_by == ("ann", "bob")

    decisions.step()  # executes
    done = runtime.decisions.proposals.require(proposal.id)
    assert done.state == "executed" and done.result == f"TW-{proposal.id}", done.result
    erp = sqlite3.connect(runtime.settings.data_dir / "sample" / "erp.sqlite")
    assert erp.execute("SELECT COUNT(*) FROM purchase_orders WHERE po_number = ?", (done.result,)).fetchone()[0] == 1
    assert runtime.store.get(f"erp:po:{done.result}") is not None

    # the next sync brings the ERP's order into the twin with lineage
    sync_erp(runtime)
    lineage = runtime.lineage.where_from(f"erp:po:{done.result}", "orderNumber")
    assert lineage and lineage[-1].source_system == "erp" and lineage[-1].record_key

    operations = [
        (r.operation, r.decision)
        for r in runtime.audit.query(limit=1000)
        if r.operation.startswith("decision.") and "read" not in r.operation
    ]
    for expected in ("decision.proposed", "decision.approval", "decision.approved", "decision.executed"):
        assert (expected, "allow") in [(o, str(d)) for o, d in operations], expected
    assert sum(1 for o, d in operations if o == "decision.approved" and str(d) == "deny") == 3
    executed = [r for r in runtime.audit.query(limit=1000) if r.operation == "decision.executed"]
    detail = json.loads(executed[-1].detail)
    assert detail["rule"] == "reorder-materials" and detail["rule_version"]
    assert executed[-1].subject == proposal.proposer
    assert detail["approved_by"] == ["ann", "bob"]


def test_expired_proposal_cannot_be_approved_and_override_asks_again(erp_twin: Runtime) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from governance.decisions.proposals import proposal_table

    service = erp_twin.decisions
    material = _material_with_supplier(erp_twin)
    supplier = erp_twin.store.query(
        f"MATCH (s:Supplier)-[:supplies]->(m:Material {{uid: '{material}'}}) RETURN s.uid LIMIT 1"
    )[0][0]
    params = {"material": material, "supplier": supplier, "quantity": 5.0}
    admin = Subject(sub="ada", roles=frozenset({"admin"}))
    proposal = service.propose(admin, "erp.purchase_order", params, material, "manual")
    service.approve(STEWARD, proposal.id)
    overridden = service.override(EXECUTIVE, proposal.id, {"quantity": 8.0}, "a full pallet")
    assert overridden.parameters["quantity"] == 8.0 and overridden.approved_by == ()  # approvals withdrawn
    with service.proposals.engine.begin() as conn:
        conn.execute(
            update(proposal_table)
            .where(proposal_table.c.id == proposal.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(ApprovalRefused, match="expired"):
        service.approve(STEWARD, proposal.id)
    [expired] = service.expire()
    assert expired.id == proposal.id and expired.state == "expired"
    details = [
        json.loads(r.detail)
        for r in erp_twin.audit.query(limit=1000)
        if r.operation in ("decision.overridden", "decision.expired") and r.decision == "allow"
    ]
    assert [d["state"] for d in details] == ["proposed", "expired"]
    assert details[0]["before"]["quantity"] == 5.0 and details[0]["reason"] == "a full pallet"


def test_the_served_app_runs_the_automations(erp_twin: Runtime) -> None:
    """`twin serve` (create_app with the live runtime) evaluates automations.yaml over the feed while it serves."""
    from fastapi.testclient import TestClient

    from api.http.app import create_app
    from tests.waiting import wait_for

    app = create_app(erp_twin, live=True)
    assert app.state.services.decisions is not None
    with TestClient(app):
        material = _material_with_supplier(erp_twin)
        _lower_stock(erp_twin, material, 3.0)
        assert wait_for(lambda: len(erp_twin.decisions.proposals.list()) == 1, timeout=30)
    assert app.state.services.decisions.status.firings == 1


def test_parameters_the_action_type_refuses_are_recorded_not_proposed(erp_twin: Runtime) -> None:
    """A firing whose filled-in parameters the action type refuses (here a negative quantity) proposes nothing and
    leaves a refused `decision.proposed` record; the runtime keeps going."""
    path = erp_twin.settings.data_dir / "automations.yaml"
    path.write_text(path.read_text().replace('quantity: "50.0"', 'quantity: "twin.stockLevel - 10.0"'))
    decisions = erp_twin.decision_runtime(holder="test")
    assert decisions is not None
    decisions.start()
    decisions.stop()
    _lower_stock(erp_twin, _material_with_supplier(erp_twin), 2.0)
    decisions.step()
    assert decisions.status.firings == 1 and erp_twin.decisions.proposals.list() == []
    [refused] = [r for r in erp_twin.audit.query(limit=1000) if r.operation == "decision.proposed"]
    assert refused.decision == "deny" and "quantity" in refused.detail
    assert len(erp_twin.decisions.alerts.list()) == 1  # the alert is raised all the same


def test_a_broken_file_while_running_keeps_the_loaded_automations(erp_twin: Runtime) -> None:
    import os

    decisions = erp_twin.decision_runtime(holder="test")
    assert decisions is not None
    decisions.start()
    decisions.stop()
    path = erp_twin.settings.data_dir / "automations.yaml"
    path.write_text(path.read_text().replace("twin.stockLevel < 5.0", "twin.stockLevel < < 5.0"))
    os.utime(path, (1, 1))  # a changed file time, whatever the clock's resolution
    _lower_stock(erp_twin, _material_with_supplier(erp_twin), 2.0)
    decisions.step()
    assert (
        decisions.status.last_reload_error
        and ":8: automation 'reorder-materials'" in decisions.status.last_reload_error
    )
    assert decisions.status.firings == 1  # the previously loaded set evaluated the change
