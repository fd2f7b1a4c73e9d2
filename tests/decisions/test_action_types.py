"""The action types beyond write-backs, each approved and executed by the decisions runtime: `webhook.call` and
`event.publish` deliver a signed CloudEvent (id decision:<proposal id>) to a configured route (a real local webhook
receiver that verifies the signature); `scenario.study` runs a bundled study and attaches its result to the
proposal, once (a retry finds the stored study). Unknown routes and non-webhook routes abort with a clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from api.runtime import Runtime
from governance.decisions.actions import ActionError, WritebackFailed
from governance.identity import Subject
from tests.connectors.test_event_endpoints import SECRET, WebhookReceiver

STEWARD = Subject(sub="ann", roles=frozenset({"data_steward"}))
ADMIN = Subject(sub="ada", roles=frozenset({"admin"}))
ARCHITECT = Subject(sub="archie", roles=frozenset({"architect"}))
SECRET_VARIABLE = "TWIN_TEST_DECISION_HOOK_SECRET"


@pytest.fixture
def receiver(erp_twin: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    (erp_twin.settings.data_dir / "routes.yaml").write_text(
        "routes:\n"
        "  ops-hook:\n"
        f"    endpoint: {hook.url}\n"
        "    role: data_steward\n"
        f"    secret: ${{{SECRET_VARIABLE}}}\n"
        "  ops-bus:\n"
        "    endpoint: nats://127.0.0.1:4222/TWIN/decisions\n"
        "    role: data_steward\n"
    )
    yield hook
    hook.stop()


def _material(runtime: Runtime) -> str:
    return str(runtime.store.query("MATCH (m:Material) RETURN m.uid ORDER BY m.uid LIMIT 1")[0][0])


def _execute(
    runtime: Runtime, action: str, parameters: dict[str, object], twin: str, proposer: Subject = STEWARD
) -> str:
    """Propose (as the steward by default), approve as the admin, run the runtime once; the proposal id."""
    decisions = runtime.decision_runtime(holder="actions-test")
    assert decisions is not None
    decisions.start()
    decisions.stop()
    proposal = runtime.decisions.propose(proposer, action, parameters, twin, "tell operations")
    assert runtime.decisions.approve(ADMIN, proposal.id, "go").state == "approved"
    decisions.step()
    return proposal.id


def test_webhook_call_and_event_publish_deliver_a_signed_event_once_approved(
    erp_twin: Runtime, receiver: WebhookReceiver
) -> None:
    material = _material(erp_twin)
    called = _execute(
        erp_twin, "webhook.call", {"route": "ops-hook", "subject": material, "body": {"reorder": 50}}, material
    )
    done = erp_twin.decisions.proposals.require(called)
    assert done.state == "executed" and done.result == f"event decision:{called} -> ops-hook"
    [event] = receiver.accepted  # signature verified by the receiver
    assert event.id == f"decision:{called}" and event.type == "decision.webhook" and event.subject == material
    assert event.data["body"] == {"reorder": 50} and event.data["approvedFor"] == "ann"

    published = _execute(
        erp_twin,
        "event.publish",
        {"route": "ops-hook", "type": "stock.low", "subject": material, "data": {"level": 2}},
        material,
    )
    assert erp_twin.decisions.proposals.require(published).state == "executed"
    assert [(e.id, e.type, e.data["level"]) for e in receiver.accepted[1:]] == [
        (f"decision:{published}", "decision.stock.low", 2)
    ]

    # misconfigured targets abort the action with a clear error (and are retried, visibly)
    kinds = erp_twin.decisions.action_types
    call, publish = kinds.get("webhook.call"), kinds.get("event.publish")
    assert call is not None and call.effect is not None and publish is not None and publish.effect is not None
    with pytest.raises(WritebackFailed, match="no event route 'nowhere'; known: ops-bus, ops-hook"):
        publish.effect("p1", publish.check({"route": "nowhere", "subject": material}), STEWARD)
    with pytest.raises(WritebackFailed, match="route ops-bus is not a webhook"):
        call.effect("p1", call.check({"route": "ops-bus", "subject": material}), STEWARD)


def test_scenario_study_runs_once_and_attaches_its_result(erp_twin: Runtime) -> None:
    supplier = str(erp_twin.store.query("MATCH (s:Supplier) RETURN s.uid ORDER BY s.uid LIMIT 1")[0][0])
    parameters: dict[str, object] = {"spec": "supplier_outage_30d.yaml", "replications": 2}
    # the action runs as its proposer: a steward may not run studies, so its approved proposal fails, visibly
    refused = erp_twin.decisions.proposals.require(_execute(erp_twin, "scenario.study", parameters, supplier))
    assert refused.state == "failed" and "ann may not run studies" in (refused.result or "")
    proposal = _execute(erp_twin, "scenario.study", parameters, supplier, ARCHITECT)
    done = erp_twin.decisions.proposals.require(proposal)
    assert done.state == "executed", done.result
    attached = json.loads(done.result or "{}")
    assert attached["name"] == f"supplier-outage-30d (decision {proposal})"
    assert {k["kpi"] for k in attached["kpis"]} >= {"throughput", "fill_rate"}
    stored = erp_twin.results.get(attached["study"])
    assert stored.record.name == attached["name"] and stored.record.replications == 2

    # a retry after a crash finds the stored study instead of running a second one
    study = erp_twin.decisions.action_types.get("scenario.study")
    assert study is not None and study.effect is not None
    again = study.effect(proposal, study.check({"spec": "supplier_outage_30d.yaml", "replications": 2}), STEWARD)
    assert json.loads(again)["study"] == attached["study"]
    assert [s.name for s in erp_twin.results.studies(100)].count(attached["name"]) == 1
    with pytest.raises(ActionError, match="no bundled study 'nope.yaml'"):
        study.effect("p2", study.check({"spec": "nope.yaml"}), STEWARD)
