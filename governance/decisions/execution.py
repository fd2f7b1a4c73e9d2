"""Exactly-once execution of approved proposals: a small ledger in the relational store (`decision_execution`, the
outbox the approval writes in its own transaction) and an idempotent target.

A worker claims a due entry for a lease period (a conditional update, so two workers never run one entry at once),
runs the action's write-back — which the target makes idempotent by the proposal id (stored on the row it writes) —
then the twin change (an upsert, idempotent too), then marks the entry done and the proposal executed in one
transaction. A crash anywhere leaves the entry pending or claimed; once the lease lapses a worker claims it again and
the write-back finds the row it already wrote. So each approved proposal is written back exactly once whatever
moment a process dies at. A failing write-back aborts the action before the twin is touched and is retried with
back-off (1 s, 2 s, 4 s, ...); after `MAX_ATTEMPTS` the proposal is failed, visibly.

The audit record of an execution's end is written from the ledger (`unrecorded`, then `recorded`), so a crash after
the ledger's update never loses it (a crash between the record and `recorded` repeats it once).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from governance.decisions.actions import ActionError, ActionTypes, apply_twin_change
from governance.decisions.proposals import ProposalStore, execution_table, proposal_table
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import Policy
from graph.store import GraphStore

MAX_ATTEMPTS = 5
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class ExecutionOutcome:
    """How one claimed execution ended."""

    proposal_id: str
    state: str  # done | failed | retry
    reference: str | None = None
    error: str | None = None
    actor: Subject | None = None
    attempts: int = 0


class Executor:
    """Runs due executions of approved proposals."""

    def __init__(
        self,
        proposals: ProposalStore,
        action_types: ActionTypes,
        store: GraphStore,
        policy: Policy,
        holder: str,
        lease_seconds: float = LEASE_SECONDS,
        on_outcome: Callable[[ExecutionOutcome], None] | None = None,
    ) -> None:
        """`on_outcome` hears of failed attempts that will be retried (the runtime records them)."""
        self.proposals = proposals
        self.engine = proposals.engine
        self.action_types = action_types
        self.store = store
        self.policy = policy
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.on_outcome = on_outcome

    def due(self, limit: int = 50) -> list[str]:
        """Proposal ids whose execution may be claimed now (pending and due, or claimed by a lease that lapsed)."""
        e, now = execution_table, datetime.now(UTC)
        with self.engine.connect() as conn:
            return [
                pid
                for (pid,) in conn.execute(
                    select(e.c.proposal_id)
                    .where(
                        or_(
                            (e.c.state == "pending") & (e.c.next_attempt_at <= now),
                            (e.c.state == "running") & (e.c.claimed_until < now),
                        )
                    )
                    .order_by(e.c.next_attempt_at)
                    .limit(limit)
                ).all()
            ]

    def run_due(self, limit: int = 50) -> list[ExecutionOutcome]:
        """Claim and run every due execution (at most `limit`); what happened to each."""
        outcomes = []
        for proposal_id in self.due(limit):
            outcome = self.run(proposal_id)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def run(self, proposal_id: str) -> ExecutionOutcome | None:
        """Claim and run one execution; None when another worker holds it or it is not due."""
        claim = self._claim(proposal_id)
        if claim is None:
            return None
        attempts, actor = claim
        proposal = self.proposals.require(proposal_id)
        action_type = self.action_types.get(proposal.action_type)
        try:
            if action_type is None:
                raise ActionError(f"action type {proposal.action_type!r} is not registered in this runtime")
            params = action_type.check(proposal.parameters)
            reference = action_type.writeback(proposal_id, params) if action_type.writeback else None
            if action_type.effect is not None:
                reference = action_type.effect(proposal_id, params, actor)
            if action_type.twin_change is not None:
                change = action_type.twin_change(proposal_id, params, reference, self.store)
                apply_twin_change(self.store, self.policy, actor, change, f"decision:{proposal_id}")
        except (ActionError, PolicyDenied, OSError) as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            final = attempts >= MAX_ATTEMPTS or not _retryable(exc)
            self._settle(proposal_id, "failed" if final else "retry", None, error, attempts)
            outcome = ExecutionOutcome(proposal_id, "failed" if final else "retry", None, error, actor, attempts)
            if not final and self.on_outcome is not None:  # a failed attempt; ends are recorded from the ledger
                self.on_outcome(outcome)
            return outcome
        self._settle(proposal_id, "done", reference, None, attempts)
        return ExecutionOutcome(proposal_id, "done", reference, None, actor, attempts)

    def run_and_record(self, record: Callable[[ExecutionOutcome], None], limit: int = 50) -> list[ExecutionOutcome]:
        """Run the due executions, then put every ended one not yet in the audit log there (`record`)."""
        outcomes = self.run_due(limit)
        for outcome in self.unrecorded():
            record(outcome)
            self.recorded(outcome.proposal_id)
        return outcomes

    def _claim(self, proposal_id: str) -> tuple[int, Subject] | None:
        e, now = execution_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(e)
                .where(
                    e.c.proposal_id == proposal_id,
                    or_(
                        (e.c.state == "pending") & (e.c.next_attempt_at <= now),
                        (e.c.state == "running") & (e.c.claimed_until < now),
                    ),
                )
                .values(
                    state="running",
                    claimed_by=self.holder,
                    attempts=e.c.attempts + 1,
                    claimed_until=now + timedelta(seconds=self.lease_seconds),
                )
            ).rowcount
            if claimed != 1:
                return None
            row = conn.execute(
                select(e.c.attempts, e.c.actor, e.c.actor_roles).where(e.c.proposal_id == proposal_id)
            ).one()
        return int(row.attempts), Subject(sub=row.actor, roles=frozenset(json.loads(row.actor_roles)))

    def _settle(self, proposal_id: str, outcome: str, reference: str | None, error: str | None, attempts: int) -> None:
        """Done or failed: the entry and the proposal in one transaction; retry: pending again after a back-off."""
        e, p, now = execution_table, proposal_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            mine = (e.c.proposal_id == proposal_id) & (e.c.claimed_by == self.holder) & (e.c.state == "running")
            if outcome == "retry":
                conn.execute(
                    update(e)
                    .where(mine)
                    .values(
                        state="pending",
                        error=error,
                        claimed_by=None,
                        claimed_until=None,
                        next_attempt_at=now + timedelta(seconds=2.0 ** (attempts - 1)),
                    )
                )
                return
            state = "done" if outcome == "done" else "failed"
            if (
                conn.execute(
                    update(e).where(mine).values(state=state, reference=reference, error=error, claimed_until=None)
                ).rowcount
                == 1
            ):
                conn.execute(
                    update(p)
                    .where(p.c.id == proposal_id)
                    .values(
                        state="executed" if state == "done" else "failed",
                        open_key=None,
                        updated_at=now,
                        result=reference if state == "done" else error,
                    )
                )

    def unrecorded(self, limit: int = 100) -> list[ExecutionOutcome]:
        """Executions that ended (done or failed) whose end is not in the audit log yet."""
        e = execution_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(e).where(e.c.state.in_(["done", "failed"]), e.c.recorded.is_(False)).limit(limit)
            ).all()
        return [
            ExecutionOutcome(
                row.proposal_id,
                row.state,
                row.reference,
                row.error,
                Subject(sub=row.actor, roles=frozenset(json.loads(row.actor_roles))),
                int(row.attempts),
            )
            for row in rows
        ]

    def recorded(self, proposal_id: str) -> None:
        """Mark an execution's end as recorded in the audit log."""
        e = execution_table
        with self.engine.begin() as conn:
            conn.execute(update(e).where(e.c.proposal_id == proposal_id).values(recorded=True))

    def entry(self, proposal_id: str) -> dict[str, Any] | None:
        """The ledger entry of a proposal (state, attempts, reference, error)."""
        e = execution_table
        with self.engine.connect() as conn:
            row = conn.execute(select(e).where(e.c.proposal_id == proposal_id)).first()
        return dict(row._mapping) if row is not None else None


def _retryable(exc: BaseException) -> bool:
    """A refused twin change or bad parameters will fail the same way again; a write-back may succeed later."""
    from governance.decisions.actions import WritebackFailed

    return isinstance(exc, (WritebackFailed, OSError))
