"""The `twin` command line: one entry point, one sub-command group per area."""

from __future__ import annotations

import typer

from api.commands import audit as audit_commands
from api.commands import connect as connect_commands
from api.commands import graph as graph_commands
from api.commands import ontology as ontology_commands
from api.commands import scenario as scenario_commands
from api.commands.demo import demo
from api.commands.erase import erase
from api.commands.serve import serve
from api.commands.token import token

app = typer.Typer(
    name="twin",
    help="Enterprise Twin: a knowledge-graph digital twin of the enterprise.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(ontology_commands.app, name="ontology")
app.add_typer(graph_commands.app, name="graph")
app.add_typer(connect_commands.app, name="connect")
app.command("lineage")(connect_commands.lineage)  # a command, not a group: its arguments parse as written
app.add_typer(scenario_commands.app, name="scenario")
app.add_typer(audit_commands.app, name="audit")
app.command()(token)
app.command()(erase)
app.command()(serve)
app.command()(demo)


if __name__ == "__main__":
    app()
