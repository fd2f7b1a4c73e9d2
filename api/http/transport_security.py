"""HTTP Strict Transport Security: responses served over TLS tell browsers to use HTTPS only from then on."""

from __future__ import annotations

from typing import Any


class StrictTransport:
    """ASGI middleware adding `Strict-Transport-Security: max-age=N` to every response of a TLS connection."""

    def __init__(self, app: Any, max_age: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age}; includeSubDomains".encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the request on; over https, add the header to the response's start."""
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, with_header)
