"""`twin graph ...`: statistics, read-only Cypher, impact analysis, server control."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.runtime import Runtime
from governance.audit import AuditEvent
from graph.errors import GraphError, TwinNotFound
from graph.lifecycle import HIDDEN
from graph.model import ReadScope
from graph.store import GraphStore
from graph.transfer import TransferError, export_graph, read_graph_file
from ontology.errors import OntologyError

app = typer.Typer(help="Query and inspect the twin graph.", no_args_is_help=True)
console = Console()


AsOf = Annotated[
    str | None,
    typer.Option("--as-of", help="Read the graph as it was at this ISO 8601 time (replayed from history)."),
]


ValidAt = Annotated[
    str | None,
    typer.Option(
        "--valid-at",
        help="With the values valid at this ISO 8601 time by the sources' effective dates (mappings' valid_from), "
        "as known at --as-of (default now).",
    ),
]


def _when(text: str | None, name: str = "--as-of") -> dt.datetime | None:
    """An ISO 8601 option value as a datetime (naive means UTC); None when not given."""
    return None if text is None else _time(text, name)


def _time(text: str, name: str) -> dt.datetime:
    """ISO 8601 text as a datetime (naive means UTC)."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text[:40]!r} is not an ISO 8601 date and time", param_hint=name) from None


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
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_of: AsOf = None,
    valid_at: ValidAt = None,
) -> None:
    """Count twins and links, by class and by relationship type."""
    when, valid = _when(as_of), _when(valid_at, "--valid-at")

    def action(runtime: Runtime) -> None:
        result = runtime.store.at(when, valid).stats()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "twins": result.twins,
                        "links": result.links,
                        "by_class": result.by_class,
                        "by_type": result.by_type,
                    }
                )
            )
            return
        console.print(f"{result.twins} twins, {result.links} links  ({runtime.store.url})")
        table = Table()
        table.add_column("class / relationship")
        table.add_column("count", justify="right")
        for name, count in sorted(result.by_class.items(), key=lambda kv: -kv[1]):
            table.add_row(escape(name), str(count))
        for name, count in sorted(result.by_type.items(), key=lambda kv: -kv[1]):
            table.add_row(escape(f"-[{name}]->"), str(count))  # brackets are not Rich markup here
        console.print(table)

    _run(action)


@app.command()
def query(
    cypher: Annotated[str, typer.Argument(help="A read-only Cypher query.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=JSON parameter.")] = None,
    as_of: AsOf = None,
    valid_at: ValidAt = None,
) -> None:
    """Run read-only Cypher and print the rows as JSON lines (writes are refused)."""
    params: dict[str, Any] = {}
    for item in param or []:
        name, equals, raw = item.partition("=")
        if not equals or not name:
            raise typer.BadParameter(
                f"{item!r} must be NAME=JSON (text that is not JSON is taken as text)", param_hint="--param"
            )
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw

    when, valid = _when(as_of), _when(valid_at, "--valid-at")

    def action(runtime: Runtime) -> None:
        for row in runtime.store.at(when, valid).query(cypher, params):
            typer.echo(json.dumps(row, default=str))

    _run(action)


