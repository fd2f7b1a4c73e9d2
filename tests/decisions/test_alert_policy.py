"""An alert about people, read through the policy: the hr role sees it only for people of its own org unit, the
compliance role sees the personal values in its evidence only as keyed digests, a role that may not read people sees
no alert at all; a salary an automation's role may not read is refused at load."""

from __future__ import annotations

import pytest

from api.runtime import Runtime
from governance.decisions.automations import AutomationError
from governance.identity import Subject
from graph.model import Link, Twin

WATCH = """\
automations:
  people-with-email:
    role: admin
    trigger:
      change: {class: Employee, properties: [email], kinds: [create, update]}
    condition: "twin.email.endsWith('@example.com')"
    alert: {severity: info, message: "'email on file: ' + twin.name"}
"""


def test_alert_evidence_follows_row_rules_and_masks(erp_twin: Runtime) -> None:
    runtime = erp_twin
    (runtime.settings.data_dir / "automations.yaml").write_text(WATCH)
    decisions = runtime.decision_runtime(holder="test")
    assert decisions is not None
    decisions.registry.reload()
    decisions.step()  # the cursor starts at the feed's head
    store = runtime.store
    store.upsert_twins(
        [
            Twin("ou:a", "OrgUnit", {"name": "A"}),
            Twin("ou:b", "OrgUnit", {"name": "B"}),
            Twin("hr:e1", "Employee", {"name": "Eve", "employeeId": "E1", "email": "eve@example.com"}),
        ]
    )
    store.upsert_links([Link("worksIn", "hr:e1", "ou:a", {})])
    decisions.step()
    assert decisions.status.firings == 1, decisions.status.errors
    service = runtime.decisions

    [own_unit] = service.list_alerts(Subject(sub="h1", roles=frozenset({"hr"}), org_unit="ou:a"))
    assert own_unit.evidence.twins[0].values["email"] == "eve@example.com"
    assert service.list_alerts(Subject(sub="h2", roles=frozenset({"hr"}), org_unit="ou:b")) == []
    [hashed] = service.list_alerts(Subject(sub="c", roles=frozenset({"compliance"})))
    assert hashed.evidence.twins[0].values["email"].startswith("sha256:")
    assert hashed.evidence.twins[0].masked == {"email": "hash"}
    assert service.list_alerts(Subject(sub="v", roles=frozenset({"viewer"}))) == []


def test_a_field_the_role_may_not_read_is_refused_at_load(erp_twin: Runtime) -> None:
    (erp_twin.settings.data_dir / "automations.yaml").write_text(
        WATCH.replace("role: admin", "role: data_steward").replace(
            "twin.email.endsWith('@example.com')", "twin.salary > 100000.0"
        )
    )
    decisions = erp_twin.decision_runtime(holder="test")
    assert decisions is not None
    with pytest.raises(
        AutomationError,
        match=r":6: automation 'people-with-email': condition: role 'data_steward' "
        r"may not read Employee\.salary",
    ):
        decisions.start()
