"""The connector-run service: every edge (CLI, REST, demo, the runtime to come) runs a connector through here, so
the policy decision and the audit record cannot be forgotten."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connectors.sync import Connector, Mode, SyncEngine, SyncReport
from governance.audit import AuditEvent, AuditLog, Decision
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import Policy

OPERATION = "connector.run"


def run_connector(
    engine: SyncEngine,
    connector: Connector,
    *,
    subject: Subject,
    policy: Policy,
    audit: AuditLog,
    mode: Mode = "incremental",
    dry_run: bool = False,
    entities: Sequence[str] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    allow_deletions: float | None = None,
) -> SyncReport:
    """Sync `connector` as `subject` and append the audit record of the run, whether it completed or failed
    (`allow_deletions`: the share of an entity's records this run may delete, past the mass-delete guard)."""
    variables = {
        "connector": connector.name,
        "mode": mode,
        "dry_run": dry_run,
        "entities": list(entities) if entities is not None else None,
        "allow_deletions": allow_deletions,
    }
    decision = policy.decide(subject, "operation", OPERATION)
    if not decision.allowed:
        audit.append(
            AuditEvent.for_subject(
                subject,
                OPERATION,
                Decision.DENY,
                variables=variables,
                policy_version=policy.version,
                detail=decision.reason,
            )
        )
        raise PolicyDenied(f"{subject.sub} may not run connectors: {decision.reason}")
    try:
        report = engine.run(
            connector, mode, dry_run=dry_run, entities=entities, progress=progress, allow_deletions=allow_deletions
        )
    except BaseException as exc:
        audit.append(
            AuditEvent.of_run(
                subject, OPERATION, policy.version, variables, None, {"status": "failed", "error": _short(exc)}
            )
        )
        raise
    audit.append(
        AuditEvent.of_run(
            subject,
            OPERATION,
            policy.version,
            variables,
            report.counts.get("read"),
            {"status": report.status, "run_id": report.run_id, "counts": report.counts},
        )
    )
    return report


def _short(exc: BaseException) -> str:
    """An error as the audit keeps it: its type and the start of its message."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"
