"""`twin serve`: the GraphQL and REST API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from api.settings import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind; default TWIN_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default TWIN_API_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes; default TWIN_API_WORKERS.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the governed GraphQL API (POST /graphql, GraphiQL on GET) and the REST operations (/docs)."""
    import uvicorn

    settings = get_settings()
    if settings.runtime_enabled:
        check_live_configuration()
    uvicorn.run(
        "api.http.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers or settings.api_workers,
        log_level=log_level,
        access_log=False,
    )


def check_live_configuration() -> None:
    """Refuse to start, with the problem named, when connectors.yaml, routes.yaml or automations.yaml is wrong (the
    runtime that serves them would fail inside the server's start-up)."""
    import os

    from api.runtime import Runtime
    from connectors.registry import ConnectorRegistry, RegistryError
    from connectors.routes import RouteError
    from governance.decisions.automations import AutomationError

    runtime = Runtime()
    try:
        ConnectorRegistry.load(runtime.ontology, data_dir=runtime.settings.data_dir, secrets=dict(os.environ))
        runtime.routes()
        runtime.automations()
    except (RegistryError, RouteError, AutomationError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()
