"""`twin demo`: the whole twin, end to end, on the sample enterprise."""

from __future__ import annotations

import json
from importlib import resources
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from api.cli.demo_run import DemoResult, living_sample, run_demo
from api.runtime import Runtime
from connectors.mapping import MappingError
from connectors.registry import RegistryError
from connectors.sample.demo import SAMPLE_CONNECTORS
from connectors.sample.enterprise import SampleEnterpriseError
from connectors.schedule import DEFAULT_INTERVAL_SECONDS
from connectors.source import SourceError
from connectors.sync import SyncError
from governance.errors import GovernanceError
from graph.errors import GraphError
from ontology.errors import OntologyError

console = Console()
_ERRORS = (
    SampleEnterpriseError,
    RegistryError,
    MappingError,
    SourceError,
    SyncError,
    GraphError,
    OntologyError,
    GovernanceError,
)


def demo(
    size: Annotated[
        str, typer.Option(help="Sample size: tiny, small, medium, large, or a number of people.")
    ] = "small",
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards (default).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of the tour.")] = False,
    still: Annotated[
        bool,
        typer.Option(
            "--still", help="While serving, do not write new orders and HR changes into the sample's databases."
        ),
    ] = False,
) -> None:
    """Build the sample enterprise's sources, sync them with lineage and audit, print tokens and example queries,
    then serve the API with GraphiQL (re-running reuses the data directory and duplicates nothing)."""
    runtime = Runtime()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as bars:
            tasks: dict[str, Any] = {}

            def advance(connector: str, entity: str, done: int, total: int | None) -> None:
                key = f"{connector} {entity}"
                if key not in tasks:
                    tasks[key] = bars.add_task(key, total=total)
                bars.update(tasks[key], completed=done, total=total if total is not None else done)

            result = run_demo(runtime, int(size) if size.isdigit() else size, progress=advance)
    except _ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        runtime.close()
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(_summary(result)))
    else:
        _print_tour(runtime, result)
    if not serve:
        runtime.close()
        return
    import uvicorn

    from api.http.app import create_app

    settings = runtime.settings
    if settings.runtime_enabled:
        from api.cli.serve import check_live_configuration

        check_live_configuration()
    # the sample connectors are scheduled only here (connectors.yaml keeps them off): every 30 s, faster when living
    runtime.schedule_every.update(dict.fromkeys(SAMPLE_CONNECTORS, DEFAULT_INTERVAL_SECONDS))
    activity = None if still else living_sample(runtime)
    console.print(
        f"\nserving on http://{settings.api_host}:{settings.api_port}  (GraphiQL: /graphql, console: "
        "/console, REST: /docs) — Ctrl-C stops"
    )
    if settings.runtime_enabled:
        console.print(
            "the sources are synced by themselves while it serves (schedules in connectors.yaml; "
            "TWIN_RUNTIME_ENABLED=false turns that off); /ready shows each connector's lag"
        )
    if settings.runtime_enabled and (settings.data_dir / "automations.yaml").is_file():
        console.print(
            f"automations run too ({settings.data_dir / 'automations.yaml'}: reorder, machine maintenance, supplier "
            "at risk, KPI breach); their alerts and proposals wait in the console's Inbox"
        )
    if activity is not None:
        console.print(
            f"the sample enterprise moves: a new order or HR change every {activity.every_seconds:g} s, "
            f"the sample connectors synced every {settings.demo_sync_seconds:g} s (--still turns that off; "
            "the console's Activity view shows it)"
        )
    try:
        uvicorn.run(
            create_app(runtime, live=settings.runtime_enabled),
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
        )
    finally:
        if activity is not None:
            activity.stop()
        runtime.close()


def _summary(result: DemoResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 2),
        "sample": {
            "size": result.manifest.size,
            "people": result.manifest.people,
            "rows": result.manifest.total_rows,
            "generated": result.generated,
        },
        "syncs": {r.connector: {"status": r.status, **r.counts} for r in result.reports},
        "examples": result.examples.__dict__ if result.examples else None,
        "roles": sorted(result.tokens),
    }


