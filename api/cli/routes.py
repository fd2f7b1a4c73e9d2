"""`twin routes list | check | test ROUTE | replay ROUTE --from SEQ`: the event routes of DATA_DIR/routes.yaml."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.runtime import Runtime
from connectors.routes import Route, RouteError

app = typer.Typer(help="Event routes: where the twin's changes go (DATA_DIR/routes.yaml).", no_args_is_help=True)
console = Console()


def _routes(runtime: Runtime) -> list[Route]:
    try:
        return runtime.routes()
    except RouteError as exc:
        runtime.close()
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _named(runtime: Runtime, name: str) -> Route:
    routes = {r.name: r for r in _routes(runtime)}
    if name not in routes:
        runtime.close()
        console.print(
            f"[red]error:[/red] no route named {name[:80]!r}; known: {', '.join(sorted(routes)) or 'none'}",
            highlight=False,
        )
        raise typer.Exit(1)
    return routes[name]


@app.command("list")
def list_routes(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Each route: endpoint (credentials redacted), role, filter, and how far behind the feed's head it is."""
    from connectors.route_delivery import RouteCursors, redacted

    runtime = Runtime()
    try:
        routes = _routes(runtime)
        cursors = RouteCursors(runtime.settings.resolved_database_url)
        head = runtime.store.feed.head()
        if any(r.kind == "openlineage" for r in routes):
            runtime.lineage  # noqa: B018 - creates the sync-run log an OpenLineage route's backlog is counted in
        rows = []
        for r in routes:
            if r.kind == "openlineage":  # cursor: runs sent; behind: runs whose START or final event is owed
                rows.append(
                    {
                        "route": r.name,
                        "endpoint": redacted(r.endpoint),
                        "role": r.role,
                        "payload": "openlineage",
                        "cursor": cursors.sent_runs(r.name),
                        "delivered": None,
                        "behind": len(cursors.unsent_runs(r.name, 1_000_000)),
                    }
                )
                continue
            seq, delivered = cursors.get(r.name)
            rows.append(
                {
                    "route": r.name,
                    "endpoint": redacted(r.endpoint),
                    "role": r.role,
                    "payload": r.payload,
                    "cursor": seq,
                    "delivered": delivered,
                    "behind": head - seq,
                }
            )
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps({"head": head, "routes": rows}))
        return
    table = Table(title=f"event routes (feed head {head})")
    for column in ("route", "endpoint", "role", "payload", "cursor", "delivered", "behind"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("route", "endpoint", "role", "payload", "cursor", "delivered", "behind")))
    console.print(table)


@app.command()
def check() -> None:
    """Read and check routes.yaml (classes, relationships, properties, conditions, roles, secrets); exit 1 naming the
    problem."""
    from governance.identity import Subject

    runtime = Runtime()
    try:
        routes = _routes(runtime)
        for r in routes:
            subject = Subject(sub=f"route:{r.name}", roles=frozenset({r.role}))
            if r.kind == "openlineage" and not runtime.policy.decide(subject, "operation", "lineage.export").allowed:
                console.print(
                    f"[red]error:[/red] {r.file}:{r.line}: route {r.name!r}: role: {r.role!r} may not "
                    "export lineage (lineage.export), which an OpenLineage route needs",
                    highlight=False,
                )
                raise typer.Exit(1)
    finally:
        runtime.close()
    console.print(
        f"{len(routes)} route(s) OK: {', '.join(r.name for r in routes) or 'none configured'}", highlight=False
    )


@app.command()
def test(route: Annotated[str, typer.Argument(help="Route name.")]) -> None:
    """Send one `route.test` event through the route's endpoint and report whether it was taken."""
    from connectors.events.cloudevent import TwinEvent
    from connectors.events.errors import EndpointError
    from connectors.route_delivery import open_route_endpoint

    runtime = Runtime()
    try:
        chosen = _named(runtime, route)
        _refuse_openlineage(runtime, chosen, "test")
        event = TwinEvent(
            id=f"test-{uuid.uuid4()}",
            source=runtime.settings.event_source,
            type="route.test",
            subject=f"route:{chosen.name}",
            time=datetime.now(UTC),
            data={"route": chosen.name},
        )
        try:
            endpoint = open_route_endpoint(chosen)
            try:
                endpoint.publish([event])
            finally:
                endpoint.close()
        except EndpointError as exc:
            _audit_test(runtime, chosen, event.id, f"failed: {exc}")
            console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        _audit_test(runtime, chosen, event.id, "delivered")
    finally:
        runtime.close()
    console.print(f"route {chosen.name}: test event {event.id} delivered", highlight=False)


def _refuse_openlineage(runtime: Runtime, route: Route, command: str) -> None:
    """An OpenLineage route carries run events, not the feed: `test` and `replay` do not apply to it."""
    if route.kind == "openlineage":
        runtime.close()
        console.print(
            f"[red]error:[/red] route {route.name!r} sends OpenLineage run events of sync runs; "
            f"`twin routes {command}` applies to change-feed routes only",
            highlight=False,
        )
        raise typer.Exit(1)


def _audit_test(runtime: Runtime, route: Route, event_id: str, outcome: str) -> None:
    """The audit record of a test event sent through a route's endpoint (credentials redacted)."""
    from connectors.route_delivery import redacted
    from governance.audit import AuditEvent, Decision

    runtime.audit.append(
        AuditEvent.for_subject(
            runtime.operator(),
            "route.test",
            Decision.ALLOW,
            variables={"route": route.name, "event": event_id},
            policy_version=runtime.policy.version,
            detail=f"{redacted(route.endpoint)}: {outcome}"[:500],
        )
    )


@app.command()
def replay(
    route: Annotated[str, typer.Argument(help="Route name.")],
    from_seq: Annotated[int, typer.Option("--from", help="First sequence number to deliver again.", min=1)],
) -> None:
    """Deliver the feed again from sequence number SEQ (the running runtime picks it up; receivers dedupe by id)."""
    from connectors.route_delivery import RouteCursors
    from governance.audit import AuditEvent, Decision

    runtime = Runtime()
    try:
        chosen = _named(runtime, route)
        _refuse_openlineage(runtime, chosen, "replay")
        head = runtime.store.feed.head()
        if from_seq > head + 1:
            console.print(f"[red]error:[/red] --from {from_seq} is past the feed's end (head {head})", highlight=False)
            raise typer.Exit(1)
        RouteCursors(runtime.settings.resolved_database_url).rewind(chosen.name, from_seq - 1)
        runtime.audit.append(
            AuditEvent.for_subject(
                runtime.operator(),
                "route.replay",
                Decision.ALLOW,
                variables={"route": chosen.name, "from": from_seq},
                policy_version=runtime.policy.version,
            )
        )
    finally:
        runtime.close()
    console.print(f"route {chosen.name} will deliver again from {from_seq} (head {head})", highlight=False)
