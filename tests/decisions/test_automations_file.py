"""automations.yaml is checked at load: each error names the file, the line and the term, and a reload that fails
keeps the previously loaded set running (never half a set); rules are indexed by (class, property)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.erp_writeback import purchase_order_action
from governance.decisions.actions import default_action_types
from governance.decisions.automations import AutomationError, AutomationRegistry, load_automations
from governance.policy import load_policy
from ontology.core import load_core
from tests.decisions.conftest import REORDER

ONTOLOGY = load_core()
POLICY = load_policy(ONTOLOGY)
TYPES = default_action_types([purchase_order_action("sqlite:///unused.sqlite")])


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "automations.yaml"
    path.write_text(text)
    return load_automations(path, ONTOLOGY, POLICY, TYPES)


@pytest.mark.parametrize(
    ("wrong", "right", "line", "term"),
    [
        ('"twin.stockLevel < 5.0 && neighbours', '"twin.stockLevel < && neighbours', 8, "expression error: line 1"),
        ("{class: Material, properties", "{class: Materiel, properties", 6, "unknown class 'Materiel'"),
        ("properties: [stockLevel]", "properties: [stockLevle]", 6, "unknown property 'stockLevle'"),
        ('"twin.stockLevel < 5.0', '"twin.stock < 5.0', 8, "unknown property 'stock'"),
        ("type: erp.purchase_order", "type: erp.purchase_ordre", 11, "unknown action type 'erp.purchase_ordre'"),
        ("via: [supplies]", "via: [suplies]", 7, "unknown relationship 'suplies'"),
        ("role: data_steward", "role: hr", 6, "role 'hr' may not read Material"),
    ],
)
def test_errors_name_file_line_and_term(tmp_path: Path, wrong: str, right: str, line: int, term: str) -> None:
    assert wrong in REORDER
    with pytest.raises(AutomationError) as caught:
        _load(tmp_path, REORDER.replace(wrong, right))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'automations.yaml'}:{line}: automation 'reorder-materials'"), message
    assert term in message


def test_automatic_approval_only_where_the_policy_allows_it(tmp_path: Path) -> None:
    with pytest.raises(AutomationError, match=r":12: .*action\.approval: the policy does not allow"):
        _load(
            tmp_path, REORDER.replace("type: erp.purchase_order", "type: erp.purchase_order\n      approval: automatic")
        )


def test_a_failed_reload_keeps_the_previous_set(tmp_path: Path) -> None:
    path = tmp_path / "automations.yaml"
    path.write_text(REORDER)
    registry = AutomationRegistry(path, ONTOLOGY, POLICY, TYPES)
    first = registry.reload()
    assert [r.name for r in first.automations] == ["reorder-materials"]
    second_rule = REORDER.replace("reorder-materials:", "second:", 1).replace("automations:\n", "")
    path.write_text(REORDER + second_rule.replace("twin.stockLevel <", "twin.stockLevel <<"))
    with pytest.raises(AutomationError):
        registry.reload()
    assert registry.current is first and registry.last_error
    path.write_text(REORDER + second_rule)
    assert [r.name for r in registry.reload().automations] == ["reorder-materials", "second"]


def test_a_change_evaluates_only_the_rules_watching_it(tmp_path: Path) -> None:
    rules = _load(
        tmp_path,
        REORDER
        + """\
  any-material-change:
    role: admin
    trigger: {change: {class: Item}}
    condition: "true"
    alert: {severity: info}
  machine-schedule:
    role: admin
    trigger: {schedule: {class: Machine, every: 15m}}
    condition: "twin.uid != ''"
    alert: {severity: info}
""",
    )
    names = lambda cls, op, changed: sorted(r.name for r in rules.watching(cls, op, changed))  # noqa: E731
    assert names("Material", "update", ["stockLevel"]) == ["any-material-change", "reorder-materials"]
    assert names("Material", "update", ["name"]) == ["any-material-change"]
    assert names("Material", "create", ["stockLevel"]) == ["any-material-change"]  # reorder watches updates only
    assert names("Supplier", "update", ["stockLevel"]) == []
    assert [r.name for r in rules.scheduled()] == ["machine-schedule"]
    assert rules.get("machine-schedule").every_seconds == 900


def test_policy_approval_rules_are_checked() -> None:
    from governance.policy import Policy, PolicyError
    from ontology.safe_yaml import load_yaml

    spec = load_yaml((Path(__file__).resolve().parents[2] / "governance/policies/default.yaml").read_text(), "p")
    assert POLICY.approvals["erp.purchase_order"].approvals == 2
    assert POLICY.approvals["twin.edit"].approvers == {"admin", "data_steward"}
    spec["actions"]["twin.edit"]["approvers"] = ["admin", "auditor"]
    with pytest.raises(PolicyError, match=r"action twin.edit: unknown approver roles \['auditor'\]"):
        Policy(spec, ONTOLOGY, "p")
    spec["actions"]["twin.edit"] = {"approvers": []}
    with pytest.raises(PolicyError, match="needs approvers or automatic"):
        Policy(spec, ONTOLOGY, "p")
    spec["actions"]["twin.edit"] = {"approvers": ["admin"], "approvals": 3}
    with pytest.raises(PolicyError, match="approvals"):
        Policy(spec, ONTOLOGY, "p")
