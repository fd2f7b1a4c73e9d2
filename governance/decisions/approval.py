"""Who may approve a proposal: the action type's approval rule in the policy YAML (`actions:`), the proposal's state
and expiry, and the four-eyes rules (the proposer never approves their own; two approvals come from two people)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import ApprovalRule, Policy


class ApprovalRefused(PolicyDenied):
    """The subject may not approve (or reject, or override) this proposal now; the message says why."""


def approval_rule(policy: Policy, action_type: str) -> ApprovalRule:
    """The policy's rule for `action_type`; ApprovalRefused when the policy has none (nothing approves it)."""
    rule = policy.approvals.get(action_type)
    if rule is None:
        raise ApprovalRefused(f"the policy has no approval rule for action type {action_type!r}")
    return rule


def check_decider(
    policy: Policy,
    subject: Subject,
    action_type: str,
    proposer: str,
    state: str,
    expires_at: datetime,
    approved_by: Collection[str],
    *,
    approving: bool,
) -> ApprovalRule:
    """The rule under which `subject` may decide on the proposal now; ApprovalRefused naming the reason otherwise."""
    rule = approval_rule(policy, action_type)
    if not subject.roles & rule.approvers:
        raise ApprovalRefused(
            f"{subject.sub} holds none of the approver roles of {action_type} ({', '.join(sorted(rule.approvers))})"
        )
    if state != "proposed":
        raise ApprovalRefused(f"the proposal is {state}; only a proposed one can be decided")
    if expires_at <= datetime.now(UTC):
        raise ApprovalRefused(f"the proposal expired at {expires_at.isoformat()}")
    if subject.sub == proposer:
        raise ApprovalRefused(f"{subject.sub} proposed it and may not decide on their own proposal")
    if approving and subject.sub in approved_by:
        raise ApprovalRefused(
            f"{subject.sub} approved it already; {action_type} needs {rule.approvals} distinct approvers"
        )
    return rule
