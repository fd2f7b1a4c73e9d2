"""Errors of the event endpoints: typed, raised where the problem is known, never carrying a credential.

Every message names the endpoint by its redacted URL (``amqp://guest:***@host:5672/``), never the password,
token or webhook secret. ``EndpointConfigError`` is permanent (fix the route); the others describe the
endpoint's state and a delivery loop may retry them with back-off.
"""

from __future__ import annotations


class EndpointError(Exception):
    """An event endpoint could not be opened or did not take a batch of events."""

    def __init__(self, endpoint: str, problem: str) -> None:
        super().__init__(f"{endpoint}: {problem}")
        self.endpoint = endpoint
        self.problem = problem


class EndpointConfigError(EndpointError):
    """The endpoint URL or its options are wrong (unknown scheme, malformed URL, missing option)."""


class EndpointUnreachable(EndpointError):
    """The broker or webhook could not be reached, or the connection was lost."""


class EndpointTimeout(EndpointUnreachable):
    """The broker or webhook did not answer within the endpoint's timeout."""


class EndpointRefused(EndpointError):
    """The broker or webhook answered and refused (authentication, missing stream/exchange, non-2xx, nack)."""


class EndpointClosed(EndpointError):
    """publish() was called on an endpoint that was already closed."""
