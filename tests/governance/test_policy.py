"""The role x class x field matrix of the built-in policy, row rules in scans and traversals, and the policy file's
checks, against a real embedded graph.

Hidden fields in filters, sorts, groups, aggregates and search, and row rules in search, are tested where every read
of them goes through the one read engine: over GraphQL, in tests/api/test_leak_paths.py (and the search by word prefix
in tests/api/test_policy_hardening.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import PolicyError, load_policy, mask_value
from graph.model import Condition, Link, OrderBy, Twin
from graph.store import GraphStore
from ontology.core import load_core

ROLES = ("admin", "architect", "executive", "compliance", "hr", "data_steward", "viewer")


def subject(role: str, org: str | None = None) -> Subject:
    return Subject(sub=f"user-{role}", roles=frozenset({role}), org_unit=org)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphStore]:
    work = tmp_path_factory.mktemp("policy")
    graph = GraphStore.open(f"falkordb+embedded://{work / 'graph'}", load_core())
    graph.upsert_twins(
        [
            Twin("ou-root", "OrgUnit", {"name": "Acme Manufacturing"}),
            Twin("ou-a", "OrgUnit", {"name": "Plant A"}),
            Twin("ou-a-weld", "OrgUnit", {"name": "Welding A"}),
            Twin("ou-b", "OrgUnit", {"name": "Plant B"}),
            Twin(
                "e-ann",
                "Employee",
                {
                    "name": "Ann Archer",
                    "employeeId": "E1",
                    "email": "ann.archer@acme.test",
                    "salary": 71000.0,
                    "jobTitle": "Welder",
                },
            ),
            Twin(
                "e-bo",
                "Employee",
                {
                    "name": "Bo Berg",
                    "employeeId": "E2",
                    "email": "bo.berg@acme.test",
                    "salary": 82000.0,
                    "jobTitle": "Supervisor",
                },
            ),
            Twin(
                "m-robot",
                "Machine",
                {
                    "name": "Weld robot",
                    "serialNumber": "SN-1",
                    "acquisitionCost": 250000.0,
                    "description": "six-axis welding robot",
                },
            ),
        ]
    )
    graph.upsert_links(
        [
            Link("partOf", "ou-a", "ou-root"),
            Link("partOf", "ou-b", "ou-root"),
            Link("partOf", "ou-a-weld", "ou-a"),
            Link("worksIn", "e-ann", "ou-a-weld"),
            Link("worksIn", "e-bo", "ou-b"),
            Link("operates", "e-ann", "m-robot"),
        ]
    )
    yield graph
    graph.close()


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(load_core())


# What each role sees of Ann's record: field -> expected shown value (None = left out).
ANN = {"name": "Ann Archer", "email": "ann.archer@acme.test", "salary": 71000.0, "jobTitle": "Welder"}
EXPECTED_ANN: dict[str, dict[str, object] | None] = {
    "admin": ANN,
    "architect": {"name": "Ann Archer", "email": "***", "salary": "***", "jobTitle": "Welder"},
    "executive": {"name": "Ann Archer", "email": "***", "salary": 71000.0, "jobTitle": "Welder"},
    "compliance": {
        "name": "Ann Archer",
        "email": mask_value("ann.archer@acme.test", "hash"),
        "salary": 71000.0,
        "jobTitle": "Welder",
    },
    "hr": ANN,  # Ann works in a unit under Plant A, the hr partner's org unit
    "data_steward": {"name": "Ann Archer", "email": "a***st", "salary": "***", "jobTitle": "Welder"},
    "viewer": None,  # people are not visible to viewers at all
}
EXPECTED_ROBOT: dict[str, dict[str, object] | None] = {
    "admin": {"name": "Weld robot", "serialNumber": "SN-1", "acquisitionCost": 250000.0},
    "architect": {"name": "Weld robot", "serialNumber": "SN-1", "acquisitionCost": "***"},
    "executive": {"name": "Weld robot", "serialNumber": "SN-1", "acquisitionCost": 250000.0},
    "compliance": {"name": "Weld robot", "serialNumber": "SN-1", "acquisitionCost": 250000.0},
    "hr": None,
    "data_steward": {"name": "Weld robot", "serialNumber": "SN-1", "acquisitionCost": "***"},
    "viewer": {"name": "Weld robot"},  # only Public fields
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("uid", "expected"), [("e-ann", EXPECTED_ANN), ("m-robot", EXPECTED_ROBOT)])
def test_role_class_field_matrix(store: GraphStore, policy, role: str, uid: str, expected: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    who = subject(role, org="ou-a")
    record = store.get(uid, policy.read_scope(who))
    if expected[role] is None:
        assert record is None
        assert not policy.decide(
            who, "read", record.cls if record else ("Employee" if uid == "e-ann" else "Machine")
        ).allowed
        return
    assert record is not None
    seen = policy.mask(who, record)
    shown = {k: v for k, v in seen.properties.items() if k in expected[role] or k in expected["admin"]}
    shown.pop("employeeId", None)
    assert {k: v for k, v in shown.items() if k in expected["admin"]} == expected[role]
    for field, value in expected["admin"].items():  # type: ignore[union-attr]
        if expected[role].get(field) != value:  # type: ignore[union-attr]
            assert field in seen.masked  # every masked field is reported as masked


def test_hr_reads_people_only_in_their_org_unit_subtree(store: GraphStore, policy) -> None:  # type: ignore[no-untyped-def]
    plant_a = policy.read_scope(subject("hr", org="ou-a"))
    assert {t.uid for t in store.find("Employee", scope=plant_a).items} == {"e-ann"}
    assert store.get("e-bo", plant_a) is None
    plant_b = policy.read_scope(subject("hr", org="ou-b"))
    assert {t.uid for t in store.find("Person", scope=plant_b).items} == {"e-bo"}
    nowhere = policy.read_scope(subject("hr"))  # no org unit in the token: no people at all
    assert store.find("Employee", scope=nowhere).total == 0
    assert store.find("OrgUnit", scope=nowhere).total == 4
    assert store.aggregate("Employee", [("count", None)], scope=plant_a)[0].values["count"] == 1
    assert {n.uid for n in store.neighbours("m-robot", scope=plant_b).nodes} == set()  # hr cannot see machines


def test_traversals_skip_what_the_role_cannot_see(store: GraphStore, policy) -> None:  # type: ignore[no-untyped-def]
    viewer = policy.read_scope(subject("viewer"))
    assert {n.uid for n in store.neighbours("m-robot", depth=2, scope=viewer).nodes} == {"m-robot"}
    architect = policy.read_scope(subject("architect"))
    assert {n.uid for n in store.neighbours("m-robot", depth=2, scope=architect).nodes} == {
        "m-robot",
        "e-ann",
        "ou-a-weld",
    }


@pytest.mark.parametrize(
    ("role", "granted"),
    [
        ("admin", {"audit.read", "audit.verify", "erase", "graph.cypher", "connector.run", "scenario.run"}),
        ("architect", {"graph.cypher", "scenario.run", "lineage.read"}),
        ("executive", {"scenario.run", "scenario.read"}),
        ("compliance", {"audit.read", "audit.verify", "lineage.read", "erase"}),
        ("hr", {"erase", "history.read"}),
        ("data_steward", {"connector.run", "lineage.read"}),
        ("viewer", set()),
    ],
)
def test_operations_default_deny(policy, role: str, granted: set[str]) -> None:  # type: ignore[no-untyped-def]
    who = subject(role)
    from governance.policy import OPERATIONS

    allowed = {op for op in OPERATIONS if policy.decide(who, "operation", op).allowed}
    assert granted <= allowed
    if role != "admin":
        assert "audit.read" not in allowed or role == "compliance"
    if role == "viewer":
        assert allowed == set()
        with pytest.raises(PolicyDenied):
            policy.require(who, "write", "Machine")


def test_writes_follow_the_policy(policy) -> None:  # type: ignore[no-untyped-def]
    assert policy.decide(subject("hr"), "write", "Employee").allowed
    assert not policy.decide(subject("hr"), "write", "Machine").allowed
    assert not policy.decide(subject("executive"), "write", "Machine").allowed
    assert not policy.decide(Subject("nobody", frozenset({"intern"})), "read", "Machine").allowed
    assert not policy.decide(subject("admin"), "read", "Spaceship").allowed


def test_several_roles_get_the_union(store: GraphStore, policy) -> None:  # type: ignore[no-untyped-def]
    both = Subject("both", frozenset({"viewer", "executive"}))
    record = store.get("e-ann", policy.read_scope(both))
    assert record is not None
    assert policy.mask(both, record).properties["salary"] == 71000.0


def test_bad_policies_are_refused_with_the_reason(tmp_path: Path) -> None:
    cases = {
        "version: 1\nroles: {x: {read: [Spaceship]}}": "unknown class 'Spaceship'",
        "version: 1\nroles: {x: {fields: {Secret: redact}}}": "unknown classification 'Secret'",
        "version: 1\nroles: {x: {operations: [launch]}}": "unknown operations",
        "version: 1\nroles: {x: {fields: {PII: scramble}}}": "PII",
        "version: 1\nroles: {x: {rows: [{classes: [Person], predicate: 'true'}]}}": "{n}",
        "roles: [": "not valid YAML",
    }
    for text, message in cases.items():
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        with pytest.raises(PolicyError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
            load_policy(load_core(), path)


@pytest.mark.parametrize("org", ["ou-a", "ou-b", "ou-root", "ou-a-weld"])
def test_scans_evaluate_the_hr_rule_as_a_join_with_the_same_answers(store: GraphStore, policy, org: str) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    joined = policy.read_scope(subject("hr", org=org))
    assert joined.joins and joined.joins[0].via == "worksIn"
    predicate_only = replace(joined, joins=())
    twice = replace(joined, joins=joined.joins * 2)  # later joins need the member lists the earlier ones carry
    for cls in ("Employee", "Person", "Entity", "OrgUnit"):
        for offset in (0, 1):
            b = store.find(cls, order_by=[OrderBy("name")], limit=2, offset=offset, scope=predicate_only)
            for scope in (joined, twice):
                a = store.find(cls, order_by=[OrderBy("name")], limit=2, offset=offset, scope=scope)
                assert (a.total, [t.uid for t in a.items]) == (b.total, [t.uid for t in b.items])
        expected = store.aggregate(cls, [("count", None)], scope=predicate_only)
        assert store.aggregate(cls, [("count", None)], scope=joined) == expected
        assert store.aggregate(cls, [("count", None)], scope=twice) == expected
    assert (
        store.find("Employee", [Condition("jobTitle", "eq", "Welder")], scope=joined).total
        == store.find("Employee", [Condition("jobTitle", "eq", "Welder")], scope=predicate_only).total
    )


def test_a_scan_rule_must_name_its_anchor_and_relationship(tmp_path: Path) -> None:
    base = "version: 1\nroles: {x: {read: [Person], rows: [{classes: [Person], predicate: '({n})-[:worksIn]->()', "
    cases = {
        base + "scan: {via: worksIn, anchor: '(u:OrgUnit)'}}]}}": "scope_member",
        base + "scan: {via: teleports, anchor: '(scope_member:OrgUnit)'}}]}}": "teleports",
    }
    for text, message in cases.items():
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        with pytest.raises(PolicyError, match=message):
            load_policy(load_core(), path)
