"""Moving a twin along its lifecycle (planned → active → suspended → retired), decided by the policy and audited.

A subject may move a twin when one of its roles holds the operation `twin.lifecycle` and may write the twin's class
(who may retire what); it must be able to see the twin (retired ones included). Every attempt is audited: allowed
ones with the states before and after, denied ones with the reason.
"""

from __future__ import annotations

from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import Policy
from graph.errors import TwinNotFound
from graph.lifecycle import LifecycleError, Transition, state_of
from graph.store import GraphStore
from ontology.errors import quoted

OPERATION = "twin.lifecycle"


def transition_twin(
    uid: str,
    state: str,
    *,
    store: GraphStore,
    policy: Policy,
    audit: AuditLog,
    subject: Subject,
    reason: str | None = None,
) -> Transition:
    """Move twin `uid` to lifecycle `state` as `subject`: PolicyDenied (audited) without the operation or write on the
    twin's class, TwinNotFound when the subject cannot see it, LifecycleError for a state or transition not allowed
    (nothing changed)."""
    variables = {"uid": uid, "state": state, "reason": reason}
    try:
        target = state_of(state)
        policy.require(subject, "operation", OPERATION)
        twin = store.get(uid, policy.read_scope(subject).including_retired())
        if twin is None:
            raise TwinNotFound(f"no twin with uid {quoted(uid)}")
        policy.require(subject, "write", twin.cls)
        (moved,) = store.transition({uid: target}, actor=subject.sub, source="lifecycle")
    except (PolicyDenied, TwinNotFound, LifecycleError) as refused:  # every refused attempt is on record too
        audit.append(
            AuditEvent.for_subject(
                subject,
                OPERATION,
                Decision.DENY,
                variables=variables,
                policy_version=policy.version,
                detail=f"{type(refused).__name__}: {refused}",
            )
        )
        raise
    audit.append(
        AuditEvent.for_subject(
            subject,
            OPERATION,
            Decision.ALLOW,
            variables=variables,
            policy_version=policy.version,
            rows_returned=1,
            detail=f"{moved.cls} {moved.uid}: {moved.before} -> {moved.after}" + (f" ({reason})" if reason else ""),
        )
    )
    return moved