def _print_tour(runtime: Runtime, result: DemoResult) -> None:
    manifest = result.manifest
    state = "generated" if result.generated else "reused"
    console.print(
        f"[bold]Enterprise Twin demo[/bold] — sample enterprise '{manifest.size}' ({manifest.people} people, "
        f"{manifest.total_rows} source rows, {state}) in {result.seconds:.1f} s"
    )
    table = Table(title="syncs (HR, CRM, ERP → twin graph, with lineage and audit)")
    for column in ("connector", "status", "read", "created", "updated", "unchanged", "quarantined"):
        table.add_column(column, justify="right" if column not in ("connector", "status") else "left")
    for report in result.reports:
        c = report.counts
        table.add_row(
            report.connector,
            report.status,
            *(str(c[k]) for k in ("read", "created", "updated", "unchanged", "quarantined")),
        )
    console.print(table)
    stats = runtime.store.stats()
    console.print(f"twin graph: {stats.twins} twins, {stats.links} links ({runtime.store.url})\n")
    base = f"http://{runtime.settings.api_host}:{runtime.settings.api_port}"
    console.print("[bold]tokens[/bold] (paste into your shell; hr is scoped to Plant A):")
    for role, token in result.tokens.items():
        typer.echo(f"export TOKEN_{role.upper()}={token}")
    ex = result.examples
    assert ex is not None
    impact = (
        '{ impact(uid: \\"%s\\", maxDepth: 3) { depth via twin { uid __typename ... on Entity { name } } } }'
        % ex.supplier
    )
    lineage = (
        '{ lineage(uid: \\"%s\\", property: \\"email\\") { sourceSystem sourceObject recordKey sourceField '
        "runId mappingRule value } }" % ex.employee
    )
    console.print("\n[bold]architect[/bold] — what breaks if this supplier fails?")
    typer.echo(
        f'curl -s {base}/graphql -H "Authorization: Bearer $TOKEN_ARCHITECT" '
        f"-H 'Content-Type: application/json' -d '{{\"query\": \"{impact}\"}}'"
    )
    console.print("\n[bold]executive[/bold] — a 30-day castings-supplier outage, 30 replications against baseline:")
    typer.echo("twin scenario run bundled:supplier_outage_30d")
    spec = resources.files("simulation").joinpath("scenarios/supplier_outage_30d.yaml")
    typer.echo(
        f'curl -s {base}/operations/scenarios -H "Authorization: Bearer $TOKEN_EXECUTIVE" '
        "-H 'Content-Type: application/json' "
        f'-d "$(python3 -c \'import json, sys; print(json.dumps({{"spec": open(sys.argv[1]).read(), '
        f'"replications": 10}}))\' {spec})"   # then GET /operations/jobs/ID'
    )
    private = (
        '{ aggregate(className: Employee, metrics: [{fn: COUNT}, {fn: AVG, field: \\"salary\\"}]) '
        "{ metrics { name value privacy { epsilon accuracy95 } } } }"
    )
    console.print("\n[bold]analyst[/bold] — headcount and mean salary, with differential privacy (no person's row):")
    typer.echo(
        f'curl -s {base}/graphql -H "Authorization: Bearer $TOKEN_ANALYST" '
        f"-H 'Content-Type: application/json' -d '{{\"query\": \"{private}\"}}'"
    )
    typer.echo("twin privacy budget")
    console.print("\n[bold]compliance[/bold] — where did this employee's e-mail come from? (value shown hashed)")
    typer.echo(
        f'curl -s {base}/graphql -H "Authorization: Bearer $TOKEN_COMPLIANCE" '
        f"-H 'Content-Type: application/json' -d '{{\"query\": \"{lineage}\"}}'"
    )
    typer.echo(f"twin lineage {ex.employee} email")
