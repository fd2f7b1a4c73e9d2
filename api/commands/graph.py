"""`twin graph ...`: statistics, read-only Cypher, impact analysis, server control."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.runtime import Runtime
from graph.errors import GraphError
from ontology.errors import OntologyError

app = typer.Typer(help="Query and inspect the twin graph.", no_args_is_help=True)
console = Console()


def _run(action: Any) -> None:
    runtime = Runtime()
    try:
        action(runtime)
    except (GraphError, OntologyError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()


@app.command()
def stats(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Count twins and links, by class and by relationship type."""

    def action(runtime: Runtime) -> None:
        result = runtime.store.stats()
        if as_json:
            typer.echo(json.dumps({"twins": result.twins, "links": result.links, "by_class": result.by_class,
                                   "by_type": result.by_type}))
            return
        console.print(f"{result.twins} twins, {result.links} links  ({runtime.store.url})")
        table = Table()
        table.add_column("class / relationship")
        table.add_column("count", justify="right")
        for name, count in sorted(result.by_class.items(), key=lambda kv: -kv[1]):
            table.add_row(name, str(count))
        for name, count in sorted(result.by_type.items(), key=lambda kv: -kv[1]):
            table.add_row(f"-[{name}]->", str(count))
        console.print(table)

    _run(action)


@app.command()
def query(
    cypher: Annotated[str, typer.Argument(help="A read-only Cypher query.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=JSON parameter.")] = None,
) -> None:
    """Run read-only Cypher and print the rows as JSON lines (writes are refused)."""
    params: dict[str, Any] = {}
    for item in param or []:
        name, _, raw = item.partition("=")
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw

    def action(runtime: Runtime) -> None:
        for row in runtime.store.query(cypher, params):
            typer.echo(json.dumps(row, default=str))

    _run(action)


@app.command()
def impact(
    uid: Annotated[str, typer.Argument(help="The twin that fails.")],
    depth: Annotated[int, typer.Option(help="How many hops to follow.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show everything that transitively depends on a twin, with the chain that links it."""

    def action(runtime: Runtime) -> None:
        start = runtime.store.require(uid)
        hits = runtime.store.impact(uid, max_depth=depth)
        if as_json:
            typer.echo(json.dumps([{"uid": h.twin.uid, "class": h.twin.cls, "depth": h.depth, "path": h.path,
                                    "via": h.via} for h in hits]))
            return
        console.print(f"{len(hits)} twins depend on {start.cls} {uid} ({start.properties.get('name', '')})")
        table = Table()
        for column in ("depth", "uid", "class", "name", "chain"):
            table.add_column(column)
        for h in hits:
            chain = h.path[0] + "".join(f" -{t}- {u}" for t, u in zip(h.via, h.path[1:], strict=True))
            table.add_row(str(h.depth), h.twin.uid, h.twin.cls, str(h.twin.properties.get("name", "")), chain)
        console.print(table)

    _run(action)


@app.command()
def stop(data_dir: Annotated[Path | None, typer.Option(help="Data directory; default from settings.")] = None) -> None:
    """Stop the embedded graph server of the data directory (other clients reconnect by restarting it)."""
    from graph.embedded import stop_embedded

    target = (data_dir or Runtime().settings.data_dir) / "graph"
    console.print("stopped" if stop_embedded(target) else f"no server was running for {target}")
