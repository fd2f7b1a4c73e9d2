"""Twin lifecycle: transitions decided by the policy and audited, bad ones refused with nothing changed, retired twins
left out of a caller's reads (lists, search, aggregates, impact, slices) unless asked for, and kept in history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from governance.audit import AuditLog
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.lifecycle import transition_twin
from governance.policy import load_policy
from graph.errors import TwinNotFound
from graph.lifecycle import LifecycleError
from graph.model import Link, Twin
from graph.plan import AggregateRead, ListRead, Projection, SearchRead, Window
from graph.store import GraphStore
from ontology.core import load_core

ARCHITECT = Subject("ada", frozenset({"architect"}))
VIEWER = Subject("vic", frozenset({"viewer"}))
HR = Subject("hal", frozenset({"hr"}), org_unit="ou-1")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[GraphStore, AuditLog]]:
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    ontology = load_core()
    store = GraphStore.open(f"falkordb+embedded://{tmp_path / 'graph'}", ontology, history_url=db)
    try:
        _populate(store)
        yield store, AuditLog(db)
    finally:
        store.close()


def _populate(store: GraphStore) -> None:
    store.upsert_twins(
        [
            Twin("pump-1", "Asset", {"name": "Pump one"}),
            Twin("pump-2", "Asset", {"name": "Pump two", "status": "operational"}),
            Twin("pump-3", "Asset", {"name": "Pump three", "status": "operational"}),
            Twin("ou-1", "OrgUnit", {"name": "Works"}),
        ]
    )
    store.upsert_links([Link("dependsOn", "pump-2", "pump-1"), Link("dependsOn", "pump-3", "pump-1")])


def _policy(store: GraphStore):  # type: ignore[no-untyped-def]
    return load_policy(store.ontology)


def test_a_retired_twin_leaves_every_scoped_read_but_stays_in_history(env) -> None:  # type: ignore[no-untyped-def]
    store, audit = env
    policy = _policy(store)
    moved = transition_twin("pump-3", "retired", store=store, policy=policy, audit=audit, subject=ARCHITECT)
    assert (moved.before, moved.after, moved.cls) == ("active", "retired", "Asset")
    scope = policy.read_scope(ARCHITECT)
    everything = scope.including_retired()

    def listed(s):  # type: ignore[no-untyped-def]
        rows = store.engine.page(ListRead("Asset", Projection({"name"}), Window(0, 10), total=True), s)
        return sorted(row.uid for row in rows.items), rows.total

    assert listed(scope) == (["pump-1", "pump-2"], 2)
    assert listed(everything) == (["pump-1", "pump-2", "pump-3"], 3)
    assert store.get("pump-3", scope) is None and store.get("pump-3", everything) is not None
    assert [hit.node.uid for hit in store.engine.search(SearchRead("three", Projection()), scope)] == []
    assert [hit.node.uid for hit in store.engine.search(SearchRead("three", Projection()), everything)] == ["pump-3"]
    (count,) = store.engine.aggregate(AggregateRead("Asset", (("count", None),)), scope)
    assert count.values == {"count": 2}
    assert sorted(hit.twin.uid for hit in store.impact("pump-1", 3, scope)) == ["pump-2"]
    assert sorted(hit.twin.uid for hit in store.impact("pump-1", 3, everything)) == ["pump-2", "pump-3"]
    # the slices of what-if studies read through twins_of / links_of with the caller's scope
    assert sorted(r.uid for r in store.twins_of(["Asset"], scope)) == ["pump-1", "pump-2"]
    links, _ = store.links_of(["dependsOn"], scope)
    assert [(link.source, link.target) for link in links] == [("pump-2", "pump-1")]
    # unscoped (internal) reads and history still have it
    record = store.get("pump-3")
    assert record is not None and record.lifecycle == "retired" and "_lifecycle" not in record.properties
    history = store.history_of("pump-3")
    assert history[-1].after is not None and history[-1].after.get("_lifecycle") == "retired"
    assert history[-1].actor == "ada"
    # the transition is audited
    (record_of_move,) = audit.query(operation="twin.lifecycle")
    assert record_of_move.subject == "ada" and record_of_move.decision == "allow"
    assert record_of_move.detail == "Asset pump-3: active -> retired"


def test_transitions_follow_the_lifecycle_and_bad_ones_change_nothing(env) -> None:  # type: ignore[no-untyped-def]
    store, audit = env
    policy = _policy(store)

    def move(uid: str, state: str):  # type: ignore[no-untyped-def]
        return transition_twin(uid, state, store=store, policy=policy, audit=audit, subject=ARCHITECT)

    assert move("pump-1", "suspended").after == "suspended"
    with pytest.raises(LifecycleError, match="cannot go from suspended to planned; from suspended it may go to active"):
        move("pump-1", "planned")
    with pytest.raises(LifecycleError, match="'pump-1' is already suspended"):
        move("pump-1", "suspended")
    with pytest.raises(LifecycleError, match="unknown lifecycle state 'gone'; the states are planned, active"):
        move("pump-1", "gone")
    with pytest.raises(TwinNotFound, match="nosuch"):
        move("nosuch", "retired")
    record = store.get("pump-1")
    assert record is not None and record.lifecycle == "suspended"  # the refused moves changed nothing
    assert move("pump-1", "retired").before == "suspended"
    with pytest.raises(LifecycleError, match="from retired it may go to active"):
        move("pump-1", "suspended")
    assert move("pump-1", "active").after == "active"  # brought back
    refused = [r for r in audit.query(operation="twin.lifecycle") if r.decision == "deny"]
    assert len(refused) == 5  # every refused move is on record: two bad moves, a bad state, an unknown twin, one more
    assert any("TwinNotFound" in r.detail for r in refused) and any(
        "unknown lifecycle state" in r.detail for r in refused
    )


def test_who_may_move_what_is_the_policys_decision_and_denials_are_audited(env) -> None:  # type: ignore[no-untyped-def]
    store, audit = env
    policy = _policy(store)
    before = audit.verify().records_checked
    with pytest.raises(PolicyDenied, match="twin.lifecycle"):
        transition_twin("pump-1", "retired", store=store, policy=policy, audit=audit, subject=VIEWER)
    # hr holds no twin.lifecycle; granting it would still not let hr retire an asset (hr writes people only)
    assert policy.decide(HR, "write", "Asset").allowed is False
    with pytest.raises(PolicyDenied):
        transition_twin("pump-1", "retired", store=store, policy=policy, audit=audit, subject=HR)
    assert audit.verify().records_checked == before + 2
    assert [r.decision for r in audit.query(operation="twin.lifecycle")] == ["deny", "deny"]
    record = store.get("pump-1")
    assert record is not None and record.lifecycle == "active"
