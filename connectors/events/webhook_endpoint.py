"""Webhook endpoint: ``https://host/path`` (or ``http://``), one signed POST per event.

Each event is POSTed as the structured CloudEvent (``Content-Type: application/cloudevents+json``) with the
headers of ``webhook_signature`` (event id, timestamp, HMAC-SHA256 signature under the endpoint's secret,
``EndpointOptions.webhook_secret``, required). Events of a batch are sent one after the other, in order;
any answer outside 2xx, a connection failure or no answer within ``timeout_s`` fails the batch (the events
before it were delivered, and a redelivery repeats them with the same id, which the receiver dedups).

Client: httpx (already a dependency), synchronous, one connection pool per endpoint. Redirects are not
followed: a signed delivery goes to the configured URL or fails.
"""

from __future__ import annotations

import time

import httpx

from .cloudevent import STRUCTURED_CONTENT_TYPE, TwinEvent, to_cloudevent_json
from .endpoint_base import EndpointBase, EndpointOptions
from .endpoint_url import EndpointAddress
from .errors import (
    EndpointConfigError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
)
from .webhook_signature import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_signature,
)


class WebhookEndpoint(EndpointBase):
    """POSTs signed CloudEvents to an HTTP(S) receiver."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        super().__init__(address, options)
        if not options.webhook_secret:
            raise EndpointConfigError(address.redacted, "a webhook needs a signing secret (webhook_secret)")
        self._secret = options.webhook_secret
        self._client = httpx.Client(
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            follow_redirects=False,
            headers={"user-agent": options.client_name},
        )

    def _publish(self, events: list[TwinEvent]) -> None:
        deadline = time.monotonic() + self._options.timeout_s
        for event in events:
            body = to_cloudevent_json(event)
            timestamp = int(time.time())
            headers = {
                "content-type": STRUCTURED_CONTENT_TYPE,
                ID_HEADER: event.id,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: webhook_signature(self._secret, timestamp, body),
            }
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EndpointTimeout(self.url, f"batch not delivered within {self._options.timeout_s:g} s")
            try:
                response = self._client.post(
                    self._address.url,
                    content=body,
                    headers=headers,
                    timeout=httpx.Timeout(remaining, connect=min(remaining, self._options.connect_timeout_s)),
                )
            except httpx.TimeoutException:
                raise EndpointTimeout(self.url, f"no answer for event {event.id} in time") from None
            except httpx.TransportError as exc:
                raise EndpointUnreachable(self.url, f"event {event.id}: {self._error_text(exc)}") from None
            if not 200 <= response.status_code < 300:
                raise EndpointRefused(
                    self.url, f"event {event.id} answered HTTP {response.status_code} {response.reason_phrase}"
                )

    def _close(self) -> None:
        self._client.close()
