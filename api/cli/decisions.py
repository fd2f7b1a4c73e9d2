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


automations_app = typer.Typer(
    help="Automations of DATA_DIR/automations.yaml: list, add, update, enable, disable, remove.",
    no_args_is_help=True,
)
app.add_typer(automations_app, name="automations")


def _definition(text: str, option: str) -> dict[str, object]:
    """A definition given as YAML or JSON text, or as @FILE (a YAML or JSON file)."""
    from pathlib import Path

    import yaml

    from governance.decisions.management import AutomationChangeError
    from ontology.safe_yaml import load_yaml

    source = option
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise AutomationChangeError(f"{option}: no file {text[1:][:200]!r}")
        source, text = str(path), path.read_text(encoding="utf-8")
    try:
        value = load_yaml(text, source)
    except yaml.YAMLError as exc:
        raise AutomationChangeError(f"{source}: not valid YAML or JSON: {str(exc)[:300]}") from None
    if not isinstance(value, dict):
        raise AutomationChangeError(f"{source}: a definition is a mapping (trigger, condition, alert, action, ...)")
    return value


def _manage(change: str, name: str, body: dict[str, object] | None = None, enabled: bool = True) -> None:
    """Make one change of the automations as the local operator; prints what it did."""
    from governance.decisions.management import AutomationChangeError, AutomationManager
    from governance.errors import PolicyDenied

    runtime = Runtime()
    try:
        manager = AutomationManager(
            runtime.settings.data_dir / "automations.yaml",
            runtime.ontology,
            runtime.policy,
            runtime.decisions.action_types,
            runtime.audit,
        )
        subject = runtime.operator()
        if change == "create":
            done = manager.create(subject, name, body or {})
        elif change == "update":
            done = manager.update(subject, name, body or {})
        elif change == "enabled":
            done = manager.set_enabled(subject, name, enabled)
        else:
            done = manager.delete(subject, name)
    except (AutomationChangeError, PolicyDenied) as exc:
        raise _fail(runtime, exc) from None
    runtime.close()
    versions = f"{done.version_before or '-'} -> {done.version_after or '-'}"
    console.print(f"automation {done.name}: {done.change}d ({versions})", highlight=False, markup=False)


@automations_app.command("list")
def list_automations(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The automations of the file, checked (an error names file, line and term)."""
    from governance.decisions.automations import AutomationError

    runtime = Runtime()
    try:
        rules = runtime.automations().automations
    except AutomationError as exc:
        raise _fail(runtime, exc) from None
    runtime.close()
    if as_json:
        typer.echo(json.dumps([{"name": r.name, "enabled": r.enabled, **r.definition} for r in rules], default=str))
        return
    table = Table(title=f"automations ({len(rules)})")
    for column in ("name", "enabled", "trigger", "class", "role", "condition", "outputs", "version"):
        table.add_column(column)
    for r in rules:
        outputs = ", ".join(
            x for x in (f"alert:{r.alert.severity}" if r.alert else "", r.action.type if r.action else "") if x
        )
        table.add_row(
            r.name, "yes" if r.enabled else "no", r.trigger, r.cls, r.role, r.condition.source[:60], outputs, r.version
        )
    console.print(table)


@automations_app.command("add")
def add_automation(
    name: Annotated[str, typer.Argument(help="The new automation's name.")],
    definition: Annotated[str, typer.Option("--definition", "-d", help="Its definition as YAML/JSON text, or @FILE.")],
) -> None:
    """Add an automation (checked like the file; a running twin picks it up at once)."""
    from governance.decisions.management import AutomationChangeError

    try:
        body = _definition(definition, "--definition")
    except AutomationChangeError as exc:
        raise _fail(Runtime(), exc) from None
    _manage("create", name, body)


@automations_app.command("update")
def update_automation(
    name: Annotated[str, typer.Argument(help="The automation's name.")],
    changes: Annotated[
        str, typer.Option("--set", help="Top-level keys to replace, as YAML/JSON text or @FILE (null removes).")
    ],
) -> None:
    """Change an automation's trigger, condition, alert, action or role (checked like the file)."""
    from governance.decisions.management import AutomationChangeError

    try:
        body = _definition(changes, "--set")
    except AutomationChangeError as exc:
        raise _fail(Runtime(), exc) from None
    _manage("update", name, body)


@automations_app.command("enable")
def enable_automation(name: Annotated[str, typer.Argument(help="The automation's name.")]) -> None:
    """Enable an automation."""
    _manage("enabled", name, enabled=True)


@automations_app.command("disable")
def disable_automation(name: Annotated[str, typer.Argument(help="The automation's name.")]) -> None:
    """Disable an automation (it stays in the file; nothing evaluates it)."""
    _manage("enabled", name, enabled=False)


@automations_app.command("remove")
def remove_automation(name: Annotated[str, typer.Argument(help="The automation's name.")]) -> None:
    """Remove an automation (its alerts and proposals stay)."""
    _manage("delete", name)
