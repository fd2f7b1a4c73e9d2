"""Managing automations (governance/decisions/management.py): create, update, enable, disable and delete through the
policy operation `automation.manage`, each change checked whole (CEL compiles, action type known, names unique) and
audited, a refused change leaving the file and the running set untouched, and a change in force in the running
decisions runtime at its next turn, without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from api.runtime import Runtime
from connectors.erp_writeback import purchase_order_action
from governance.audit import AuditLog
from governance.decisions.actions import default_action_types
from governance.decisions.management import AutomationChangeError, AutomationManager
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import load_policy
from graph.model import Twin
from ontology.core import load_core
from tests.decisions.conftest import REORDER

ONTOLOGY = load_core()
POLICY = load_policy(ONTOLOGY)
TYPES = default_action_types([purchase_order_action("sqlite:///unused.sqlite")])
STEWARD = Subject(sub="ann", roles=frozenset({"data_steward"}))
VIEWER = Subject(sub="vic", roles=frozenset({"viewer"}))
ADMIN = Subject(sub="root", roles=frozenset({"admin"}))
BIG_STOCK = {
    "role": "data_steward",
    "trigger": {"change": {"class": "Material", "properties": ["stockLevel"], "kinds": ["update"]}},
    "condition": "twin.stockLevel > 1000.0",
    "alert": {"severity": "critical", "key": "'big:' + twin.uid", "message": "'too much: ' + twin.name"},
}


def _manager(tmp_path: Path, text: str | None = REORDER) -> tuple[AutomationManager, AuditLog]:
    path = tmp_path / "automations.yaml"
    if text is not None:
        path.write_text(text)
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    return AutomationManager(path, ONTOLOGY, POLICY, TYPES, audit), audit


def _operations(audit: AuditLog) -> list[tuple[str, str]]:
    return [(r.operation, str(r.decision)) for r in audit.query(limit=100)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({**BIG_STOCK, "condition": "twin.stockLevel > > 1000.0"}, "automation 'big-stock': condition: expression"),
        ({**BIG_STOCK, "condition": "twin.stockLevle > 1.0"}, "unknown property 'stockLevle' of Material"),
        ({**BIG_STOCK, "action": {"type": "erp.teleport"}}, "unknown action type 'erp.teleport'"),
        (
            {**BIG_STOCK, "trigger": {"change": {"class": "Materiel"}}},
            "automation 'big-stock': trigger.change.class: unknown class 'Materiel'",
        ),
        ({**BIG_STOCK, "condition": "anomaly.score > 3.0"}, "reads `anomaly`, which only an `anomaly:` trigger binds"),
        ({**BIG_STOCK, "trigger": {}}, "a trigger is exactly one of"),
    ],
)
def test_a_definition_that_does_not_check_is_refused_and_nothing_changes(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    manager, audit = _manager(tmp_path)
    before = manager.path.read_bytes()
    with pytest.raises(AutomationChangeError) as refused:
        manager.create(STEWARD, "big-stock", change)
    assert expected in str(refused.value), str(refused.value)
    assert manager.path.read_bytes() == before
    assert _operations(audit) == [("automation.create", "deny")]
    [record] = audit.query(limit=1)
    assert expected.split(": ")[-1][:20] in record.detail


def test_names_are_unique_and_well_formed(tmp_path: Path) -> None:
    manager, _ = _manager(tmp_path)
    with pytest.raises(AutomationChangeError, match="'reorder-materials' exists already"):
        manager.create(STEWARD, "reorder-materials", BIG_STOCK)
    with pytest.raises(AutomationChangeError, match="must be 1-128 letters"):
        manager.create(STEWARD, "big stock!", BIG_STOCK)
    with pytest.raises(AutomationChangeError, match="no automation called 'nothing'"):
        manager.update(STEWARD, "nothing", {"condition": "true"})
    with pytest.raises(AutomationChangeError, match="no automation called 'nothing'"):
        manager.delete(STEWARD, "nothing")
    # a file written by hand with one name twice is refused at load, naming both lines (YAML keeps the last)
    twice = REORDER + REORDER.split("automations:\n", 1)[1]
    manager.path.write_text(twice)
    with pytest.raises(
        AutomationChangeError,
        match=r"automations.yaml:16: automation 'reorder-materials' is defined twice \(first on line 2\)",
    ):
        manager.current()


def test_only_roles_with_the_operation_manage_and_only_as_their_own_roles(tmp_path: Path) -> None:
    manager, audit = _manager(tmp_path)
    with pytest.raises(PolicyDenied, match="automation.manage"):
        manager.create(VIEWER, "big-stock", BIG_STOCK)
    with pytest.raises(PolicyDenied, match="acts as role 'executive', which ann does not hold"):
        manager.create(STEWARD, "big-stock", {**BIG_STOCK, "role": "executive"})
    with pytest.raises(PolicyDenied, match="automation.manage"):
        manager.set_enabled(VIEWER, "reorder-materials", False)
    assert [r.name for r in manager.current().automations] == ["reorder-materials"]
    # a role with every operation may give any role
    done = manager.create(ADMIN, "big-stock", {**BIG_STOCK, "role": "executive"})
    assert done.automation is not None and done.automation.role == "executive"
    with pytest.raises(PolicyDenied, match="acts as role 'executive'"):
        manager.delete(STEWARD, "big-stock")  # nor delete what it could not have created
    assert _operations(audit) == [
        ("automation.create", "deny"),
        ("automation.create", "deny"),
        ("automation.disable", "deny"),
        ("automation.create", "allow"),
        ("automation.delete", "deny"),
    ]


def test_a_file_that_does_not_exist_yet_is_created(tmp_path: Path) -> None:
    manager, _ = _manager(tmp_path, None)
    done = manager.create(STEWARD, "big-stock", BIG_STOCK)
    assert done.version_before is None and done.version_after == done.automation.version  # type: ignore[union-attr]
    document = yaml.safe_load(manager.path.read_text())
    assert document["automations"]["big-stock"]["condition"] == "twin.stockLevel > 1000.0"


def _material(runtime: Runtime, skip: int) -> str:
    [[uid]] = runtime.store.query(
        f"MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN DISTINCT m.uid ORDER BY m.uid SKIP {skip} LIMIT 1"
    )
    return str(uid)


def _stock(runtime: Runtime, uid: str, level: float) -> None:
    runtime.store.upsert_twins([Twin(uid, "Material", {"stockLevel": level})], actor="test", source="test")


def test_changes_take_effect_in_the_running_runtime(erp_twin: Runtime) -> None:
    decisions = erp_twin.decision_runtime(holder="manage-test")
    assert decisions is not None
    decisions.start()
    decisions.stop()  # driven step by step
    manager = AutomationManager(
        decisions.registry.path,
        erp_twin.ontology,
        erp_twin.policy,
        erp_twin.decisions.action_types,
        erp_twin.audit,
        decisions.registry,
    )
    service = erp_twin.decisions

    disabled = manager.set_enabled(STEWARD, "reorder-materials", False)
    assert disabled.automation is not None and not disabled.automation.enabled
    assert disabled.version_before != disabled.version_after
    _stock(erp_twin, _material(erp_twin, 0), 2.0)
    decisions.step()
    assert decisions.status.evaluated == 0 and service.list_alerts(STEWARD) == []

    manager.set_enabled(STEWARD, "reorder-materials", True)
    _stock(erp_twin, _material(erp_twin, 0), 1.0)
    decisions.step()
    assert [a.automation for a in service.list_alerts(STEWARD)] == ["reorder-materials"]

    created = manager.create(STEWARD, "big-stock", BIG_STOCK)
    assert [r.name for r in decisions.registry.current.automations] == ["reorder-materials", "big-stock"]
    big = _material(erp_twin, 1)
    _stock(erp_twin, big, 5000.0)
    decisions.step()
    [alert] = [a for a in service.list_alerts(STEWARD) if a.automation == "big-stock"]
    assert alert.twin_uid == big and alert.severity == "critical" and alert.rule_version == created.version_after

    updated = manager.update(STEWARD, "big-stock", {"condition": "twin.stockLevel > 100000.0", "description": None})
    assert updated.version_after != created.version_after
    _stock(erp_twin, _material(erp_twin, 2), 6000.0)
    decisions.step()
    assert [a.twin_uid for a in service.list_alerts(STEWARD) if a.automation == "big-stock"] == [big]

    deleted = manager.delete(STEWARD, "big-stock")
    assert deleted.automation is None and deleted.version_before == updated.version_after
    assert [r.name for r in decisions.registry.current.automations] == ["reorder-materials"]
    changes = [
        (r.operation, str(r.decision))
        for r in erp_twin.audit.query(limit=1000)
        if r.operation.startswith("automation.")
    ]
    assert changes == [
        ("automation.disable", "allow"),
        ("automation.enable", "allow"),
        ("automation.create", "allow"),
        ("automation.update", "allow"),
        ("automation.delete", "allow"),
    ]
