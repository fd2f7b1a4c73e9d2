"""NATS JetStream endpoint: ``nats://[user:pass@]host[:4222]/STREAM/SUBJECT-PREFIX``.

Each event is published to subject ``SUBJECT-PREFIX.<type>`` (``twin-events.twin.updated``) with headers
``Nats-Msg-Id`` = event id (the stream drops a second copy inside its duplicate window: broker-side dedup
of at-least-once redeliveries) and ``content-type`` = ``application/cloudevents+json`` (JSON is UTF-8 by
definition, so no charset parameter); the body is the structured CloudEvent. A batch's Delivery completes when
every event has its JetStream PubAck, and each PubAck must name STREAM. Events are sent with nats-py's
``publish_async`` (one reply subscription for all PubAcks, a future per event, at most ``max_in_flight``
unacknowledged across consecutive batches), in submission order, so the next batch is sent while the previous
one's PubAcks are still arriving. Per event this costs about two thirds of ``js.publish`` (which sends a request and
awaits its reply with a timer per message); a lost connection fails the batches in flight at once.

No ``Nats-Expected-Stream`` header: opening checks that STREAM captures the subjects, JetStream refuses streams
with overlapping subjects, and every PubAck's stream is checked, so the header would only repeat that check — at a
cost: nats-py checks and rewrites every header value of every message in Python, and headers were a fifth of the
publish path's CPU (the route throughput goal is measured against a publisher sending the same two headers).

Client: nats-py directly (the client faststream's NATS broker wraps). faststream was tried first and
measured: its per-message publish path (command object, middleware chain, correlation id) cost about
100 us per message here and cut JetStream throughput to 0.55-0.7 of a plain nats-py publisher with the same
window (tests/benchmarks/event_endpoints.py); the route's goal is >= 0.75, and faststream adds nothing a
publish-only endpoint needs. Automatic reconnection is off so an unreachable server fails fast at open with a
clear error; after a lost connection the next publish() reconnects. The stream is not created here: opening
checks it exists and captures the prefix (a route must not silently create storage).

Dedup note: ``Nats-Msg-Id`` is the event id alone, so two sources writing the same ids to one stream would
dedup each other; give each source (twin) its own stream or subject prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import ConnectionClosedError, NoServersError, StaleConnectionError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import PubAck
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from .cloudevent import TwinEvent
from .endpoint_base import AsyncClientEndpoint, EndpointOptions
from .endpoint_url import EndpointAddress
from .errors import (
    EndpointConfigError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
)

_SUBJECT_TOKEN_FORBIDDEN = set(" \t\r\n*>")
#: The structured-mode content type, without the charset parameter HTTP carries (NATS headers are per message).
NATS_CONTENT_TYPE = "application/cloudevents+json"


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
        self._nc: NatsClient | None = None
        self._last_error: Exception | None = None
        self._js: JetStreamContext | None = None
        self._headers = {"content-type": NATS_CONTENT_TYPE}
        self._in_flight: dict[int, list[asyncio.Future[PubAck]]] = {}  # batch -> its PubAck futures
        super().__init__(address, options)

    async def _connect(self) -> None:
        await self._open_connection()
        assert self._js is not None
        try:
            info = await self._js.stream_info(self._stream)
        except NotFoundError:
            raise EndpointRefused(self.url, f"JetStream stream {self._stream!r} does not exist") from None
        except (NoStreamResponseError, NatsTimeoutError):
            raise EndpointRefused(self.url, "JetStream is not enabled on this NATS server") from None
        subjects = info.config.subjects or []
        if not any(_captures_prefix(pattern, self._prefix) for pattern in subjects):
            raise EndpointRefused(
                self.url,
                f"stream {self._stream!r} captures no subject under {self._prefix!r} (its subjects: {subjects})",
            )

    async def _open_connection(self) -> None:
        address = self._address
        userinfo = ""
        if address.username:
            userinfo = address.username + (f":{address.password}" if address.password is not None else "") + "@"

        async def remember_error(error: Exception) -> None:
            """Keep the connection's last error for the next EndpointError (nats-py would only log it)."""
            self._last_error = error

        try:
            self._nc = await nats.connect(
                f"nats://{userinfo}{address.netloc(4222)}",
                name=self._options.client_name,
                connect_timeout=self._options.connect_timeout_s,
                allow_reconnect=False,
                error_cb=remember_error,
                closed_cb=self._connection_closed,
            )
        except NoServersError:
            raise EndpointUnreachable(self.url, "no NATS server answered") from None
        except OSError as exc:
            raise EndpointUnreachable(self.url, self._error_text(exc)) from None
        except NatsError as exc:  # e.g. authorization violation
            raise EndpointRefused(self.url, f"NATS refused the connection: {self._error_text(exc)}") from None
        self._js = self._nc.jetstream(
            timeout=self._options.timeout_s, publish_async_max_pending=self._options.max_in_flight
        )

    async def _connection_closed(self) -> None:
        """Fail the PubAcks still awaited: they will not come on a closed connection."""
        cause = f": {self._error_text(self._last_error)}" if self._last_error else ""
        for futures in self._in_flight.values():
            for future in futures:
                if not future.done():
                    future.set_exception(EndpointUnreachable(self.url, f"connection to NATS lost{cause}"))

    async def _issue(self, events: list[TwinEvent]) -> Awaitable[object]:
        if self._nc is None or self._nc.is_closed:
            await self._open_connection()  # the previous connection was lost; reconnect for this batch
        assert self._js is not None
        js, prefix, headers = self._js, self._prefix, self._headers
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for event in events:
                futures.append(
                    await js.publish_async(
                        nats_subject(prefix, event.type), event.body, headers={**headers, "Nats-Msg-Id": event.id}
                    )
                )
        except BaseException as exc:
            for future in futures:
                future.cancel()
            raise self._translate(exc, f"event {events[len(futures)].id}") from None
        self._in_flight[id(futures)] = futures
        return self._acknowledged(events, futures)

    async def _acknowledged(self, events: list[TwinEvent], futures: list[asyncio.Future[PubAck]]) -> None:
        """Wait for every PubAck of a batch; each must name the route's stream."""
        try:
            acks = await asyncio.gather(*futures)
        except BaseException as exc:
            failed = next((e for e, f in zip(events, futures, strict=True) if f.done() and not f.cancelled()), None)
            raise self._translate(exc, f"event {failed.id if failed else events[0].id}") from None
        finally:
            self._in_flight.pop(id(futures), None)
            for future in futures:
                if not future.done():
                    future.cancel()
        for event, ack in zip(events, acks, strict=True):
            if ack.stream != self._stream:
                raise EndpointRefused(self.url, f"event {event.id} was stored in stream {ack.stream!r}")

    def _translate(self, exc: BaseException, which: str) -> BaseException:
        """A nats-py error as the endpoint error it means (others unchanged)."""
        if isinstance(exc, NoStreamResponseError):
            return EndpointRefused(self.url, f"no JetStream stream answered for {which}")
        if isinstance(exc, APIError):
            return EndpointRefused(self.url, f"JetStream refused {which}: {self._error_text(exc)}")
        if isinstance(exc, NatsTimeoutError):
            return EndpointTimeout(self.url, f"no PubAck for {which}")
        if isinstance(exc, ConnectionClosedError | StaleConnectionError | OSError):
            cause = f": {self._error_text(self._last_error)}" if self._last_error else ""
            return EndpointUnreachable(self.url, f"connection to NATS lost{cause}")
        return exc

    async def _disconnect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


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
