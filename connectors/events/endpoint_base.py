"""What every event endpoint shares: the publish/close contract, options, and the async-client base.

``AsyncClientEndpoint`` runs an asyncio client on an ``EventLoopThread`` and bounds every call by the
endpoint's timeouts, so a broker that does not answer ends in ``EndpointTimeout`` instead of a hang; any
exception a transport did not translate becomes an ``EndpointError`` whose text is scrubbed of credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .cloudevent import TwinEvent
from .endpoint_url import EndpointAddress, scrub
from .errors import EndpointClosed, EndpointConfigError, EndpointError, EndpointTimeout
from .event_loop_thread import EventLoopThread

T = TypeVar("T")


@runtime_checkable
class EventEndpoint(Protocol):
    """A destination for twin events: publish delivers a whole batch (at least once) or raises EndpointError.

    Safe to share between threads: batches are delivered one at a time.
    """

    @property
    def url(self) -> str:
        """The endpoint URL with credentials redacted."""
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
    """Longest one publish() call may take before EndpointTimeout (the whole batch)."""
    connect_timeout_s: float = 5.0
    """Longest opening the endpoint may take before EndpointUnreachable/EndpointTimeout."""
    max_in_flight: int = 256
    """Events sent before waiting for their acknowledgements (NATS, Kafka, AMQP, MQTT)."""
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
        self._lock = threading.Lock()  # one batch at a time: a batch's order must not interleave with another's

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

    def publish(self, events: Sequence[TwinEvent]) -> None:
        """Deliver every event of the batch or raise EndpointError."""
        with self._lock:
            if self._closed:
                raise EndpointClosed(self.url, "publish() after close()")
            if events:
                self._publish(list(events))

    def close(self) -> None:
        """Release the endpoint's resources once (waits for a publish() in progress)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

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
    """An endpoint whose client is asyncio: connects on open, runs publish on a private loop thread."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        super().__init__(address, options)
        self._loop = EventLoopThread(f"event-endpoint-{address.scheme}")
        try:
            self._run(self._connect(), options.connect_timeout_s, "connecting")
        except BaseException:
            self._run_cleanup()
            raise

    def _publish(self, events: list[TwinEvent]) -> None:
        self._run(self._send(events), self._options.timeout_s, f"publishing {len(events)} event(s)")

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
    async def _send(self, events: list[TwinEvent]) -> None:
        """Send the batch and wait for every acknowledgement; raise a typed EndpointError on failure."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the connection."""


async def gather_in_window[R](
    make: Callable[[TwinEvent], Awaitable[R]], events: Sequence[TwinEvent], window: int
) -> list[R]:
    """Run make(event) for every event with at most `window` pending, started in list order; first failure raises.

    `window` workers take the next event in turn, so sends leave in order without a semaphore's waiter scans.
    """
    results: list[R | None] = [None] * len(events)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(events):
            index = next_index
            next_index += 1
            results[index] = await make(events[index])

    workers = [asyncio.ensure_future(worker()) for _ in range(min(window, len(events)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    return results  # type: ignore[return-value]
