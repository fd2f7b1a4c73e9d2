"""The `twin` command line: one entry point, one sub-command group per area, each imported only when it runs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import typer
from typer import _click as click  # typer 0.29 vendors Click; its groups take these types
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """Where a top-level command lives and what `twin --help` says of it, so listing it imports nothing."""

    target: str  # "module:attribute" — a Typer app (a group) or a function (a single command)
    help: str


COMMANDS: dict[str, LazyCommand] = {
    "ontology": LazyCommand("api.cli.ontology:app", "Inspect, check and export the ontology."),
    "graph": LazyCommand("api.cli.graph:app", "Query and inspect the twin graph."),
    "connect": LazyCommand(
        "api.cli.connect:app", "Connect source systems: list connectors, run syncs, inspect quarantine and lineage."
    ),
    "lineage": LazyCommand("api.cli.lineage:app", "Property-level lineage of twins."),
    "scenario": LazyCommand(
        "api.cli.scenario:app", "What-if studies on the twin: run scenarios, compare them against baseline."
    ),
    "forecast": LazyCommand(
        "api.cli.forecast:app",
        "Forecasts of KPI and demand series: run, show, backtest; model versions: list, approve, promote, drift.",
    ),
    "audit": LazyCommand("api.cli.audit:app", "Verify and export the audit log."),
    "token": LazyCommand(
        "api.cli.token:token",
        "Print a bearer token the local API server trusts (development; use an OIDC provider in production).",
    ),
    "erase": LazyCommand(
        "api.cli.erase:erase",
        "Blank the twin's PII fields in the graph, its history, lineage "
        "values, sync ledger and identity match keys, compact the graph's append-only log and destroy the "
        "subject's data key (every sealed copy, backups included, becomes unreadable); the audit chain still verifies.",
    ),
    "privacy": LazyCommand("api.cli.privacy:app", "Differential-privacy budgets of the roles: spent, left, renewal."),
    "keys": LazyCommand("api.cli.keys:app", "The master key and the per-subject data keys it wraps."),
    "routes": LazyCommand("api.cli.routes:app", "Event routes: where the twin's changes go (DATA_DIR/routes.yaml)."),
    "decisions": LazyCommand(
        "api.cli.decisions:app",
        "Proposed actions and alerts of the automations: list, show, approve, reject, ack, snooze, resolve.",
    ),
    "run": LazyCommand(
        "api.cli.run:run",
        "Keep every scheduled connector in sync by itself (schedules in "
        "connectors.yaml; one runtime per connector) and deliver the change feed to every event "
        "route (routes.yaml).",
    ),
    "serve": LazyCommand(
        "api.cli.serve:serve",
        "Serve the governed GraphQL API (POST /graphql, GraphiQL on GET) and the REST operations (/docs).",
    ),
    "db": LazyCommand("api.cli.db:app", "The relational stores' schema: show its revision, upgrade it."),
    "demo": LazyCommand(
        "api.cli.demo:demo",
        "Build the sample enterprise's sources, sync them with lineage and "
        "audit, print tokens and example queries, then serve the API with GraphiQL (re-running "
        "reuses the data directory and duplicates nothing).",
    ),
}


def load_command(name: str) -> click.Command:
    """The real Click command behind a top-level name (imports its module)."""
    module_name, _, attribute = COMMANDS[name].target.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        command: click.Command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """Lists commands from `COMMANDS` (help text only) and imports a command's module when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every top-level command, in the order `COMMANDS` gives."""
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A placeholder carrying the help line: enough for `twin --help` and completion."""
        entry = COMMANDS.get(cmd_name)
        return None if entry is None else TyperCommand(cmd_name, help=entry.help, short_help=entry.help)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command about to run, imported now."""
        name, placeholder, rest = super().resolve_command(ctx, args)
        if name is None or placeholder is None:
            return name, placeholder, rest
        return name, load_command(name), rest


app = typer.Typer(
    name="twin",
    cls=LazyGroup,
    help="Enterprise Twin: a knowledge-graph digital twin of the enterprise.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


STORELESS = frozenset({"db", "ontology", "token"})
"""Commands that run without the relational store (every other one refuses to start on a store older than the code)."""


@app.callback()
def twin(ctx: typer.Context) -> None:
    """Enterprise Twin: a knowledge-graph digital twin of the enterprise."""
    if ctx.invoked_subcommand is None or ctx.invoked_subcommand in STORELESS or ctx.resilient_parsing:
        return
    from api.runtime import outdated_store

    problem = outdated_store()
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
