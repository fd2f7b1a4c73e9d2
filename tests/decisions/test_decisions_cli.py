"""`twin decisions list | show | approve | reject` as the local operator: four eyes hold on the command line too
(the operator approving twice is refused, naming why), a rejection needs a reason, and each decision is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.runtime import Runtime
from api.settings import get_settings
from governance.identity import Subject

runner = CliRunner()
STEWARD = Subject(sub="ann", roles=frozenset({"data_steward"}))


@pytest.fixture
def cli_env(erp_twin: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    settings = erp_twin.settings
    monkeypatch.setenv("TWIN_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TWIN_GRAPH_URL", settings.resolved_graph_url)
    monkeypatch.setenv("TWIN_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("TWIN_GRAPH_FSYNC", "no")
    get_settings.cache_clear()
    yield erp_twin
    get_settings.cache_clear()


def _proposal(runtime: Runtime) -> str:
    supplier, material = runtime.store.query(
        "MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN s.uid, m.uid ORDER BY m.uid LIMIT 1"
    )[0]
    return runtime.decisions.propose(
        STEWARD,
        "erp.purchase_order",
        {"material": material, "supplier": supplier, "quantity": 5.0},
        material,
        "needs more",
    ).id


def test_list_show_approve_and_reject(cli_env: Runtime) -> None:
    first, second = _proposal(cli_env), None
    listed = runner.invoke(app, ["decisions", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [p["id"] for p in json.loads(listed.output)["proposals"]] == [first]
    shown = runner.invoke(app, ["decisions", "show", first])
    assert json.loads(shown.output)["parameters"]["quantity"] == 5.0

    approved = runner.invoke(app, ["decisions", "approve", first, "--reason", "low stock"])
    assert approved.exit_code == 0 and "proposed" in approved.output  # one of two approvals
    again = runner.invoke(app, ["decisions", "approve", first])
    assert again.exit_code == 1 and "approved it already" in again.output

    cli_env.decisions.proposals.decide(first, "rejected")  # free the twin for a second proposal
    second = _proposal(cli_env)
    no_reason = runner.invoke(app, ["decisions", "reject", second, "--reason", " "])
    assert no_reason.exit_code == 1 and "with a reason" in no_reason.output
    rejected = runner.invoke(app, ["decisions", "reject", second, "--reason", "ordered by phone"])
    assert rejected.exit_code == 0 and "rejected" in rejected.output
    records = [r for r in cli_env.audit.query(limit=1000) if r.operation == "decision.rejected"]
    assert [json.loads(r.detail)["reason"] for r in records if r.decision == "allow"] == ["ordered by phone"]


def test_twin_run_refuses_a_wrong_automations_file(cli_env: Runtime) -> None:
    path = cli_env.settings.data_dir / "automations.yaml"
    path.write_text(path.read_text().replace("type: erp.purchase_order", "type: erp.purchase"))
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 1
    expected = f"{path}:11: automation 'reorder-materials': action.type: unknown action type 'erp.purchase'"
    assert "".join(expected.split()) in "".join(result.output.split())  # the console wraps long lines


def test_serve_refuses_to_start_on_a_broken_automations_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "twin"
    data.mkdir()
    (data / "automations.yaml").write_text(
        "automations:\n  a:\n    role: admin\n    trigger: {change: {class: Gizmo}}\n"
        "    condition: 'true'\n    alert: {severity: info}\n"
    )
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    try:
        refused = runner.invoke(app, ["serve", "--port", "1"])
    finally:
        get_settings.cache_clear()
    message = "".join(refused.output.split())  # the console wraps long lines
    assert (
        refused.exit_code == 1
        and "automations.yaml:4:automation'a':trigger.change.class:unknownclass'Gizmo'" in message
    )
    assert "Traceback" not in refused.output


def test_ack_snooze_and_resolve_an_alert(cli_env: Runtime) -> None:
    from governance.decisions.evidence import Evidence

    material = cli_env.store.query("MATCH (m:Material) RETURN m.uid ORDER BY m.uid LIMIT 1")[0][0]
    alert, _ = cli_env.decisions.alerts.raise_alert(
        automation="reorder-materials",
        rule_version="v1",
        severity="warning",
        key=f"reorder:{material}",
        twin_uid=material,
        twin_class="Material",
        message="low stock",
        evidence=Evidence(),
        actor="automation:reorder-materials",
    )
    acked = runner.invoke(app, ["decisions", "ack", alert.id, "--reason", "looking"])
    assert acked.exit_code == 0 and f"alert {alert.id}: acknowledged" in _flat(acked.output)
    again = runner.invoke(app, ["decisions", "ack", alert.id])
    assert again.exit_code == 1 and "cannot be acknowledged" in _flat(again.output)
    bad = runner.invoke(app, ["decisions", "snooze", alert.id, "--until", "tomorrow"])
    assert bad.exit_code == 1 and "not an ISO 8601 date-time" in _flat(bad.output)
    past = runner.invoke(app, ["decisions", "snooze", alert.id, "--until", "2020-01-01T00:00"])
    assert past.exit_code == 1 and "future" in _flat(past.output)
    snoozed = runner.invoke(app, ["decisions", "snooze", alert.id, "--until", "2999-01-01T00:00"])
    assert snoozed.exit_code == 0 and "snoozed until 2999-01-01 00:00" in _flat(snoozed.output)
    resolved = runner.invoke(app, ["decisions", "resolve", alert.id, "--reason", "restocked"])
    assert resolved.exit_code == 0 and "resolved" in _flat(resolved.output)
    listed = json.loads(runner.invoke(app, ["decisions", "list", "--json", "--state", "resolved"]).output)
    assert [a["id"] for a in listed["alerts"]] == [alert.id]
    operations = [
        (r.operation, r.decision) for r in cli_env.audit.query(limit=1000) if r.operation.startswith("alert.")
    ]
    assert ("alert.acknowledge", "allow") in operations and ("alert.acknowledge", "deny") in operations
    assert ("alert.snooze", "allow") in operations and ("alert.resolve", "allow") in operations


def _flat(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


def test_automations_managed_from_the_command_line(cli_env: Runtime, tmp_path: Path) -> None:
    path = cli_env.settings.data_dir / "automations.yaml"
    spec = tmp_path / "hot.yaml"
    spec.write_text(
        "role: data_steward\n"
        "trigger: {change: {class: Material, properties: [stockLevel]}}\n"
        'condition: "twin.stockLevel > 1000.0"\n'
        "alert: {severity: critical}\n"
    )
    added = runner.invoke(app, ["decisions", "automations", "add", "hot", "--definition", f"@{spec}"])
    assert added.exit_code == 0 and "automation hot: created (- ->" in added.output, added.output
    again = runner.invoke(app, ["decisions", "automations", "add", "hot", "--definition", f"@{spec}"])
    assert again.exit_code == 1 and "'hot' exists already" in again.output
    broken = runner.invoke(
        app, ["decisions", "automations", "update", "hot", "--set", '{"action": {"type": "erp.teleport"}}']
    )
    assert broken.exit_code == 1 and "unknown action type 'erp.teleport'" in broken.output
    assert runner.invoke(app, ["decisions", "automations", "disable", "hot"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["decisions", "automations", "list", "--json"]).output)
    assert [(r["name"], r["enabled"]) for r in listed] == [("reorder-materials", True), ("hot", False)]
    removed = runner.invoke(app, ["decisions", "automations", "remove", "hot"])
    assert removed.exit_code == 0 and "deleted" in removed.output
    assert "hot" not in path.read_text()
