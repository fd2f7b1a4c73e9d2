"""`twin lineage UID [PROPERTY]` (where values came from) and `twin lineage export` (PROV-O or OpenLineage)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer import _click as click  # typer 0.29 vendors Click; its groups take these types
from typer.core import TyperGroup

from api.cli.connect import lineage as show_lineage
from api.runtime import Runtime
from governance.errors import GovernanceError
from governance.lineage_export import LineageFormat, export_lineage

console = Console(stderr=True)


class LineageCommands(TyperGroup):
    """`twin lineage UID ...` runs `show`; `twin lineage export ...` the export (a uid is never a command name)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Route a leading uid to `show`."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["show", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=LineageCommands, help="Property-level lineage of twins.", no_args_is_help=True)
app.command("show")(show_lineage)


@app.command("export")
def export(
    fmt: Annotated[LineageFormat, typer.Option("--format", "-f", help="prov-o (Turtle) or openlineage (JSON lines).")],
    run: Annotated[list[str] | None, typer.Option("--run", help="A run id to export (repeatable).")] = None,
    latest: Annotated[int, typer.Option(help="Without --run: this many most recent runs.")] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default stdout.")] = None,
) -> None:
    """Export runs and the provenance of every value they wrote, as W3C PROV-O or OpenLineage run events."""
    runtime = Runtime()
    try:
        result = export_lineage(
            runtime.lineage, runtime.audit, runtime.policy, runtime.operator(), fmt, tuple(run or ()), latest=latest
        )
    except GovernanceError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
    if output is None:
        typer.echo(result.text, nl=False)
    else:
        output.write_text(result.text, encoding="utf-8")
    console.print(
        f"exported {len(result.run_ids)} run(s), {result.records} provenance records as {result.format}"
        f"{'' if output is None else f' to {output}'}",
        highlight=False,
    )
