"""The decisions service: every edge (CLI, the runtime, GraphQL later) reads and decides on alerts and proposals
through here, so the policy decision and the audit record cannot be forgotten.

Every transition of a proposal — proposed, approved, rejected, overridden, expired, executed, failed — and of an alert
is an audit record with the actor, the reason, the rule and the rule's version; a refused decision is recorded too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from governance.audit import AuditEvent, AuditLog, Decision
from governance.decisions.actions import ActionError, ActionTypes
from governance.decisions.alerts import Alert, AlertError, AlertStore, visible_alerts
from governance.decisions.approval import ApprovalRefused, approval_rule, check_decider
from governance.decisions.automations import Automation
from governance.decisions.evaluation import Firing
from governance.decisions.evidence import Evidence, EvidenceTwin, LineageRef, evidence_values, visible_evidence
from governance.decisions.execution import ExecutionOutcome
from governance.decisions.notices import Notices
from governance.decisions.paging import Page, visible_page
from governance.decisions.proposals import Proposal, ProposalError, ProposalStore
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.lineage import LineageStore
from governance.policy import Policy
from graph.model import TwinRecord
from graph.store import GraphStore

MAX_EVIDENCE_NEIGHBOURS = 20


ALERT_OPERATION = "alert.manage"
"""The policy operation that lets a role acknowledge, snooze and resolve the alerts it may see."""


class DecisionService:
    """Alerts and proposals as a subject may see and decide on them; the automations' firings turned into both."""

    def __init__(
        self,
        store: GraphStore,
        policy: Policy,
        audit: AuditLog,
        alerts: AlertStore,
        proposals: ProposalStore,
        action_types: ActionTypes,
        lineage: LineageStore | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.audit = audit
        self.alerts = alerts
        self.proposals = proposals
        self.action_types = action_types
        self.lineage = lineage
        self.notices = Notices()  # every write below announces itself (the `decisions` subscriptions wake on it)

    # ------------------------------------------------------------------ reads

    def list_alerts(self, subject: Subject, states: Sequence[str] | None = None, limit: int = 200) -> list[Alert]:
        """The alerts `subject` may see, evidence masked, newest first (the policy filters before the limit)."""
        return self.page_alerts(subject, states=states, first=limit).items

    def page_alerts(
        self,
        subject: Subject,
        *,
        states: Sequence[str] | None = None,
        severities: Sequence[str] | None = None,
        automations: Sequence[str] | None = None,
        twin_uid: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[Alert]:
        """A page of the alerts `subject` may see, filtered, evidence masked, newest first; the policy's filter runs
        before the page is cut (a page is never short because of hidden alerts in it)."""
        classes = self.readable_classes(subject)
        found: Page[Alert] = (
            Page([], None, False)
            if classes is not None and not classes
            else visible_page(
                lambda before, limit: self.alerts.page(
                    states=states,
                    severities=severities,
                    automations=automations,
                    twin_uid=twin_uid,
                    classes=classes,
                    before=before,
                    limit=limit,
                ),
                lambda batch: visible_alerts(batch, self.policy, subject, self.store),
                lambda alert: (alert.created_at, alert.id),
                first,
                after,
            )
        )
        filters = {"states": list(states or ()), "severities": list(severities or ()), "twin": twin_uid}
        self._record(subject, "decision.alerts.read", Decision.ALLOW, filters, rows=len(found.items))
        return found

    def readable_classes(self, subject: Subject) -> list[str] | None:
        """The classes whose twins `subject` may read (None: every class)."""
        names = [c.name for c in self.policy.ontology.classes.values()]
        allowed = [name for name in names if self.policy.decide(subject, "read", name).allowed]
        return None if len(allowed) == len(names) else allowed

    def alert(self, subject: Subject, alert_id: str) -> Alert:
        """One alert as `subject` may see it; AlertError when there is none it may see (absent and hidden alike)."""
        found = self.alerts.get(alert_id)
        shown = visible_alerts([found], self.policy, subject, self.store) if found is not None else []
        self._record(subject, "decision.alert.read", Decision.ALLOW, {"alert": alert_id}, rows=len(shown))
        if not shown:
            raise AlertError(f"no alert {alert_id[:40]!r}")
        return shown[0]

    def list_proposals(self, subject: Subject, states: Sequence[str] | None = None, limit: int = 200) -> list[Proposal]:
        """The proposals `subject` may see (it reads the twin's class and sees the twin), evidence masked; the
        policy filters before the limit."""
        return self.page_proposals(subject, states=states, first=limit).items

    def page_proposals(
        self,
        subject: Subject,
        *,
        states: Sequence[str] | None = None,
        action_types: Sequence[str] | None = None,
        automations: Sequence[str] | None = None,
        twin_uid: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[Proposal]:
        """A page of the proposals `subject` may see, filtered, masked, newest first (policy before the page cut)."""
        classes = self.readable_classes(subject)
        found: Page[Proposal] = (
            Page([], None, False)
            if classes is not None and not classes
            else visible_page(
                lambda before, limit: self.proposals.page(
                    states=states,
                    action_types=action_types,
                    automations=automations,
                    twin_uid=twin_uid,
                    classes=classes,
                    before=before,
                    limit=limit,
                ),
                lambda batch: self._visible(batch, subject),
                lambda proposal: (proposal.created_at, proposal.id),
                first,
                after,
            )
        )
        filters = {"states": list(states or ()), "action_types": list(action_types or ()), "twin": twin_uid}
        self._record(subject, "decision.proposals.read", Decision.ALLOW, filters, rows=len(found.items))
        return found

    def changed_since(self, subject: Subject, moment: datetime) -> tuple[list[Alert], list[Proposal]]:
        """Alerts and proposals created or changed at or after `moment` that `subject` may see, masked (for a
        subscription, which records its reads once when it starts)."""
        alerts = visible_alerts(self.alerts.changed_since(moment), self.policy, subject, self.store)
        proposals = self._visible(self.proposals.changed_since(moment), subject)
        return alerts, proposals

    def may_decide(self, subject: Subject, proposal: Proposal) -> bool:
        """Whether `subject` may approve `proposal` now (the console shows its buttons by this)."""
        try:
            check_decider(
                self.policy,
                subject,
                proposal.action_type,
                proposal.proposer,
                proposal.state,
                proposal.expires_at,
                proposal.approved_by,
                approving=True,
            )
        except ApprovalRefused:
            return False
        return True

    def proposal(self, subject: Subject, proposal_id: str) -> Proposal:
        """One proposal as `subject` may see it; ProposalError when there is none it may see."""
        found = self.proposals.get(proposal_id)
        shown = self._visible([found], subject) if found is not None else []
        self._record(subject, "decision.proposal.read", Decision.ALLOW, {"proposal": proposal_id}, rows=len(shown))
        if not shown:
            raise ProposalError(f"no proposal {proposal_id[:40]!r}")
        return shown[0]

    def _visible(self, proposals: Sequence[Proposal], subject: Subject) -> list[Proposal]:
        readable = [
            p
            for p in proposals
            if p.twin_class in self.policy.ontology and self.policy.decide(subject, "read", p.twin_class).allowed
        ]
        if not readable:
            return []
        scope = self.policy.read_scope(subject)
        uids = sorted({p.twin_uid for p in readable} | {t.uid for p in readable for t in p.evidence.twins})
        every_row = scope.predicate is None and scope.readable_classes is None
        seen = set(uids) if every_row else set(self.store.get_many(uids, scope))
        return [
            replace(
                p,
                evidence=visible_evidence(p.evidence, self.policy, subject, seen),
                parameters=self._masked_parameters(p, subject),
            )
            for p in readable
            if p.twin_uid in seen or self.policy.sees_created(subject, p.twin_class)
        ]

    def _masked_parameters(self, proposal: Proposal, subject: Subject) -> dict[str, Any]:
        """Parameters as `subject` may see them: twin values a parameter carries (`properties`) masked like a read."""
        values = proposal.parameters.get("properties")
        if not isinstance(values, dict):
            return proposal.parameters
        masked = self.policy.mask(
            subject,
            TwinRecord(
                proposal.twin_uid, proposal.twin_class, self.policy.ontology.labels(proposal.twin_class), values
            ),
        )
        return {**proposal.parameters, "properties": masked.properties}

    # ------------------------------------------------------------------ alerts

    def update_alert(
        self,
        subject: Subject,
        alert_id: str,
        action: Literal["acknowledge", "resolve", "snooze"],
        until: datetime | None = None,
        reason: str = "",
    ) -> Alert:
        """Acknowledge, resolve or snooze an alert the subject may see and whose role may handle alerts."""
        decision = self.policy.decide(subject, "operation", ALERT_OPERATION)
        if not decision.allowed:
            self._record(subject, f"alert.{action}", Decision.DENY, {"alert": alert_id}, {"reason": decision.reason})
            raise PolicyDenied(f"denied: {subject.sub} may not handle alerts (needs the operation {ALERT_OPERATION})")
        self.alert(subject, alert_id)
        try:
            alert = self.alerts.transition(alert_id, action, subject.sub, until)
        except AlertError as exc:
            self._record(subject, f"alert.{action}", Decision.DENY, {"alert": alert_id}, {"reason": str(exc)})
            raise
        self.notices.notify()
        self._record(
            subject,
            f"alert.{action}",
            Decision.ALLOW,
            {"alert": alert_id},
            {
                "alert": alert_id,
                "reason": reason,
                "rule": alert.automation,
                "rule_version": alert.rule_version,
                "until": until.isoformat() if until else None,
            },
        )
        return alert

    # ------------------------------------------------------------------ proposals

    def propose(
        self, subject: Subject, action_type: str, parameters: dict[str, Any], twin_uid: str, reason: str
    ) -> Proposal:
        """A person's own proposal of an action on a twin it sees (its class's `write`, parameters checked)."""
        kind = self.action_types.get(action_type)
        variables = {"action_type": action_type, "twin": twin_uid}
        try:
            if kind is None:
                raise ApprovalRefused(
                    f"unknown action type {action_type!r}; known: {', '.join(self.action_types.names())}"
                )
            twin = self.store.get(twin_uid, self.policy.read_scope(subject))
            if twin is None:
                raise PolicyDenied(f"denied: twin {twin_uid[:80]!r} is not one {subject.sub} may see")
            self.policy.require(subject, "write", twin.cls)
            checked = kind.check(parameters).model_dump()
            rule = approval_rule(self.policy, action_type)
        except (PolicyDenied, ActionError) as exc:
            self._record(subject, "decision.proposed", Decision.DENY, variables, {"reason": str(exc)})
            raise
        proposal, _ = self.proposals.create(
            automation="manual",
            rule_version="-",
            action_type=action_type,
            parameters=checked,
            twin_uid=twin_uid,
            twin_class=twin.cls,
            proposer=subject,
            reason=reason,
            evidence=Evidence(),
            expires_after_hours=rule.expires_after_hours,
            key=None,
        )
        self._transition(subject, "proposed", proposal, reason)
        self.notices.notify()
        return proposal

    def approve(self, subject: Subject, proposal_id: str, reason: str = "") -> Proposal:
        """Approve; the last approval the action type needs queues the execution. ApprovalRefused (recorded) when
        the subject may not: not an approver, the proposer, a second approval by one person, expired, decided."""
        proposal = self._decidable(subject, proposal_id, "approved", approving=True)
        rule = approval_rule(self.policy, proposal.action_type)
        try:
            updated, done = self.proposals.approve(proposal_id, subject.sub, sorted(subject.roles), rule.approvals)
        except ApprovalRefused as exc:
            self._transition(subject, "approved", proposal, str(exc), Decision.DENY)
            raise
        self._transition(
            subject,
            "approved" if done else "approval",
            updated,
            reason,
            extra={"approvals": len(updated.approved_by), "needed": rule.approvals},
        )
        self.notices.notify()
        return updated

    def reject(self, subject: Subject, proposal_id: str, reason: str) -> Proposal:
        """Reject a proposal (a reason is required)."""
        proposal = self._decidable(subject, proposal_id, "rejected", approving=False, reason=reason)
        updated = self.proposals.decide(proposal.id, "rejected")
        self._transition(subject, "rejected", updated, reason)
        self.notices.notify()
        return updated

    def override(self, subject: Subject, proposal_id: str, parameters: dict[str, Any], reason: str) -> Proposal:
        """Replace a proposal's parameters (checked against its action type; a reason is required); the approvals
        given so far are withdrawn."""
        proposal = self._decidable(subject, proposal_id, "overridden", approving=False, reason=reason)
        kind = self.action_types.get(proposal.action_type)
        try:
            if kind is None:
                raise ApprovalRefused(f"action type {proposal.action_type!r} is not registered")
            checked = kind.check({**proposal.parameters, **parameters}).model_dump()
        except (PolicyDenied, ActionError) as exc:
            self._transition(subject, "overridden", proposal, str(exc), Decision.DENY)
            raise
        updated = self.proposals.decide(proposal.id, "overridden", parameters=checked)
        self._transition(
            subject, "overridden", updated, reason, extra={"before": proposal.parameters, "after": checked}
        )
        self.notices.notify()
        return updated

    def _decidable(
        self, subject: Subject, proposal_id: str, transition: str, *, approving: bool, reason: str | None = None
    ) -> Proposal:
        """The proposal, if `subject` sees it and may decide on it now (a refusal is recorded)."""
        proposal = self.proposal(subject, proposal_id)
        try:
            if reason is not None and not reason.strip():
                raise ApprovalRefused(f"a proposal is {transition} with a reason")
            check_decider(
                self.policy,
                subject,
                proposal.action_type,
                proposal.proposer,
                proposal.state,
                proposal.expires_at,
                proposal.approved_by,
                approving=approving,
            )
        except ApprovalRefused as exc:
            self._transition(subject, transition, proposal, str(exc), Decision.DENY)
            raise
        return proposal

    # ------------------------------------------------------------------ from the runtime

    def fire(self, firing: Firing) -> tuple[Alert | None, Proposal | None]:
        """Turn a firing into its alert and its proposal (recorded); an automatic action is approved at once."""
        try:
            return self._fire(firing)
        finally:
            self.notices.notify()

    def _fire(self, firing: Firing) -> tuple[Alert | None, Proposal | None]:
        rule = firing.automation
        evidence = self._evidence(firing)
        alert = proposal = None
        subject = rule.subject
        if rule.alert is not None and firing.alert_key is not None:
            alert, new = self.alerts.raise_alert(
                automation=rule.name,
                rule_version=rule.version,
                severity=rule.alert.severity,
                key=firing.alert_key,
                twin_uid=firing.uid,
                twin_class=firing.cls,
                message=firing.alert_message or "",
                evidence=evidence,
                actor=subject.sub,
            )
            if new:
                self._record(
                    subject,
                    "alert.raised",
                    Decision.ALLOW,
                    {"alert": alert.id, "automation": rule.name},
                    {
                        "alert": alert.id,
                        "rule": rule.name,
                        "rule_version": rule.version,
                        "severity": alert.severity,
                        "key": alert.key,
                        "twin": firing.uid,
                    },
                )
        if rule.action is not None and firing.parameters is not None:
            kind = self.action_types.get(rule.action.type)
            approval = self.policy.approvals.get(rule.action.type)
            if kind is None or approval is None:
                return alert, None
            try:
                checked = kind.check(firing.parameters).model_dump()
            except ActionError as exc:  # parameters the twin filled in that the action type refuses
                self._record(
                    subject,
                    "decision.proposed",
                    Decision.DENY,
                    {"automation": rule.name, "twin": firing.uid},
                    {"reason": str(exc), "rule": rule.name, "rule_version": rule.version},
                )
                return alert, None
            proposal, new = self.proposals.create(
                automation=rule.name,
                rule_version=rule.version,
                action_type=rule.action.type,
                parameters=checked,
                twin_uid=firing.uid,
                twin_class=firing.cls,
                proposer=subject,
                reason=firing.alert_message or f"{rule.name}: condition held for {firing.uid}",
                evidence=evidence,
                expires_after_hours=approval.expires_after_hours,
                key=f"{rule.name}:{firing.uid}",
            )
            if new:
                self._transition(subject, "proposed", proposal, proposal.reason)
                if rule.action.automatic and approval.automatic:
                    proposal, _ = self.proposals.approve(proposal.id, subject.sub, sorted(subject.roles), 1)
                    self._transition(
                        subject,
                        "approved",
                        proposal,
                        "automatic: the policy allows this action type to run without approval",
                    )
        return alert, proposal

    def clear(self, cleared: Sequence[tuple[Automation, str]]) -> list[Alert]:
        """Resolve the open alerts of automations whose condition no longer holds for a twin (each recorded)."""
        rules = {rule.name: rule for rule, _ in cleared if rule.alert is not None}
        pairs = sorted({(rule.name, uid) for rule, uid in cleared if rule.name in rules})
        resolved = self.alerts.resolve_cleared(pairs, "twin decisions") if pairs else []
        for alert in resolved:
            rule = rules[alert.automation]
            self._record(
                rule.subject,
                "alert.resolve",
                Decision.ALLOW,
                {"alert": alert.id, "automation": rule.name},
                {
                    "alert": alert.id,
                    "reason": "automatic: the condition no longer holds",
                    "rule": rule.name,
                    "rule_version": rule.version,
                    "twin": alert.twin_uid,
                },
            )
        if resolved:
            self.notices.notify()
        return resolved

    def expire(self) -> list[Proposal]:
        """Expire every proposal past its time (each recorded)."""
        expired = self.proposals.expire_due()
        system = Subject(sub="twin decisions", roles=frozenset())
        for proposal in expired:
            self._transition(system, "expired", proposal, f"not approved by {proposal.expires_at.isoformat()}")
        if expired:
            self.notices.notify()
        return expired

    def executed(self, outcome: ExecutionOutcome) -> None:
        """Record how an execution ended (executed, or failed; a retry is recorded as a failed attempt)."""
        proposal = self.proposals.require(outcome.proposal_id)
        actor = outcome.actor or Subject(sub="twin decisions", roles=frozenset())
        state = {"done": "executed", "failed": "failed", "retry": "attempt_failed"}[outcome.state]
        self._transition(
            actor,
            state,
            proposal,
            outcome.error or "",
            extra={
                "reference": outcome.reference,
                "attempts": outcome.attempts,
                "approved_by": list(proposal.approved_by),
            },
        )
        self.notices.notify()

    # ------------------------------------------------------------------ evidence and audit

    def _evidence(self, firing: Firing) -> Evidence:
        rule = firing.automation
        attributes = {
            a
            for expression in _expressions(rule)
            for name, a in expression.paths
            if name not in ("twin", "telemetry", "neighbours", "now", "anomaly", "forecast", "study")
        }
        values = evidence_values(firing.properties, rule.reads)
        twins = [EvidenceTwin(firing.uid, firing.cls, values, self._lineage(firing.uid, values), 0)]
        for neighbour in firing.neighbours[:MAX_EVIDENCE_NEIGHBOURS]:
            props = neighbour.twin.properties
            twins.append(
                EvidenceTwin(
                    neighbour.twin.uid,
                    neighbour.twin.cls,
                    {a: props[a] for a in sorted(attributes) if a in props},
                    (),
                    neighbour.hops,
                )
            )
        change = None
        if firing.change is not None:
            c = firing.change
            change = {
                "seq": c.seq,
                "op": c.op,
                "actor": c.actor,
                "source": c.source,
                "runId": c.run_id,
                "at": c.at.isoformat(),
            }
            if c.kind != "twin":  # an anomaly or forecast event: what it said (window, expected range, values)
                change.update(kind=c.kind, event=c.after or {})
        return Evidence(tuple(twins), change, firing.telemetry)

    def _lineage(self, uid: str, values: dict[str, Any]) -> tuple[LineageRef, ...]:
        if self.lineage is None or not values:
            return ()
        latest: dict[str, LineageRef] = {}
        for record in self.lineage.where_from(uid):
            if record.property in values:
                latest[record.property] = LineageRef(
                    record.property,
                    record.source_system,
                    record.source_object,
                    record.record_key,
                    record.source_field or "",
                    record.run_id,
                )
        return tuple(latest[p] for p in sorted(latest))

    def _transition(
        self,
        subject: Subject,
        transition: str,
        proposal: Proposal,
        reason: str,
        decision: Decision = Decision.ALLOW,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._record(
            subject,
            f"decision.{transition}",
            decision,
            {"proposal": proposal.id, "automation": proposal.automation},
            {
                "proposal": proposal.id,
                "reason": reason,
                "rule": proposal.automation,
                "rule_version": proposal.rule_version,
                "action_type": proposal.action_type,
                "state": proposal.state,
                **(extra or {}),
            },
        )

    def _record(
        self,
        subject: Subject,
        operation: str,
        decision: Decision,
        variables: dict[str, Any],
        detail: dict[str, Any] | None = None,
        rows: int | None = None,
    ) -> None:
        self.audit.append(
            AuditEvent.for_subject(
                subject,
                operation,
                decision,
                variables=variables,
                policy_version=self.policy.version,
                rows_returned=rows,
                detail=json.dumps(detail, sort_keys=True, default=str)[:4000] if detail else "",
            )
        )


def _expressions(rule: Any) -> list[Any]:
    found = [rule.condition]
    if rule.alert is not None:
        found += [rule.alert.key] + ([rule.alert.message] if rule.alert.message else [])
    if rule.action is not None:
        found += list(rule.action.parameters.values())
    return found
