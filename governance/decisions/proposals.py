"""Proposed actions and their approvals, in the relational store: proposed -> approved -> executed | failed, or
rejected, or expired; an override changes the parameters (with a reason) and asks for approval again.

One open proposal per key (an automation and its twin): a condition that keeps holding does not pile up proposals.
The approval that makes a proposal approved writes its execution entry in the same transaction (the outbox of
governance/decisions/execution.py), so an approved proposal is never forgotten by a crash.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from governance.decisions.approval import ApprovalRefused
from governance.decisions.evidence import Evidence
from governance.errors import GovernanceError
from governance.identity import Subject
from graph.relational import create_tables, relational_engine

OPEN_STATES = ("proposed", "approved")
metadata = MetaData()
proposal_table = Table(
    "decision_proposal",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("automation", String(256), nullable=False),  # the rule, or `manual`
    Column("rule_version", String(32), nullable=False),
    Column("action_type", String(128), nullable=False),
    Column("parameters", Text, nullable=False),
    Column("twin_uid", String(512), nullable=False),
    Column("twin_class", String(256), nullable=False),
    Column("open_key", String(600), nullable=True, unique=True),
    Column("state", String(16), nullable=False),
    Column("proposer", String(512), nullable=False),
    Column("proposer_roles", Text, nullable=False),  # the action runs as its proposer, once approved
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("result", Text, nullable=True),  # the write-back's reference, or the failure
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_decision_proposal_state", "state"),
)
approval_table = Table(
    "decision_approval",
    metadata,
    Column("proposal_id", String(16), nullable=False),
    Column("approver", String(512), nullable=False),
    Column("roles", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("proposal_id", "approver"),
)
execution_table = Table(
    "decision_execution",
    metadata,
    Column("proposal_id", String(16), primary_key=True),
    Column("state", String(16), nullable=False),  # pending | running | done | failed
    Column("attempts", Integer, nullable=False),
    Column("claimed_by", String(256), nullable=True),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(512), nullable=False),  # who the action runs as: its proposer
    Column("actor_roles", Text, nullable=False),
    Column("reference", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("recorded", Boolean, nullable=False, default=False),  # its end is in the audit log
    Index("ix_decision_execution_state", "state", "next_attempt_at"),
)


class ProposalError(GovernanceError):
    """A proposal that does not exist, or a transition its state does not allow."""


@dataclass(frozen=True)
class Proposal:
    """One proposed action."""

    id: str
    automation: str
    rule_version: str
    action_type: str
    parameters: dict[str, Any]
    twin_uid: str
    twin_class: str
    state: str
    proposer: str
    reason: str
    evidence: Evidence
    result: str | None
    created_at: datetime
    expires_at: datetime
    updated_at: datetime
    approved_by: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "id": self.id,
            "automation": self.automation,
            "ruleVersion": self.rule_version,
            "actionType": self.action_type,
            "parameters": self.parameters,
            "twin": self.twin_uid,
            "className": self.twin_class,
            "state": self.state,
            "proposer": self.proposer,
            "reason": self.reason,
            "evidence": self.evidence.to_dict(),
            "result": self.result,
            "approvedBy": list(self.approved_by),
            "createdAt": self.created_at.isoformat(),
            "expiresAt": self.expires_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


class ProposalStore:
    """Proposals, approvals and the execution outbox (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def create(
        self,
        *,
        automation: str,
        rule_version: str,
        action_type: str,
        parameters: dict[str, Any],
        twin_uid: str,
        twin_class: str,
        proposer: Subject,
        reason: str,
        evidence: Evidence,
        expires_after_hours: float,
        key: str | None,
    ) -> tuple[Proposal, bool]:
        """A new proposal, or the one already open for `key`; (proposal, new?)."""
        t, now = proposal_table, datetime.now(UTC)
        proposal_id = uuid.uuid4().hex[:12]
        with self.engine.begin() as conn:
            if key is not None:
                row = conn.execute(select(t.c.id).where(t.c.open_key == key)).first()
                if row is not None:
                    return self._stored(conn, row.id), False
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(t).values(
                            id=proposal_id,
                            automation=automation,
                            rule_version=rule_version,
                            action_type=action_type,
                            parameters=json.dumps(parameters, sort_keys=True, default=str),
                            twin_uid=twin_uid,
                            twin_class=twin_class,
                            open_key=key,
                            state="proposed",
                            proposer=proposer.sub,
                            proposer_roles=json.dumps(sorted(proposer.roles)),
                            reason=reason,
                            evidence=evidence.to_json(),
                            result=None,
                            created_at=now,
                            expires_at=now + timedelta(hours=expires_after_hours),
                            updated_at=now,
                        )
                    )
            except IntegrityError:  # opened by another evaluator an instant ago
                row = conn.execute(select(t.c.id).where(t.c.open_key == key)).first()
                if row is None:
                    raise
                return self._stored(conn, row.id), False
            return self._stored(conn, proposal_id), True

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with its approvers."""
        with self.engine.connect() as conn:
            return self._get(conn, proposal_id)

    def require(self, proposal_id: str) -> Proposal:
        """The proposal; ProposalError when there is none."""
        proposal = self.get(proposal_id)
        if proposal is None:
            raise ProposalError(f"no proposal {proposal_id[:40]!r}")
        return proposal

    def list(self, states: Sequence[str] | None = None, limit: int = 200) -> list[Proposal]:
        """Proposals, newest first."""
        t = proposal_table
        query = select(t.c.id).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
        if states:
            query = query.where(t.c.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [p for (pid,) in conn.execute(query).all() if (p := self._get(conn, pid)) is not None]

    def page(
        self,
        *,
        states: Sequence[str] | None = None,
        action_types: Sequence[str] | None = None,
        automations: Sequence[str] | None = None,
        twin_uid: str | None = None,
        classes: Sequence[str] | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 200,
    ) -> builtins.list[Proposal]:
        """Proposals matching the filters, newest first, after the position `before` (created_at, id) of the last
        one a previous page held."""
        t = proposal_table
        query = select(t.c.id).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
        for column, wanted in ((t.c.state, states), (t.c.action_type, action_types), (t.c.automation, automations)):
            if wanted:
                query = query.where(column.in_(list(wanted)))
        if classes is not None:
            query = query.where(t.c.twin_class.in_(list(classes)))
        if twin_uid is not None:
            query = query.where(t.c.twin_uid == twin_uid)
        if before is not None:
            query = query.where(or_(t.c.created_at < before[0], and_(t.c.created_at == before[0], t.c.id > before[1])))
        with self.engine.connect() as conn:
            return [p for (pid,) in conn.execute(query).all() if (p := self._get(conn, pid)) is not None]

    def changed_since(self, moment: datetime, limit: int = 500) -> builtins.list[Proposal]:
        """Proposals created or changed at or after `moment`, oldest change first."""
        t = proposal_table
        query = select(t.c.id).where(t.c.updated_at >= moment).order_by(t.c.updated_at, t.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [p for (pid,) in conn.execute(query).all() if (p := self._get(conn, pid)) is not None]

    def approve(self, proposal_id: str, approver: str, roles: Sequence[str], needed: int) -> tuple[Proposal, bool]:
        """Record `approver`'s approval; when it is the `needed`-th, the proposal is approved and its execution (as
        its proposer, whose rights were checked when it was proposed) queued in the same transaction.
        (proposal, approved now?); ApprovalRefused for a second approval by the same person or a proposal no longer
        proposed."""
        t, now = proposal_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            current = conn.execute(select(t.c.state, t.c.expires_at).where(t.c.id == proposal_id)).first()
            if current is None or current.state != "proposed" or _aware(current.expires_at) <= now:
                raise ApprovalRefused(f"proposal {proposal_id} is not open for approval")
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(approval_table).values(
                            proposal_id=proposal_id, approver=approver, roles=json.dumps(sorted(roles)), at=now
                        )
                    )
            except IntegrityError:
                raise ApprovalRefused(f"{approver} approved proposal {proposal_id} already") from None
            count = len(
                conn.execute(select(approval_table.c.approver).where(approval_table.c.proposal_id == proposal_id)).all()
            )
            done = count >= needed
            if not done:
                conn.execute(update(t).where(t.c.id == proposal_id).values(updated_at=now))
            if done:
                moved = conn.execute(
                    update(t)
                    .where(t.c.id == proposal_id, t.c.state == "proposed", t.c.expires_at > now)
                    .values(state="approved", updated_at=now)
                ).rowcount
                if moved != 1:
                    raise ApprovalRefused(f"proposal {proposal_id} is no longer open for approval")
                proposer = conn.execute(select(t.c.proposer, t.c.proposer_roles).where(t.c.id == proposal_id)).one()
                conn.execute(
                    insert(execution_table).values(
                        proposal_id=proposal_id,
                        state="pending",
                        attempts=0,
                        claimed_by=None,
                        claimed_until=None,
                        next_attempt_at=now,
                        actor=proposer.proposer,
                        actor_roles=proposer.proposer_roles,
                        reference=None,
                        error=None,
                        recorded=False,
                    )
                )
            return self._stored(conn, proposal_id), done

    def decide(self, proposal_id: str, state: str, *, parameters: dict[str, Any] | None = None) -> Proposal:
        """Reject (state `rejected`) or override (new `parameters`, approvals cleared, still proposed) a proposed
        proposal; ProposalError when it is no longer proposed."""
        t, now = proposal_table, datetime.now(UTC)
        values: dict[str, Any] = {"updated_at": now}
        if state == "rejected":
            values.update(state="rejected", open_key=None)
        else:
            values["parameters"] = json.dumps(parameters, sort_keys=True, default=str)
        with self.engine.begin() as conn:
            if (
                conn.execute(update(t).where(t.c.id == proposal_id, t.c.state == "proposed").values(**values)).rowcount
                != 1
            ):
                raise ProposalError(f"proposal {proposal_id} is no longer proposed")
            if parameters is not None:
                conn.execute(delete(approval_table).where(approval_table.c.proposal_id == proposal_id))
            return self._stored(conn, proposal_id)

    def expire_due(self, now: datetime | None = None) -> builtins.list[Proposal]:
        """Mark every proposed proposal past its expiry as expired; the ones this call expired."""
        t, now = proposal_table, now or datetime.now(UTC)
        with self.engine.begin() as conn:
            due = [
                pid
                for (pid,) in conn.execute(select(t.c.id).where(t.c.state == "proposed", t.c.expires_at <= now)).all()
            ]
            expired = []
            for pid in due:
                if (
                    conn.execute(
                        update(t)
                        .where(t.c.id == pid, t.c.state == "proposed")
                        .values(state="expired", open_key=None, updated_at=now)
                    ).rowcount
                    == 1
                ):
                    expired.append(self._get(conn, pid))
        return [p for p in expired if p is not None]

    @classmethod
    def _stored(cls, conn: Any, proposal_id: str) -> Proposal:
        """The proposal this transaction just wrote; ProposalError if it is gone (deleted concurrently)."""
        proposal = cls._get(conn, proposal_id)
        if proposal is None:
            raise ProposalError(f"proposal {proposal_id!r} is not stored")
        return proposal

    @staticmethod
    def _get(conn: Any, proposal_id: str) -> Proposal | None:
        t = proposal_table
        row = conn.execute(select(t).where(t.c.id == proposal_id)).first()
        if row is None:
            return None
        approvers = tuple(
            a
            for (a,) in conn.execute(
                select(approval_table.c.approver)
                .where(approval_table.c.proposal_id == proposal_id)
                .order_by(approval_table.c.at)
            ).all()
        )
        return Proposal(
            id=row.id,
            automation=row.automation,
            rule_version=row.rule_version,
            action_type=row.action_type,
            parameters=json.loads(row.parameters),
            twin_uid=row.twin_uid,
            twin_class=row.twin_class,
            state=row.state,
            proposer=row.proposer,
            reason=row.reason,
            evidence=Evidence.from_json(row.evidence),
            result=row.result,
            created_at=_aware(row.created_at),
            expires_at=_aware(row.expires_at),
            updated_at=_aware(row.updated_at),
            approved_by=approvers,
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
