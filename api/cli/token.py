"""`twin token`: issue a development token signed by the data directory's local key."""

from __future__ import annotations

from typing import Annotated

import typer

from api.runtime import Runtime
from governance.errors import GovernanceError
from governance.tokens import issue_token


def token(
    role: Annotated[list[str], typer.Option("--role", "-r", help="Role(s) to grant, e.g. architect.")],
    sub: Annotated[str, typer.Option(help="Subject (user id) of the token.")] = "developer",
    org: Annotated[str | None, typer.Option(help="Org unit uid (scopes the hr role).")] = None,
    hours: Annotated[int, typer.Option(help="Lifetime in hours.")] = 8,
) -> None:
    """Print a bearer token the local API server trusts (development; use an OIDC provider in production)."""
    settings = Runtime().settings
    try:
        typer.echo(issue_token(settings.data_dir, role, sub=sub, org_unit=org, ttl=hours * 3600))
    except GovernanceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
