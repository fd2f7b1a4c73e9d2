"""NATS JetStream endpoint: ``nats://[user:pass@]host[:4222]/STREAM/SUBJECT-PREFIX``.

Each event is published to subject ``SUBJECT-PREFIX.<type>`` (``twin-events.twin.updated``) with headers
``Nats-Msg-Id`` = event id (the stream drops a second copy inside its duplicate window: broker-side dedup
of at-least-once redeliveries), ``Nats-Expected-Stream`` = STREAM and ``content-type`` =
``application/cloudevents+json``; the body is the structured CloudEvent. publish() returns when every
event has its JetStream PubAck; up to ``max_in_flight`` are awaited at once.

Client: faststream's ``NatsBroker`` (over nats-py). It gives typed publishing to a stream with a PubAck and
the expected-stream check built in, and the same library serves Kafka and RabbitMQ here, so the three
brokers share one way of connecting and publishing. The stream is not created here: opening checks it
exists (a route must not silently create storage) and names it when it does not.

Dedup note: ``Nats-Msg-Id`` is the event id alone, so two sources writing the same ids to one stream would
dedup each other; give each source (twin) its own stream or subject prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faststream.nats import NatsBroker
from nats.errors import ConnectionClosedError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from .cloudevent import STRUCTURED_CONTENT_TYPE, TwinEvent, to_cloudevent_json
from .endpoint_base import AsyncClientEndpoint, EndpointOptions, gather_in_window
from .endpoint_url import EndpointAddress
from .errors import EndpointConfigError, EndpointRefused, EndpointTimeout, EndpointUnreachable

if TYPE_CHECKING:
    from nats.js.api import PubAck

_SUBJECT_TOKEN_FORBIDDEN = set(" \t\r\n*>")


def nats_subject(prefix: str, event_type: str) -> str:
    """The subject an event of this type is published to."""
    return f"{prefix}.{event_type}"


class NatsJetStreamEndpoint(AsyncClientEndpoint):
    """Publishes CloudEvents to a JetStream stream with Nats-Msg-Id dedup."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        if len(address.path_parts) != 2 or not all(address.path_parts):
            raise EndpointConfigError(address.redacted, "expected nats://host:port/STREAM/SUBJECT-PREFIX")
        self._stream, self._prefix = address.path_parts
        if set(self._stream) & (_SUBJECT_TOKEN_FORBIDDEN | {"."}) or set(self._prefix) & _SUBJECT_TOKEN_FORBIDDEN:
            raise EndpointConfigError(address.redacted, "stream name or subject prefix holds a space or wildcard")
        self._broker: NatsBroker | None = None
        super().__init__(address, options)

    async def _connect(self) -> None:
        address, options = self._address, self._options
        userinfo = ""
        if address.username:
            userinfo = address.username + (f":{address.password}" if address.password is not None else "") + "@"
        self._broker = NatsBroker(
            f"nats://{userinfo}{address.netloc(4222)}",
            name=options.client_name,
            connect_timeout=max(1, int(options.connect_timeout_s)),
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            logger=None,
            apply_types=False,
        )
        try:
            await self._broker.connect()
        except NoServersError:
            raise EndpointUnreachable(self.url, "no NATS server answered") from None
        except OSError as exc:
            raise EndpointUnreachable(self.url, self._error_text(exc)) from None
        except Exception as exc:  # noqa: BLE001 - e.g. authorization violation
            raise EndpointRefused(self.url, f"NATS refused the connection: {self._error_text(exc)}") from None
        try:
            info = await self._broker.connection.jetstream().stream_info(self._stream)
        except NotFoundError:
            raise EndpointRefused(self.url, f"JetStream stream {self._stream!r} does not exist") from None
        except NoStreamResponseError:
            raise EndpointRefused(self.url, "JetStream is not enabled on this NATS server") from None
        subjects = info.config.subjects or []
        if not any(_captures_prefix(pattern, self._prefix) for pattern in subjects):
            raise EndpointRefused(
                self.url, f"stream {self._stream!r} captures no subject under {self._prefix!r} (its subjects: {subjects})"
            )

    async def _send(self, events: list[TwinEvent]) -> None:
        acks = await gather_in_window([self._publish_one(e) for e in events], self._options.max_in_flight)
        for event, ack in zip(events, acks, strict=True):
            if ack.stream != self._stream:
                raise EndpointRefused(self.url, f"event {event.id} was stored in stream {ack.stream!r}")

    async def _publish_one(self, event: TwinEvent) -> PubAck:
        assert self._broker is not None
        subject = nats_subject(self._prefix, event.type)
        try:
            return await self._broker.publish(
                to_cloudevent_json(event),
                subject,
                headers={"Nats-Msg-Id": event.id, "content-type": STRUCTURED_CONTENT_TYPE},
                stream=self._stream,
                timeout=self._options.timeout_s,
            )
        except NoStreamResponseError:
            raise EndpointRefused(self.url, f"no JetStream stream answered for subject {subject!r}") from None
        except APIError as exc:
            raise EndpointRefused(self.url, f"JetStream refused event {event.id}: {self._error_text(exc)}") from None
        except NatsTimeoutError:
            raise EndpointTimeout(self.url, f"no PubAck for event {event.id}") from None
        except ConnectionClosedError:
            raise EndpointUnreachable(self.url, "connection to NATS closed") from None

    async def _disconnect(self) -> None:
        if self._broker is not None:
            await self._broker.stop()


def _captures_prefix(pattern: str, prefix: str) -> bool:
    """Whether a stream subject pattern can capture some subject PREFIX.<type> ('*' one token, '>' the rest)."""
    p_tokens, x_tokens = pattern.split("."), prefix.split(".")
    for i, token in enumerate(x_tokens):
        if i >= len(p_tokens):
            return False
        if p_tokens[i] == ">":
            return True
        if p_tokens[i] not in ("*", token):
            return False
    return len(p_tokens) > len(x_tokens)
