"""An asyncio event loop owned by one endpoint and run in its own daemon thread.

The delivery loop calls endpoints synchronously from a worker thread; the asyncio clients (nats-py, and
faststream's Kafka and RabbitMQ brokers) live on this loop, and ``run`` hands a coroutine over and waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """A private asyncio loop in a daemon thread, to call async clients from synchronous code."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], wait_s: float) -> T:
        """Run coro on the loop and return its result; TimeoutError if it takes longer than wait_s."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(wait_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {wait_s:g} s") from None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule coro on the loop and return its future at once (coroutines run in the order submitted)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def stop(self) -> None:
        """Cancel what is left on the loop, stop it and join the thread."""
        if self._loop.is_closed():
            return

        async def cancel_pending() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        # a task that ignores cancellation must not block close()
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(cancel_pending(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
