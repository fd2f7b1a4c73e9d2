"""`twin serve`: the GraphQL and REST API under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

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
    uvicorn.run(
        "api.app:create_app", factory=True, host=host or settings.api_host, port=port or settings.api_port,
        workers=workers or settings.api_workers, log_level=log_level, access_log=False,
    )
