"""What every event endpoint shares: the submit/publish/close contract, options, and the async-client base.

``submit(batch)`` sends a batch and returns at once with a ``Delivery`` (a ``concurrent.futures.Future``) that
completes when every event of the batch is acknowledged, or fails with an ``EndpointError``. A caller may keep
several batches in flight: batches leave in the order they were submitted, and a batch submitted before a failure
that has not started yet fails with it without being sent (so nothing sent after a failure overtakes the events the
caller must resend). ``publish(batch)`` is ``submit(batch).result()``.

``EndpointBase`` sends on one sender thread per endpoint, a batch at a time (Redis, webhooks): the caller's own
work overlaps the sending. ``AsyncClientEndpoint`` runs an asyncio client on an ``EventLoopThread``: a batch's
events are handed to the client in order (``_issue``) and their acknowledgements awaited afterwards, so the next
batch is sent while the previous one's acknowledgements are on their way (NATS through nats-py's ``publish_async``
window, RabbitMQ through one ``OrderedWindow``, each of ``max_in_flight`` unacknowledged events shared by all
batches; Kafka through the producer's own batching); MQTT hands a batch to paho at once and waits for its PUBACKs
on the sender thread. Every step is bounded by the endpoint's timeouts, so a broker that does not answer ends in
``EndpointTimeout`` instead of a hang; any exception a transport did not translate becomes an ``EndpointError``
whose text is scrubbed of credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .cloudevent import TwinEvent
from .endpoint_url import EndpointAddress, scrub
from .errors import EndpointClosed, EndpointConfigError, EndpointError, EndpointTimeout, EndpointUnreachable
from .event_loop_thread import EventLoopThread

T = TypeVar("T")
#: A submitted batch: done when every event is acknowledged, or failed with an EndpointError.
Delivery = Future[None]


def delivered() -> Delivery:
    """A Delivery that is already complete (an empty batch)."""
    done: Delivery = Future()
    done.set_result(None)
    return done


@runtime_checkable
class EventEndpoint(Protocol):
    """A destination for twin events: submit sends a batch (at least once) and returns its pending Delivery.

    Safe to share between threads: batches leave in the order they were submitted.
    """

    @property
    def url(self) -> str:
        """The endpoint URL with credentials redacted."""
        ...

    def submit(self, events: Sequence[TwinEvent]) -> Delivery:
        """Send the batch after those submitted before it; the Delivery completes when every event is acknowledged
        and fails with an EndpointError otherwise (raises EndpointClosed at once after close())."""
        ...

    def publish(self, events: Sequence[TwinEvent]) -> None:
        """Deliver every event of the batch, in order, each acknowledged by the broker; raise on any failure."""
        ...

    def close(self) -> None:
        """Release connections and threads; idempotent."""
        ...


@dataclass(frozen=True)
class EndpointOptions:
    """How an endpoint connects and delivers; the URL says where."""

    timeout_s: float = 10.0
    """Longest a batch may take to be sent, and then to be acknowledged, before EndpointTimeout."""
    connect_timeout_s: float = 5.0
    """Longest opening the endpoint may take before EndpointUnreachable/EndpointTimeout."""
    max_in_flight: int = 256
    """Events sent and not yet acknowledged at most, across consecutive batches (NATS, AMQP, MQTT)."""
    webhook_secret: str | None = field(default=None, repr=False)
    """HMAC-SHA256 key for signing webhook requests (required for http:// and https://)."""
    redis_maxlen: int | None = None
    """Approximate cap of a Redis stream (XADD MAXLEN ~); the URL's ?maxlen= wins when both are given."""
    client_name: str = "enterprise-twin"
    """Client/connection name shown by the broker."""

    def __post_init__(self) -> None:
        """Refuse options no endpoint could run with."""
        for name in ("timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise EndpointConfigError("<options>", f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_in_flight < 1:
            raise EndpointConfigError("<options>", f"max_in_flight must be >= 1, got {self.max_in_flight!r}")
        if self.redis_maxlen is not None and self.redis_maxlen < 1:
            raise EndpointConfigError("<options>", f"redis_maxlen must be >= 1, got {self.redis_maxlen!r}")


class EndpointBase(ABC):
    """Closed-state bookkeeping and context-manager support shared by all endpoints."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        self._address = address
        self._options = options
        self._closed = False
        self._lock = threading.Lock()  # batches are handed over one at a time, so their order is the submit order
        self._epoch = 0  # failures so far: a batch submitted in an earlier epoch that has not started is not sent
        self._sender: ThreadPoolExecutor | None = None

    @property
    def url(self) -> str:
        """The endpoint URL with credentials redacted."""
        return self._address.redacted

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, events: Sequence[TwinEvent]) -> Delivery:
        """Send the batch after the ones submitted before it; its Delivery completes when all are acknowledged."""
        with self._lock:
            if self._closed:
                raise EndpointClosed(self.url, "submit() after close()")
            if not events:
                return delivered()
            return self._submit(list(events), self._epoch)

    def publish(self, events: Sequence[TwinEvent]) -> None:
        """Deliver every event of the batch or raise EndpointError."""
        self.submit(events).result()

    def close(self) -> None:
        """Release the endpoint's resources once (batches not sent yet fail with EndpointClosed)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sender = self._sender
        if sender is not None:
            sender.shutdown(wait=True)
        self._close()

    def _submit(self, events: list[TwinEvent], epoch: int) -> Delivery:
        """Queue the batch on the endpoint's sender thread (called holding the submit lock)."""
        if self._sender is None:
            self._sender = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"event-endpoint-{self._address.scheme}"
            )
        return self._sender.submit(self._publish_in_turn, events, epoch)

    def _publish_in_turn(self, events: list[TwinEvent], epoch: int) -> None:
        """Send one queued batch on the sender thread, unless the endpoint closed or an earlier batch failed."""
        self._check_turn(epoch)
        try:
            self._publish(events)
        except BaseException:
            self._failed()
            raise

    def _check_turn(self, epoch: int) -> None:
        """Refuse to send a batch submitted before a failure, or after close()."""
        if self._closed:
            raise EndpointClosed(self.url, "closed before the batch was sent")
        if epoch != self._epoch:
            raise EndpointUnreachable(self.url, "not sent: a batch submitted before it failed")

    def _failed(self) -> None:
        """A batch failed: the batches submitted before now that have not started are not sent."""
        self._epoch += 1

    def _error_text(self, exc: BaseException) -> str:
        """A library exception as text fit for an error message: type and message, credentials removed."""
        secrets = self._address.secrets() + ((self._options.webhook_secret,) if self._options.webhook_secret else ())
        text = str(exc) or repr(exc)
        return scrub(f"{type(exc).__name__}: {text}", secrets)[:300]

    @abstractmethod
    def _publish(self, events: list[TwinEvent]) -> None:
        """Deliver a non-empty batch."""

    @abstractmethod
    def _close(self) -> None:
        """Release connections."""


class AsyncClientEndpoint(EndpointBase):
    """An endpoint whose client is asyncio: connects on open, sends batches on a private loop thread."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        super().__init__(address, options)
        self._loop = EventLoopThread(f"event-endpoint-{address.scheme}")
        self._turn: asyncio.Lock | None = None  # held while a batch is handed to the client (created on the loop)
        try:
            self._run(self._connect(), options.connect_timeout_s, "connecting")
        except BaseException:
            self._run_cleanup()
            raise

    def _publish(self, events: list[TwinEvent]) -> None:
        self._submit(events, self._epoch).result()

    def _submit(self, events: list[TwinEvent], epoch: int) -> Delivery:
        """Hand the batch to the loop: it is sent after the batches before it, its acknowledgements awaited there."""
        return self._loop.submit(self._deliver(events, epoch))

    async def _deliver(self, events: list[TwinEvent], epoch: int) -> None:
        """Send the batch in its turn and wait for its acknowledgements, each step bounded by timeout_s."""
        timeout_s, doing = self._options.timeout_s, f"publishing {len(events)} event(s)"
        if self._turn is None:
            self._turn = asyncio.Lock()
        try:
            async with self._turn:
                self._check_turn(epoch)
                acknowledged = await asyncio.wait_for(self._issue(events), timeout_s)
            await asyncio.wait_for(acknowledged, timeout_s)
        except EndpointClosed:
            raise
        except EndpointError:
            self._failed()
            raise
        except TimeoutError:
            self._failed()
            raise EndpointTimeout(self.url, f"no answer within {timeout_s:g} s while {doing}") from None
        except Exception as exc:  # noqa: BLE001 - translated once, here, without credentials
            self._failed()
            raise EndpointError(self.url, f"{doing} failed: {self._error_text(exc)}") from None

    @abstractmethod
    async def _issue(self, events: list[TwinEvent]) -> Awaitable[object]:
        """Hand the batch to the client in order; return what completes when every event is acknowledged (called
        while no other batch is being handed over, so batches leave in submission order)."""

    def _close(self) -> None:
        self._run_cleanup()

    def _run_cleanup(self) -> None:
        # closing a broken connection fails; the loop must still stop
        with contextlib.suppress(Exception):
            self._loop.run(asyncio.wait_for(self._disconnect(), 5), 7)
        self._loop.stop()

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float, doing: str) -> T:
        """Run one step on the loop, bounded by timeout_s; every failure leaves as an EndpointError."""

        async def bounded() -> T:
            try:
                return await asyncio.wait_for(coro, timeout_s)
            except TimeoutError:
                raise EndpointTimeout(self.url, f"no answer within {timeout_s:g} s while {doing}") from None

        try:
            return self._loop.run(bounded(), timeout_s + 5)
        except EndpointError:
            raise
        except TimeoutError:
            raise EndpointTimeout(self.url, f"no answer within {timeout_s:g} s while {doing}") from None
        except Exception as exc:  # noqa: BLE001 - translated once, here, without credentials
            raise EndpointError(self.url, f"{doing} failed: {self._error_text(exc)}") from None

    @abstractmethod
    async def _connect(self) -> None:
        """Open the connection and check the destination exists; raise a typed EndpointError if not."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the connection."""


class OrderedWindow[R]:
    """Events sent one by one in submission order, at most `window` unacknowledged across all batches.

    `window` workers take the next queued event in turn and await its acknowledgement (`send(event)`), so sends
    leave in order without a semaphore's waiter scans and a batch's tail shares the window with the next batch's
    head. When a send fails, its batch fails, and so does every batch still queued (their events are not sent).
    Runs on one event loop.
    """

    def __init__(self, send: Callable[[TwinEvent], Awaitable[R]], window: int) -> None:
        self._send = send
        self._window = window
        self._queue: deque[tuple[TwinEvent, _BatchAcks]] = deque()
        self._workers: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None

    def put(self, events: Sequence[TwinEvent]) -> asyncio.Future[None]:
        """Queue a batch; the returned future completes when all its events are acknowledged (call on the loop)."""
        batch = _BatchAcks(len(events))
        self._queue.extend((event, batch) for event in events)
        if self._wake is None:
            self._wake = asyncio.Event()
        missing = min(self._window, len(self._queue)) - len(self._workers)
        for _ in range(max(0, missing)):
            self._workers.append(asyncio.ensure_future(self._work()))
        self._wake.set()
        return batch.future

    def fail_queued(self, error: BaseException) -> None:
        """Fail every batch still queued (its events not sent)."""
        while self._queue:
            _, batch = self._queue.popleft()
            batch.fail(error)

    async def close(self) -> None:
        """Stop the workers (events in flight are abandoned; their batches fail)."""
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        self.fail_queued(ConnectionError("the endpoint closed"))

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            event, batch = self._queue.popleft()
            if batch.future.done():  # an earlier event of the batch failed
                continue
            try:
                await self._send(event)
            except asyncio.CancelledError:
                batch.fail(ConnectionError("the endpoint closed before the acknowledgement"))
                raise
            except BaseException as exc:  # noqa: BLE001 - the batch's future carries it to its caller
                batch.fail(exc)
                self.fail_queued(exc)
                continue
            batch.acknowledged()


class _BatchAcks:
    """How many events of one batch still await their acknowledgement."""

    def __init__(self, size: int) -> None:
        self.pending = size
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def acknowledged(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
