"""OpenLineage HTTP endpoint: run events POSTed to an OpenLineage API (``http(s)://host/api/v1/lineage``).

The OpenLineage HTTP transport's wire format: one RunEvent per POST, ``Content-Type: application/json``, the
event as its spec JSON, optionally ``Authorization: Bearer <api key>``. Any 2xx is acceptance; another status, a
connection failure or no answer within the timeout fails the batch (the events before it were taken; a
redelivery repeats them, and OpenLineage consumers key a run's events by runId and eventType, so a repeat
replaces rather than duplicates). Marquez and other consumers answer 201 or 200.

Client: httpx (as the webhook endpoint), not openlineage-python's own ``HttpTransport``: that transport logs and
swallows failures by default and retries on its own schedule, where a route must see each failure to keep its
cursor, back off and report suspension like every other route.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from .endpoint_url import parse_endpoint_url, scrub
from .errors import EndpointConfigError, EndpointRefused, EndpointTimeout, EndpointUnreachable


class OpenLineageEndpoint:
    """POSTs OpenLineage run events (spec JSON dicts) to one OpenLineage HTTP API, in order."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        client_name: str = "enterprise-twin",
    ) -> None:
        address = parse_endpoint_url(url)
        if address.scheme not in ("http", "https"):
            raise EndpointConfigError(address.redacted, "an OpenLineage endpoint is an http:// or https:// URL")
        self.url = address.redacted
        self._target = address.url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._secrets = tuple(s for s in (api_key, address.password) if s)
        headers = {"user-agent": client_name, "content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s), follow_redirects=False, headers=headers
        )

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        """POST every event, in order; EndpointError on the first that is not accepted."""
        deadline = time.monotonic() + self._timeout_s
        for event in events:
            what = f"{event.get('eventType')} event of run {event.get('run', {}).get('runId')}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EndpointTimeout(self.url, f"batch not delivered within {self._timeout_s:g} s")
            try:
                response = self._client.post(self._target, content=orjson.dumps(event), timeout=remaining)
            except httpx.TimeoutException:
                raise EndpointTimeout(self.url, f"no answer for the {what} in time") from None
            except httpx.TransportError as exc:
                problem = scrub(f"{type(exc).__name__}: {exc}", self._secrets)[:300]
                raise EndpointUnreachable(self.url, f"{what}: {problem}") from None
            if not 200 <= response.status_code < 300:
                raise EndpointRefused(
                    self.url, f"the {what} answered HTTP {response.status_code} {response.reason_phrase}"
                )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()
