"""Notices that alerts or proposals were written: the decisions service announces each write it makes, and every
waiter in the process (a GraphQL `decisions` subscription, on its event loop) wakes at once to read what changed as
its subject may see it, instead of polling the stores."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Notices:
    """Wakes the asyncio waiters of this process when alerts or proposals were written (from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.sent = 0  # notices so far

    def notify(self) -> None:
        """Wake every waiter (each on its own loop, thread-safely)."""
        with self._lock:
            self.sent += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # a loop that closed meanwhile: its waiter is leaving
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def listening(self) -> Iterator[asyncio.Event]:
        """An event set by every notice while the block runs (call it on the waiter's running loop)."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._waiters.discard(entry)

    @property
    def listeners(self) -> int:
        """How many waiters listen now."""
        with self._lock:
            return len(self._waiters)