@app.command()
def impact(
    uid: Annotated[str, typer.Argument(help="The twin that fails.")],
    depth: Annotated[int, typer.Option(help="How many hops to follow.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    include_retired: Annotated[bool, typer.Option(help="Follow retired twins too (left out by default).")] = False,
    as_of: AsOf = None,
    valid_at: ValidAt = None,
) -> None:
    """Show everything that transitively depends on a twin, with the chain that links it."""
    when, valid = _when(as_of), _when(valid_at, "--valid-at")

    def action(runtime: Runtime) -> None:
        reader = runtime.store.at(when, valid)
        start = reader.get(uid)
        if start is None:
            raise TwinNotFound(f"no twin with uid {uid!r}" + (f" at {as_of}" if as_of else ""))
        scope = ReadScope() if include_retired else ReadScope(hidden_states=HIDDEN)
        hits = reader.impact(uid, max_depth=depth, scope=scope)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {"uid": h.twin.uid, "class": h.twin.cls, "depth": h.depth, "path": h.path, "via": h.via}
                        for h in hits
                    ]
                )
            )
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
def transition(
    uid: Annotated[str, typer.Argument(help="The twin to move.")],
    state: Annotated[str, typer.Argument(help="planned, active, suspended or retired.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
) -> None:
    """Move a twin along its lifecycle (planned, active, suspended, retired) as the operator; audited, kept in
    history. Retired twins are left out of queries, impact and studies."""

    def action(runtime: Runtime) -> None:
        from governance.lifecycle import transition_twin

        moved = transition_twin(
            uid,
            state,
            store=runtime.store,
            policy=runtime.policy,
            audit=runtime.audit,
            subject=runtime.operator(),
            reason=reason,
        )
        console.print(f"{moved.cls} {escape(moved.uid)}: {moved.before} -> {moved.after}", highlight=False)

    _run(action)


@app.command()
def diff(
    start: Annotated[str, typer.Argument(help="From this ISO 8601 time ...")],
    end: Annotated[str | None, typer.Argument(help="... to this one (default: now).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List the twins and links that changed between two times, with the fields that changed."""
    since, until = _time(start, "FROM"), _when(end, "TO")

    def action(runtime: Runtime) -> None:
        deltas = runtime.store.diff(since, until)
        if as_json:
            for d in deltas:
                typer.echo(
                    json.dumps(
                        {
                            "kind": d.kind,
                            "op": d.op,
                            "uid": d.uid,
                            "class": d.cls,
                            "type": d.link_type,
                            "target": d.target,
                            "fields": list(d.fields),
                        }
                    )
                )
            return
        table = Table()
        for column in ("change", "twin / link", "class", "fields"):
            table.add_column(column)
        for d in deltas:
            name = d.uid if d.kind == "twin" else f"{d.uid} -{d.link_type}-> {d.target}"
            table.add_row(d.op, escape(name), d.cls or "", ", ".join(d.fields))
        console.print(f"{len(deltas)} changes")
        console.print(table)

    _run(action)


@app.command("export")
def export_(path: Annotated[Path, typer.Argument(help="JSON Lines file to write.")]) -> None:
    """Write every twin and link to a JSON Lines file (to move the graph to another backend, or keep a copy)."""

    def action(runtime: Runtime) -> None:
        partial = path.with_name(path.name + ".partial")  # the file appears whole or not at all
        try:
            with partial.open("w", encoding="utf-8") as out:
                written = export_graph(runtime.store, out)
            partial.replace(path)
        except OSError as exc:
            raise TransferError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        runtime.audit.append(
            AuditEvent.for_subject(
                runtime.operator(),
                "graph.export",
                "allow",
                variables={"file": str(path)},
                policy_version=runtime.policy.version,
                rows_returned=written.twins + written.links,
            )
        )
        console.print(f"{written.twins} twins and {written.links} links written to {path}", highlight=False)

    _run(action)


@app.command("import")
def import_(path: Annotated[Path, typer.Argument(help="JSON Lines file written by `twin graph export`.")]) -> None:
    """Load a JSON Lines file: a graph that does not exist yet in one bulk write, any other by upserts."""

    def action(runtime: Runtime) -> None:
        twins, links = read_graph_file(path)
        operator = runtime.operator()
        store, summary = GraphStore.load(
            runtime.settings.resolved_graph_url,
            runtime.ontology,
            twins,
            links,
            **runtime.graph_options(),
            actor=operator.sub,
            source=f"import:{path.name}",
        )
        store.close()
        runtime.audit.append(
            AuditEvent.for_subject(
                operator,
                "graph.import",
                "allow",
                variables={"file": str(path)},
                policy_version=runtime.policy.version,
                rows_returned=summary.created + summary.updated,
                detail=f"{len(twins)} twins, {len(links)} links",
            )
        )
        console.print(
            f"{summary.created} created, {summary.updated} updated, {summary.unchanged} unchanged "
            f"({len(twins)} twins, {len(links)} links from {path})",
            highlight=False,
        )

    _run(action)


@app.command()
def stop(data_dir: Annotated[Path | None, typer.Option(help="Data directory; default from settings.")] = None) -> None:
    """Stop the embedded graph server of the data directory (other clients reconnect by restarting it)."""
    from graph.embedded import stop_embedded

    target = (data_dir or Runtime().settings.data_dir) / "graph"
    console.print("stopped" if stop_embedded(target) else f"no server was running for {target}")
