"""`twin privacy ...`: where each role's differential-privacy budget stands (governance/privacy_budget.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.runtime import Runtime

app = typer.Typer(help="Differential-privacy budgets of the roles: spent, left, renewal.", no_args_is_help=True)
console = Console()


@app.command()
def budget(
    role: Annotated[str | None, typer.Option(help="Only this role.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each role with a privacy budget: its period, epsilon limit, spent and left (the read is audited)."""
    from governance.audit import AuditEvent, Decision

    runtime = Runtime()
    rules = {name: r.privacy for name, r in runtime.policy.roles.items() if r.privacy is not None}
    if role is not None:
        if role not in runtime.policy.roles:
            console.print(f"[red]unknown role {role!r}[/red]; roles: {', '.join(sorted(runtime.policy.roles))}")
            raise typer.Exit(2)
        rules = {name: rule for name, rule in rules.items() if name == role}
    states = [runtime.privacy_budget.state(rule) for rule in rules.values()]
    runtime.audit.append(
        AuditEvent.for_subject(
            runtime.operator(),
            "privacy.budget.read",
            Decision.ALLOW,
            variables={"role": role},
            policy_version=runtime.policy.version,
            rows_returned=len(states),
        )
    )
    rows: list[dict[str, object]] = [
        {
            "role": s.role,
            "period": s.period,
            "period_start": s.period_start.isoformat(),
            "epsilon_limit": s.limit,
            "epsilon_spent": round(s.spent, 9),
            "epsilon_left": round(s.remaining, 9),
        }
        for s in states
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        console.print("no role has a privacy budget in this policy" + (f" ({role})" if role else ""))
        return
    table = Table("role", "period", "since", "ε limit", "ε spent", "ε left")
    for s in states:
        table.add_row(s.role, s.period, s.period_start.isoformat(), f"{s.limit:g}", f"{s.spent:g}", f"{s.remaining:g}")
    console.print(table)
