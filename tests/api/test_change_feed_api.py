"""`changes(after:, first:)`: the change feed through the one policy gate — the same rows and masks as a read of
the twins, for every role (the gate event routes and subscriptions use too)."""

from __future__ import annotations

from typing import Any

import pytest

from governance.change_view import ChangeGate
from governance.identity import Subject
from ontology.model import CLASSIFICATIONS
from tests.api.conftest import ApiHarness

QUERY = (
    "query($a: Int, $f: Int) { changes(after: $a, first: $f) { cursor head changes { seq uid kind op className "
    "linkType target after } } }"
)


def _all_changes(api: ApiHarness, role: str, org_unit: str | None = None) -> list[dict[str, Any]]:
    changes, cursor = [], 0
    while True:
        status, body = api.gql(QUERY, {"a": cursor, "f": 500}, role=role, org_unit=org_unit)
        assert status == 200 and "errors" not in body, body
        page = body["data"]["changes"]
        changes += page["changes"]
        if page["cursor"] == page["head"]:
            return changes
        cursor = page["cursor"]


@pytest.mark.parametrize("role", ["admin", "architect", "compliance", "data_steward"])
def test_twin_changes_show_what_a_read_of_the_same_twin_shows(api: ApiHarness, role: str) -> None:
    changes = [c for c in _all_changes(api, role) if c["kind"] == "twin" and c["className"] == "Employee"]
    created = {c["uid"]: c["after"] for c in changes if c["op"] == "create"}
    assert len(created) >= 24
    for uid in ("emp-03", "emp-10", "emp-21"):  # the first history entry of the same twin, masked for the same role
        history = api.data("query($u: ID!) { history(uid: $u) { kind op after } }", {"u": uid}, role=role)["history"]
        assert created[uid] == next(h["after"] for h in history if h["kind"] == "twin" and h["op"] == "create")


def test_no_change_carries_an_employee_field_the_executive_may_not_read(api: ApiHarness) -> None:
    policy = api.runtime.policy
    executive = Subject(sub="exec", roles=frozenset({"executive"}))
    employee = api.runtime.ontology.properties("Employee")
    hidden = {name for name in employee if policy.field_mode(executive, "Employee", name) != "show"}
    assert hidden  # PII: email, phone, birth date ...
    gate = ChangeGate(policy, executive, api.runtime.store)
    views = gate.view(api.runtime.store.feed.read(0, 10_000))
    employees = [v for v in views if v.change.cls == "Employee"]
    assert len(employees) >= 24
    stored = {t.uid: t.properties for t in api.runtime.store.get_many([v.change.uid for v in employees]).values()}
    for view in employees:
        for name, value in (view.change.after or {}).items():
            if name in hidden:
                assert value != stored.get(view.change.uid, {}).get(name) or value is None, (view.change.uid, name)
                assert view.masked[name] == policy.field_mode(executive, "Employee", name)
    assert {c: policy.relationship_field_mode(executive, c) for c in CLASSIFICATIONS}["PII"] != "show"


def test_hr_sees_the_changes_of_its_units_people_only(api: ApiHarness) -> None:
    changes = _all_changes(api, "hr", org_unit="u-eng")
    people = {c["uid"] for c in changes if c["kind"] == "twin" and c["className"] == "Employee"}
    listed = api.data("{ employees(first: 1000) { nodes { uid } } }", role="hr", org_unit="u-eng")["employees"]
    assert people == {n["uid"] for n in listed["nodes"]} and 0 < len(people) < 24
    for link in (c for c in changes if c["kind"] == "link"):  # both ends visible to hr
        assert link["uid"] in people | {"u-eng", "u-eng-tools", "u-root", "u-sales"} or link["target"] in people
    assert all(c["className"] != "Machine" for c in changes)  # hr reads people, roles, skills, units


def test_the_feed_is_governed_and_bad_cursors_are_bad_input(api: ApiHarness) -> None:
    status, body = api.gql(QUERY, {"a": 0, "f": 5}, role="viewer")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    head = api.data(QUERY, {"a": 0, "f": 1})["changes"]["head"]
    for after, first in ((head + 1, 5), (-1, 5), (0, 0)):
        status, body = api.gql(QUERY, {"a": after, "f": first})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    records = [r for r in api.audit_records() if "changes" in r.operation]
    assert {str(r.decision) for r in records} >= {"allow", "deny"}
