"""Alerts and proposals in the relational store, on SQLite and on PostgreSQL: one open alert per key (a resolved one
frees the key), acknowledge/snooze/resolve only from the states that allow it, one open proposal per key, approvals
counted per distinct person, and the execution entry queued by the approval that completes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from governance.decisions.alerts import AlertError, AlertStore
from governance.decisions.approval import ApprovalRefused
from governance.decisions.evidence import Evidence, EvidenceTwin, LineageRef
from governance.decisions.proposals import ProposalError, ProposalStore, execution_table
from governance.identity import Subject

EVIDENCE = Evidence(
    (
        EvidenceTwin(
            "erp:material:M1",
            "Material",
            {"stockLevel": 2.0},
            (LineageRef("stockLevel", "erp", "materials", "1", "safety_stock", "run-1"),),
        ),
    ),
    {"seq": 7, "op": "update"},
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.db'}"
    return request.getfixturevalue("postgres_url")


def _raise(store: AlertStore, key: str = "reorder:M1"):  # type: ignore[no-untyped-def]
    return store.raise_alert(
        automation="reorder",
        rule_version="v1",
        severity="warning",
        key=key,
        twin_uid="erp:material:M1",
        twin_class="Material",
        message="low",
        evidence=EVIDENCE,
        actor="automation:reorder",
    )


def test_one_open_alert_per_key_and_its_states(url: str) -> None:
    store = AlertStore(url)
    first, new = _raise(store)
    again, new_again = _raise(store)
    assert new and not new_again and again.id == first.id and again.fired == 2
    assert again.evidence.twins[0].lineage[0].source_field == "safety_stock"
    with pytest.raises(AlertError, match="future"):
        store.transition(first.id, "snooze", "ann", datetime.now(UTC) - timedelta(minutes=1))
    snoozed = store.transition(first.id, "snooze", "ann", datetime.now(UTC) + timedelta(hours=1))
    assert snoozed.snoozed() and snoozed.state == "open"
    assert store.transition(first.id, "acknowledge", "ann").state == "acknowledged"
    with pytest.raises(AlertError, match="acknowledged"):
        store.transition(first.id, "acknowledge", "ann")
    assert store.transition(first.id, "resolve", "bob").state == "resolved"
    with pytest.raises(AlertError, match="resolved"):
        store.transition(first.id, "resolve", "bob")
    reopened, new = _raise(store)  # a resolved alert frees its key
    assert new and reopened.id != first.id
    assert [a.state for a in store.list()] == ["open", "resolved"]


def test_proposals_dedupe_and_count_distinct_approvers(url: str) -> None:
    store = ProposalStore(url)
    proposer = Subject(sub="automation:reorder", roles=frozenset({"data_steward"}))
    fields = dict(
        automation="reorder",
        rule_version="v1",
        action_type="erp.purchase_order",
        parameters={"quantity": 5.0},
        twin_uid="erp:material:M1",
        twin_class="Material",
        proposer=proposer,
        reason="low",
        evidence=EVIDENCE,
        expires_after_hours=1.0,
        key="reorder:erp:material:M1",
    )
    first, new = store.create(**fields)
    second, new_again = store.create(**fields)
    assert new and not new_again and second.id == first.id
    proposal, done = store.approve(first.id, "ann", ["data_steward"], needed=2)
    assert not done and proposal.state == "proposed" and proposal.approved_by == ("ann",)
    with pytest.raises(ApprovalRefused, match="already"):
        store.approve(first.id, "ann", ["data_steward"], needed=2)
    proposal, done = store.approve(first.id, "bob", ["executive"], needed=2)
    assert done and proposal.state == "approved"
    with store.engine.connect() as conn:
        entry = conn.execute(select(execution_table).where(execution_table.c.proposal_id == first.id)).one()
    assert entry.state == "pending" and entry.actor == "automation:reorder"  # runs as its proposer
    with pytest.raises(ProposalError, match="no longer proposed"):
        store.decide(first.id, "rejected")
    third, new = store.create(**fields)  # still open (approved): no second proposal for the key
    assert not new and third.id == first.id


def test_expiry_frees_the_key(url: str) -> None:
    store = ProposalStore(url)
    proposer = Subject(sub="ann", roles=frozenset({"admin"}))
    proposal, _ = store.create(
        automation="manual",
        rule_version="-",
        action_type="twin.edit",
        parameters={"uid": "x", "properties": {"name": "y"}},
        twin_uid="x",
        twin_class="Asset",
        proposer=proposer,
        reason="r",
        evidence=Evidence(),
        expires_after_hours=0.0001,
        key="k",
    )
    assert store.expire_due(datetime.now(UTC) + timedelta(seconds=5))[0].id == proposal.id
    assert store.require(proposal.id).state == "expired"
    assert store.create(
        automation="manual",
        rule_version="-",
        action_type="twin.edit",
        parameters={},
        twin_uid="x",
        twin_class="Asset",
        proposer=proposer,
        reason="r",
        evidence=Evidence(),
        expires_after_hours=1,
        key="k",
    )[1]
