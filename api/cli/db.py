"""`twin db ...`: the relational stores' schema revision — show it, upgrade it, write the next revision."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from api.settings import get_settings
from graph.errors import GraphError
from graph.urls import redact_url

app = typer.Typer(help="The relational stores' schema: show its revision, upgrade it.", no_args_is_help=True)
console = Console()


@app.command()
def current(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the relational store's schema revision and the code's (exit 1 when the store needs `twin db upgrade`)."""
    from graph.relational import relational_engine
    from graph.store_schema import schema_state

    url = get_settings().resolved_database_url
    try:
        state = schema_state(relational_engine(url))
    except GraphError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(
            json.dumps({"store": redact_url(url), "revision": state.revision, "head": state.head, "empty": state.empty})
        )
    else:
        console.print(f"{redact_url(url)}: {state.describe}", highlight=False)
    if not (state.current or state.empty):
        raise typer.Exit(1)


@app.command()
def upgrade() -> None:
    """Upgrade the relational store's schema to this code's revision (a store of the release before Alembic is
    adopted first); back the database up before."""
    from graph.relational import relational_engine
    from graph.store_schema import upgrade as upgrade_store

    url = get_settings().resolved_database_url
    try:
        before, after = upgrade_store(relational_engine(url))
    except GraphError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if before == after:
        console.print(f"{redact_url(url)}: already at {after}", highlight=False)
    else:
        console.print(f"{redact_url(url)}: upgraded from {before or 'unversioned'} to {after}", highlight=False)


@app.command()
def revision(message: Annotated[str, typer.Argument(help="What the revision changes, one line.")]) -> None:
    """Write the next revision under graph/migrations/versions from the difference between the newest revision and
    the stores' tables (for contributors; review it before committing)."""
    from alembic import command
    from sqlalchemy import create_engine

    from graph.migrations import store_metadata
    from graph.store_schema import alembic_config, newest_revision

    newest = newest_revision()
    number = int(newest) + 1 if newest else 1
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            with engine.connect() as connection:
                config = alembic_config(engine, connection)
                command.upgrade(config, "head")
                connection.commit()
                config.attributes["metadata"] = store_metadata()
                scripts = command.revision(config, message, autogenerate=True, rev_id=f"{number:04d}")
        finally:
            engine.dispose()
    written = scripts[0] if isinstance(scripts, list) else scripts
    console.print(f"wrote {written.path if written else 'nothing'}", highlight=False)
