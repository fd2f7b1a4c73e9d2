"""`twin connect ...` (list, run, quarantine, unmerge, push-sql) and `twin connect lineage UID [PROPERTY]`."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.runtime import Runtime
from connectors.identity import IdentityError
from connectors.mapping import MappingError
from connectors.quarantine import QuarantineStore
from connectors.registry import ConnectorRegistry, RegistryError
from connectors.service import run_connector
from connectors.source import SourceError
from connectors.sync import SyncError, SyncReport
from governance.errors import GovernanceError
from graph.errors import GraphError
from ontology.errors import OntologyError

app = typer.Typer(
    help="Connect source systems: list connectors, run syncs, inspect quarantine and lineage.", no_args_is_help=True
)
console = Console()
_ERRORS = (
    RegistryError,
    MappingError,
    SourceError,
    SyncError,
    GraphError,
    OntologyError,
    GovernanceError,
    IdentityError,
)


def _registry(runtime: Runtime) -> ConnectorRegistry:
    # secrets referenced as ${NAME} in connectors.yaml come from the process environment of the command
    return ConnectorRegistry.load(runtime.ontology, data_dir=runtime.settings.data_dir, secrets=dict(os.environ))


def _guard(action: Any) -> None:
    runtime = Runtime()
    try:
        action(runtime)
    except _ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()


def _share(text: str | None) -> float | None:
    """A share given as N% (or N) of 0..100, as a fraction."""
    if text is None:
        return None
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise typer.BadParameter(f"expected a percentage such as 35%, got {text[:20]!r}") from None
    if not 0 <= value <= 100:
        raise typer.BadParameter(f"a percentage from 0% to 100%, got {text[:20]!r}")
    return value / 100


@app.command("list")
def list_connectors(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the configured connectors with their source kind, mapping and last run."""

    def action(runtime: Runtime) -> None:
        registry = _registry(runtime)
        from connectors.sync_state import SyncState

        state = SyncState(runtime.settings.resolved_database_url)
        rows: list[dict[str, Any]] = []
        for name in registry.names():
            config = registry.config(name)
            last = state.runs(name, limit=1)
            rows.append(
                {
                    "name": name,
                    "kind": config.kind,
                    "mapping": str(config.mapping_path),
                    "description": config.description,
                    "last_run": {
                        "status": last[0].status,
                        "started_at": last[0].started_at,
                        "counts": dict(last[0].counts),
                    }
                    if last
                    else None,
                }
            )
        if as_json:
            typer.echo(json.dumps(rows))
            return
        table = Table(title="connectors")
        for column in ("name", "kind", "mapping", "last run"):
            table.add_column(column)
        for row in rows:
            last_run = row["last_run"]
            table.add_row(
                row["name"],
                row["kind"],
                os.path.basename(row["mapping"]),
                f"{last_run['status']} {last_run['started_at'][:19]}" if last_run else "never",
            )
        console.print(table)

    _guard(action)


