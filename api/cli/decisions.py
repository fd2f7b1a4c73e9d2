"""`twin decisions list | show ID | approve ID | reject ID --reason | ack | snooze | resolve ALERT`: proposed actions
and alerts of the automations (DATA_DIR/automations.yaml), decided as the local operator through the decisions
service (policy and audit inside)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.runtime import Runtime

app = typer.Typer(
    help="Proposed actions and alerts of the automations: list, show, approve, reject, ack, snooze, resolve.",
    no_args_is_help=True,
)
console = Console()


def _fail(runtime: Runtime, exc: Exception) -> typer.Exit:
    runtime.close()
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    return typer.Exit(1)


@app.command("list")
def list_decisions(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only proposals/alerts in this state (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Proposals and alerts, newest first."""
    runtime = Runtime()
    try:
        service = runtime.decisions
        subject = runtime.operator()
        proposals = service.list_proposals(subject, state)
        alerts = service.list_alerts(subject, state)
    finally:
        runtime.close()
    if as_json:
        typer.echo(
            json.dumps(
                {"proposals": [p.to_dict() for p in proposals], "alerts": [a.to_dict() for a in alerts]}, default=str
            )
        )
        return
    table = Table(title=f"proposals ({len(proposals)})")
    for column in ("id", "state", "action", "twin", "automation", "approved by", "expires"):
        table.add_column(column)
    for p in proposals:
        table.add_row(
            p.id,
            p.state,
            p.action_type,
            p.twin_uid,
            p.automation,
            ", ".join(p.approved_by),
            f"{p.expires_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)
    alerts_table = Table(title=f"alerts ({len(alerts)})")
    for column in ("id", "state", "severity", "twin", "automation", "message"):
        alerts_table.add_column(column)
    for a in alerts:
        alerts_table.add_row(
            a.id, a.state + (" (snoozed)" if a.snoozed() else ""), a.severity, a.twin_uid, a.automation, a.message[:80]
        )
    console.print(alerts_table)


@app.command()
def show(proposal: Annotated[str, typer.Argument(help="Proposal or alert id.")]) -> None:
    """One proposal (or alert) with its parameters, evidence and lineage, as JSON."""
    from governance.decisions.alerts import AlertError
    from governance.decisions.proposals import ProposalError

    runtime = Runtime()
    try:
        service = runtime.decisions
        try:
            document = service.proposal(runtime.operator(), proposal).to_dict()
        except ProposalError:
            try:
                document = service.alert(runtime.operator(), proposal).to_dict()
            except AlertError as exc:
                raise _fail(runtime, ValueError(f"no proposal or alert {proposal[:40]!r}")) from exc
    finally:
        runtime.close()
    typer.echo(json.dumps(document, indent=2, default=str))


@app.command()
def approve(
    proposal: Annotated[str, typer.Argument(help="Proposal id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit record).")] = "",
) -> None:
    """Approve a proposal as the local operator (refused, naming why, when the policy does not allow it)."""
    from governance.decisions.proposals import ProposalError
    from governance.errors import PolicyDenied

    runtime = Runtime()
    try:
        updated = runtime.decisions.approve(runtime.operator(), proposal, reason)
    except (PolicyDenied, ProposalError) as exc:
        raise _fail(runtime, exc) from None
    runtime.close()
    console.print(
        f"proposal {updated.id}: {updated.state} (approved by {', '.join(updated.approved_by)})",
        highlight=False,
        markup=False,
    )


@app.command()
def reject(
    proposal: Annotated[str, typer.Argument(help="Proposal id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required; kept in the audit record).")],
) -> None:
    """Reject a proposal as the local operator, with a reason."""
    from governance.decisions.proposals import ProposalError
    from governance.errors import PolicyDenied

    runtime = Runtime()
    try:
        updated = runtime.decisions.reject(runtime.operator(), proposal, reason)
    except (PolicyDenied, ProposalError) as exc:
        raise _fail(runtime, exc) from None
    runtime.close()
    console.print(f"proposal {updated.id}: {updated.state}", highlight=False, markup=False)


def _alert_command(runtime: Runtime, alert: str, action: str, until: str | None, reason: str) -> None:
    """Acknowledge, snooze or resolve an alert as the local operator; prints its new state."""
    from datetime import UTC, datetime

    from governance.decisions.alerts import AlertError
    from governance.errors import PolicyDenied

    moment = None
    try:
        if until is not None:
            try:
                moment = datetime.fromisoformat(until)
            except ValueError:
                raise AlertError(f"--until {until[:40]!r} is not an ISO 8601 date-time (2026-12-03T18:00)") from None
            moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        updated = runtime.decisions.update_alert(runtime.operator(), alert, action, moment, reason)  # type: ignore[arg-type]
    except (PolicyDenied, AlertError) as exc:
        raise _fail(runtime, exc) from None
    runtime.close()
    snoozed = f" (snoozed until {updated.snoozed_until:%Y-%m-%d %H:%M})" if updated.snoozed() else ""
    console.print(f"alert {updated.id}: {updated.state}{snoozed}", highlight=False, markup=False)


@app.command()
def ack(
    alert: Annotated[str, typer.Argument(help="Alert id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit record).")] = "",
) -> None:
    """Acknowledge an open alert as the local operator."""
    _alert_command(Runtime(), alert, "acknowledge", None, reason)


@app.command()
def snooze(
    alert: Annotated[str, typer.Argument(help="Alert id.")],
    until: Annotated[str, typer.Option("--until", help="Until when (ISO 8601 date-time, UTC if no offset).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit record).")] = "",
) -> None:
    """Snooze an alert until a time in the future."""
    _alert_command(Runtime(), alert, "snooze", until, reason)


@app.command()
def resolve(
    alert: Annotated[str, typer.Argument(help="Alert id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit record).")] = "",
) -> None:
    """Resolve an alert as the local operator."""
    _alert_command(Runtime(), alert, "resolve", None, reason)
