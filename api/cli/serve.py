"""`twin serve`: the GraphQL and REST API under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from api.settings import get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind; default TWIN_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default TWIN_API_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes; default TWIN_API_WORKERS.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate (chain) to serve HTTPS with; default TWIN_TLS_CERT.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key of the certificate; default TWIN_TLS_KEY.")
    ] = None,
) -> None:
    """Serve the governed GraphQL API (POST /graphql, GraphiQL on GET) and the REST operations (/docs)."""
    import uvicorn

    settings = get_settings()
    cert, key = tls_files(tls_cert or settings.tls_cert, tls_key or settings.tls_key)
    check_keys()
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
        ssl_certfile=cert,
        ssl_keyfile=key,
    )


def tls_files(cert: Path | None, key: Path | None) -> tuple[str | None, str | None]:
    """The certificate and key files to serve HTTPS with (both or neither), checked readable; exits naming the
    problem otherwise."""
    if cert is None and key is None:
        return None, None
    problem = None
    if cert is None or key is None:
        problem = "--tls-cert and --tls-key (TWIN_TLS_CERT, TWIN_TLS_KEY) go together: give both or neither"
    else:
        for name, path in (("--tls-cert", cert), ("--tls-key", key)):
            if not path.is_file():
                problem = f"{name} {path} is not a file"
                break
    if problem is not None:
        Console(stderr=True).print(f"[red]error:[/red] {problem}", highlight=False)
        raise typer.Exit(2)
    return str(cert), str(key)


def check_keys() -> None:
    """Refuse to start, with the problem named, when the master key is missing or does not open the key ring."""
    from api.runtime import Runtime
    from governance.errors import KeyMaterialError

    runtime = Runtime()
    try:
        runtime.subject_keys  # noqa: B018 - opening the ring checks the master key
    except KeyMaterialError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        runtime.close()


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