def _print_report(report: SyncReport) -> None:
    verb = "would " if report.dry_run else ""
    counts = report.counts
    console.print(
        f"[bold]{report.connector}[/bold] {report.mode}{' (dry run)' if report.dry_run else ''}: read {counts['read']} "
        f"records; twins and links: {verb}create {counts['created']}, {verb}update {counts['updated']}, "
        f"unchanged {counts['unchanged']}, {verb}delete {counts['deleted']}; quarantined {counts['quarantined']}, "
        f"pending links {counts['pending_links']}  ({report.timings.get('total', 0):.2f}s, run {report.run_id})",
        highlight=False,
    )
    table = Table()
    for column in ("entity", "read", "created", "updated", "unchanged", "deleted", "quarantined"):
        table.add_column(column, justify="right" if column != "entity" else "left")
    for e in report.entities:
        table.add_row(
            e.entity,
            *(str(getattr(e, k)) for k in ("read", "created", "updated", "unchanged", "deleted", "quarantined")),
        )
    console.print(table)
    for e in report.entities:
        if e.skipped:
            console.print(f"  {e.entity} skipped: {e.skipped}", highlight=False, markup=False)
        for kind, examples in e.examples.items():
            for example in examples:
                console.print(f"  {e.entity} {verb}{kind}: {example}", highlight=False)


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Connector name (see `twin connect list`).")],
    full: Annotated[bool, typer.Option("--full", help="Read everything and detect deletions.")] = False,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="Read changes since the watermark (default).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    entity: Annotated[list[str] | None, typer.Option("--entity", help="Only these entities.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    allow_deletions: Annotated[
        str | None,
        typer.Option(
            "--allow-deletions",
            help="Let this run delete up to N% of an entity's records (default: "
            "TWIN_SYNC_MAX_DELETE_SHARE, 20%); 100% also lets a full run that reads 0 rows delete everything.",
        ),
    ] = None,
) -> None:
    """Run a sync with progress bars and print its report (counts, examples, quarantined rows)."""
    share = _share(allow_deletions)
    if full and incremental:
        console.print("[red]error:[/red] give --full or --incremental, not both")
        raise typer.Exit(2)

    def action(runtime: Runtime) -> None:
        connector = _registry(runtime).connector(name)
        engine = runtime.sync_engine("twin connect")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=as_json,
            disable=as_json,
        ) as progress:
            tasks: dict[str, Any] = {}

            def advance(entity_name: str, done: int, total: int | None) -> None:
                if entity_name not in tasks:
                    tasks[entity_name] = progress.add_task(entity_name, total=total)
                progress.update(tasks[entity_name], completed=done, total=total if total is not None else done)

            try:
                report = run_connector(
                    engine,
                    connector,
                    subject=runtime.operator(),
                    policy=runtime.policy,
                    audit=runtime.audit,
                    mode="full" if full else "incremental",
                    dry_run=dry_run,
                    entities=entity or None,
                    progress=advance,
                    allow_deletions=share,
                )
            finally:
                connector.close()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "run_id": report.run_id,
                        "status": report.status,
                        "mode": report.mode,
                        "dry_run": report.dry_run,
                        "counts": report.counts,
                        "entities": {
                            e.entity: {
                                k: getattr(e, k)
                                for k in (
                                    "read",
                                    "created",
                                    "updated",
                                    "unchanged",
                                    "deleted",
                                    "quarantined",
                                    "skipped",
                                )
                            }
                            for e in report.entities
                        },
                        "examples": {e.entity: dict(e.examples) for e in report.entities},
                        "timings": dict(report.timings),
                    }
                )
            )
            return
        _print_report(report)

    _guard(action)


