"""Fixtures of the governance tests: SQLite and PostgreSQL stores (tests/conftest.py), a real OIDC issuer over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, Key, RSAKey


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'governance.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@dataclass
class OidcProvider:
    """A real OIDC issuer on localhost: discovery document + JWKS over HTTP, keys replaceable (rotation)."""

    issuer: str
    private_keys: dict[str, Key]
    jwks_hits: int = 0
    discovery_hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def jwks_url(self) -> str:
        """Where the JWKS is served."""
        return f"{self.issuer}/jwks.json"

    def add_key(self, key: Key) -> None:
        """Publish another signing key (what an issuer does when it rotates)."""
        with self.lock:
            self.private_keys[key.kid] = key

    def remove_key(self, kid: str) -> None:
        """Stop publishing a signing key (rotated away, or withdrawn because it leaked)."""
        with self.lock:
            del self.private_keys[kid]

    def jwks(self) -> dict:
        """The published public keys."""
        with self.lock:
            return {"keys": [{**k.as_dict(private=False), "use": "sig"} for k in self.private_keys.values()]}


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path == "/.well-known/openid-configuration":
                provider.discovery_hits += 1
                body = {
                    "issuer": provider.issuer,
                    "jwks_uri": provider.jwks_url,
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                }
            elif self.path == "/jwks.json":
                provider.jwks_hits += 1
                body = provider.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture(scope="module")
def oidc_keys() -> dict[str, Key]:
    """One RSA (2048) and one EC P-256 signing key, generated once per module."""
    return {
        "rsa-1": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
        "ec-1": ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
    }


@pytest.fixture
def oidc_provider(oidc_keys: dict[str, Key]) -> Iterator[OidcProvider]:
    """An OIDC issuer served by http.server on a free localhost port for the duration of one test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    provider = OidcProvider(issuer=f"http://127.0.0.1:{server.server_address[1]}", private_keys=dict(oidc_keys))
    server.RequestHandlerClass = _handler(provider)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
