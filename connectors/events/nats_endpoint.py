"""NATS JetStream endpoint: ``nats://[user:pass@]host[:4222]/STREAM/SUBJECT-PREFIX``.

Each event is published to subject ``SUBJECT-PREFIX.<type>`` (``twin-events.twin.updated``) with headers
``Nats-Msg-Id`` = event id (the stream drops a second copy inside its duplicate window: broker-side dedup
of at-least-once redeliveries) and ``content-type`` = ``application/cloudevents+json`` (JSON is UTF-8 by
definition, so no charset parameter); the body is the structured CloudEvent. A batch's Delivery completes when
every event has its JetStream PubAck, and each PubAck must name STREAM.

Publishing is JetStream's wire protocol used directly: a JetStream publish is a plain NATS publish with a reply
subject, and the PubAck is the JSON reply. Each event goes out with ``Client.publish`` and the reply subject
``<inbox>.<batch>.<index>``; one wildcard subscription receives every PubAck and counts it against its batch. At most
``max_in_flight`` events are unacknowledged across consecutive batches, in submission order, so the next batch is
sent while the previous one's PubAcks are still arriving. nats-py's ``publish_async`` does the same with a future, a
random token and a semaphore wait per event and parses each PubAck into a dataclass; counting per batch instead cut
the endpoint's CPU per event by about a third (tests/benchmarks/event_endpoints.py). A lost connection fails the
batches in flight at once; a batch abandoned on a timeout gives its share of the window back.

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
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoServersError, StaleConnectionError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
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
        self._acks: PubAcks | None = None  # the PubAcks awaited on the current connection
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
        self._js = self._nc.jetstream(timeout=self._options.timeout_s)
        self._acks = PubAcks(self._nc.new_inbox(), self._stream, self._options.max_in_flight, self.url)
        await self._nc.subscribe(self._acks.subject, cb=self._acks.receive)

    async def _connection_closed(self) -> None:
        """Fail the batches still awaiting PubAcks: they will not come on a closed connection."""
        cause = f": {self._error_text(self._last_error)}" if self._last_error else ""
        if self._acks is not None:
            self._acks.fail_all(EndpointUnreachable(self.url, f"connection to NATS lost{cause}"))

    async def _issue(self, events: list[TwinEvent]) -> Awaitable[object]:
        if self._nc is None or self._nc.is_closed:
            await self._open_connection()  # the previous connection was lost; reconnect for this batch
        assert self._nc is not None and self._acks is not None
        nc, acks, prefix, headers = self._nc, self._acks, self._prefix, self._headers
        batch = acks.open_batch(events)
        try:
            for index, event in enumerate(events):
                await acks.room()
                batch.sent += 1  # counted from here: `abandon` gives its window share back even if not sent
                if batch.future.done():  # a PubAck of this batch was already a refusal
                    break
                await nc.publish(
                    nats_subject(prefix, event.type),
                    event.body,
                    reply=batch.reply(index),
                    headers={**headers, "Nats-Msg-Id": event.id},
                )
        except BaseException as exc:
            acks.abandon(batch)
            raise self._translate(exc, f"event {events[max(batch.sent - 1, 0)].id}") from None
        return acks.acknowledged(batch)

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


class _Batch:
    """One batch's events on their way: how many were sent and how many PubAcks are still awaited."""

    __slots__ = ("events", "future", "number", "pending", "prefix", "sent")

    def __init__(self, events: list[TwinEvent], number: int, inbox: str) -> None:
        self.events = events
        self.number = number
        self.prefix = f"{inbox}.{number}."
        self.sent = 0  # events published so far
        self.pending = len(events)  # PubAcks not received yet
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def reply(self, index: int) -> str:
        """The reply subject of the batch's `index`-th event's PubAck."""
        return f"{self.prefix}{index}"

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class PubAcks:
    """The PubAcks of one connection, received on one wildcard subscription and counted against their batches;
    at most `window` events are published and unacknowledged at a time."""

    def __init__(self, inbox: str, stream: str, window: int, url: str) -> None:
        self.subject = f"{inbox}.*.*"
        self._inbox = inbox
        self._stream = stream
        self._window = window
        self._url = url
        self._batches: dict[int, _Batch] = {}
        self._next = 0
        self._unacknowledged = 0  # events sent whose PubAck has not come, over the open batches
        self._room = asyncio.Event()
        self._room.set()

    def open_batch(self, events: list[TwinEvent]) -> _Batch:
        """A batch about to be published, known to `receive` from now on."""
        batch = _Batch(events, self._next, self._inbox)
        self._next += 1
        self._batches[batch.number] = batch
        return batch

    async def room(self) -> None:
        """Wait until one more event may be sent without exceeding the window."""
        while self._unacknowledged >= self._window:
            self._room.clear()
            await self._room.wait()
        self._unacknowledged += 1

    async def acknowledged(self, batch: _Batch) -> None:
        """Wait for every PubAck of `batch` (or its first refusal); an abandoned batch gives back its window share."""
        try:
            await batch.future
        finally:
            self.abandon(batch)

    def abandon(self, batch: _Batch) -> None:
        """Stop counting `batch`: PubAcks that still come for it are ignored and free no window."""
        if self._batches.pop(batch.number, None) is not None:
            self._release(batch.sent - (len(batch.events) - batch.pending))

    def fail_all(self, error: BaseException) -> None:
        """Fail every batch still awaiting PubAcks."""
        for batch in list(self._batches.values()):
            batch.fail(error)
            self.abandon(batch)

    async def receive(self, msg: Msg) -> None:
        """One PubAck (or JetStream's refusal, or a no-responders status) for an event of an open batch."""
        number, _, index = msg.subject[len(self._inbox) + 1 :].partition(".")
        batch = self._batches.get(int(number))
        if batch is None:  # an abandoned batch's late reply
            return
        batch.pending -= 1
        self._release(1)
        event = batch.events[int(index)]
        if msg.headers and msg.headers.get("Status") == "503":
            batch.fail(EndpointRefused(self._url, f"no JetStream stream answered for event {event.id}"))
            return
        try:
            ack = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            batch.fail(EndpointRefused(self._url, f"event {event.id}: the PubAck is not JSON: {msg.data[:80]!r}"))
            return
        error = ack.get("error") if isinstance(ack, dict) else None
        if error is not None or not isinstance(ack, dict):
            detail = error.get("description", error) if isinstance(error, dict) else ack
            code = f" (code {error.get('err_code', error.get('code'))})" if isinstance(error, dict) else ""
            batch.fail(EndpointRefused(self._url, f"JetStream refused event {event.id}: {detail}{code}"))
            return
        if ack.get("stream") != self._stream:
            batch.fail(EndpointRefused(self._url, f"event {event.id} was stored in stream {ack.get('stream')!r}"))
            return
        if batch.pending == 0 and not batch.future.done():
            batch.future.set_result(None)

    def _release(self, count: int) -> None:
        self._unacknowledged -= count
        if self._unacknowledged < self._window:
            self._room.set()


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
