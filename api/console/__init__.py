"""The web console (graph explorer, scenario dashboard, lineage and audit) served at /console.

The console is a static single-page app built from `api/console/web/` (npm + esbuild) into `api/console/static/`,
which ships inside the Python package; it talks only to this server's own GraphQL and REST endpoints with the
caller's bearer token, so it sees exactly what the access policy lets that token see. `mount_console(app)` adds it to
a FastAPI app; nothing is fetched from anywhere else at run time (the pages' Content-Security-Policy enforces that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.console.bundled_specs import bundled_specs

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONSOLE_PATH = "/console"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class ConsoleSignOn:
    """Single sign-on of the console: the OIDC issuer and the console's public client id (authorization code with
    PKCE in the browser; no secret)."""

    issuer: str
    client_id: str
    scope: str = "openid profile email"

    @classmethod
    def from_settings(cls, settings: Any) -> ConsoleSignOn | None:
        """The sign-on the settings configure (TWIN_OIDC_ISSUER and TWIN_OIDC_CONSOLE_CLIENT_ID), or None."""
        if not settings.oidc_issuer or not settings.oidc_console_client_id:
            return None
        return cls(settings.oidc_issuer, settings.oidc_console_client_id, settings.oidc_console_scope)

    @property
    def origin(self) -> str:
        """The issuer's origin, which the console's pages may connect to (discovery and the token endpoint)."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}"


def security_headers(sign_on: ConsoleSignOn | None) -> dict[str, str]:
    """The console's response headers: same-origin only, plus the identity provider's origin when it signs in."""
    if sign_on is None:
        return SECURITY_HEADERS
    policy = CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src 'self' {sign_on.origin}")
    return {**SECURITY_HEADERS, "Content-Security-Policy": policy}


class ConsoleBuildMissing(RuntimeError):
    """The console's built assets are not in the package (run the build in api/console/web)."""


class ConsoleFiles(StaticFiles):
    """The built console assets, served with a same-origin-only Content-Security-Policy."""

    def __init__(self, *, headers: dict[str, str], **options: Any) -> None:
        super().__init__(**options)
        self.headers = headers

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The asset at `path` with the console's security headers."""
        response = await super().get_response(path, scope)
        response.headers.update(self.headers)
        return response


def mount_console(app: FastAPI, static_dir: Path = STATIC_DIR, sign_on: ConsoleSignOn | None = None) -> None:
    """Serve the console at /console on `app` (idempotent: a second call changes nothing), with single sign-on
    through `sign_on`'s identity provider when given."""
    if any(getattr(route, "path", None) == CONSOLE_PATH for route in app.router.routes):
        return
    if not (static_dir / "index.html").is_file():
        raise ConsoleBuildMissing(
            f"the console's built assets are missing in {static_dir}; build them with "
            "`npm ci && npm run build` in api/console/web"
        )

    @app.get(CONSOLE_PATH, include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PATH}/", status_code=307)

    headers = security_headers(sign_on)

    @app.get(f"{CONSOLE_PATH}/bundled-scenarios.json", include_in_schema=False)
    async def console_bundled_specs() -> JSONResponse:
        specs: list[dict[str, Any]] = [asdict(spec) for spec in bundled_specs()]
        return JSONResponse(specs, headers=headers)

    @app.get(f"{CONSOLE_PATH}/sign-on.json", include_in_schema=False)
    async def console_sign_on() -> JSONResponse:
        if sign_on is None:
            return JSONResponse({"issuer": None}, headers=headers)
        body = {"issuer": sign_on.issuer, "clientId": sign_on.client_id, "scope": sign_on.scope}
        return JSONResponse(body, headers=headers)

    app.mount(CONSOLE_PATH, ConsoleFiles(directory=static_dir, html=True, headers=headers), name="console")