@app.command()
def quarantine(
    name: Annotated[str, typer.Argument(help="Connector name.")],
    all_rows: Annotated[bool, typer.Option("--all", help="Include rows later runs resolved.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Show the rows a connector's syncs quarantined, with the reason."""

    def action(runtime: Runtime) -> None:
        _registry(runtime).config(name)
        rows = QuarantineStore(runtime.settings.resolved_database_url).rows(
            name, include_resolved=all_rows, limit=limit
        )
        if as_json:
            for r in rows:
                typer.echo(
                    json.dumps(
                        {
                            "entity": r.entity,
                            "record_key": r.record_key,
                            "field": r.field,
                            "rule": r.rule,
                            "message": r.message,
                            "raw": r.raw,
                            "run_id": r.run_id,
                            "created_at": r.created_at,
                            "resolved_at": r.resolved_at,
                        },
                        default=str,
                    )
                )
            return
        table = Table(title=f"quarantine of {name} ({len(rows)} rows)")
        for column in ("entity", "record", "field", "rule", "message"):
            table.add_column(column)
        for r in rows:
            table.add_row(r.entity, r.record_key or "", r.field or "", r.rule, r.message)
        console.print(table)

    _guard(action)


@app.command()
def unmerge(
    natural_uid: Annotated[str, typer.Argument(help="The merged record's own uid, e.g. crm:contact:C7.")],
) -> None:
    """Split a record that identity resolution merged into another twin back into its own twin."""

    def action(runtime: Runtime) -> None:
        uid = runtime.sync_engine("twin connect").unmerge(natural_uid)
        console.print(f"{uid} is its own twin again", highlight=False)

    _guard(action)


def lineage(
    uid: Annotated[str, typer.Argument(help="Twin uid.")],
    prop: Annotated[str | None, typer.Argument(help="Only this property.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many records.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Where a twin's values came from: source system, object, record, field, run, mapping rule, transform."""

    def action(runtime: Runtime) -> None:
        records = runtime.lineage.where_from(uid, prop, limit=limit)
        if as_json:
            for r in records:
                typer.echo(
                    json.dumps(
                        {
                            "property": r.property,
                            "value": r.value,
                            "value_digest": r.value_digest,
                            "source_system": r.source_system,
                            "source_object": r.source_object,
                            "record_key": r.record_key,
                            "source_field": r.source_field,
                            "run_id": r.run_id,
                            "mapping_rule": r.mapping_rule,
                            "transform": r.transform,
                            "recorded_at": r.recorded_at.isoformat() if r.recorded_at else None,
                        },
                        default=str,
                    )
                )
            return
        if not records:
            console.print(f"no lineage recorded for {uid}{' ' + prop if prop else ''}", highlight=False, markup=False)
            return
        table = Table(title=escape(f"lineage of {uid}{' ' + prop if prop else ''}"))
        for column in ("property", "value", "source", "record", "field", "rule", "transform", "run", "recorded"):
            table.add_column(column)
        for r in records:
            value = json.dumps(r.value, default=str, ensure_ascii=False)[:40] if r.has_value else "(digest only)"
            cells = (
                r.property,
                value,
                f"{r.source_system}/{r.source_object}",
                r.record_key,
                r.source_field or "",
                r.mapping_rule or "",
                r.transform or "",
                r.run_id[:8],
                r.recorded_at.isoformat()[:19] if r.recorded_at else "",
            )
            table.add_row(*(escape(cell) for cell in cells))  # source data is text, never Rich markup
        console.print(table)

    _guard(action)


app.command("lineage")(lineage)


@app.command("push-sql")
def push_sql(
    name: Annotated[str, typer.Argument(help="A SQL connector with `push:` in connectors.yaml.")],
    install: Annotated[
        bool,
        typer.Option(
            "--install",
            help="Run the SQL in the source database (needs the right to create functions and triggers there).",
        ),
    ] = False,
) -> None:
    """Print (or install) the PostgreSQL trigger that makes each commit on the connector's tables notify the
    runtime, which then syncs the changed entity at once instead of at its next scheduled run."""

    def action(runtime: Runtime) -> None:
        from connectors.sql_push import install_triggers, trigger_sql
        from governance.audit import AuditEvent, Decision

        registry = _registry(runtime)
        push = registry.connector(name).open_source.push  # type: ignore[attr-defined]
        if push is None:
            raise RegistryError(
                f"connector {name!r} does not push: give its source `push: true` (a PostgreSQL "
                f"source) in connectors.yaml"
            )
        tables = push.tables(registry.mapping(name))
        if not tables:
            raise RegistryError(
                f"connector {name!r}: no entity reads a table (query entities need triggers on "
                f"the tables they join; see `twin connect push-sql` in the README)"
            )
        if not install:
            typer.echo(trigger_sql(push, tables), nl=False)
            return
        outcome = "installed"
        try:
            install_triggers(push, tables)
        except Exception as exc:
            outcome = f"failed: {type(exc).__name__}"
            raise SourceError(f"{name}: installing the triggers failed: {str(exc).splitlines()[0][:300]}") from None
        finally:
            runtime.audit.append(
                AuditEvent.for_subject(
                    runtime.operator(),
                    "connector.push.install",
                    Decision.ALLOW,
                    policy_version=runtime.policy.version,
                    variables={"connector": name, "channel": push.channel, "tables": [t for _, t in tables]},
                    detail=outcome,
                )
            )
        console.print(
            f"installed notify triggers on {', '.join(t for _, t in tables)} (channel {push.channel})",
            highlight=False,
            markup=False,
        )

    _guard(action)
