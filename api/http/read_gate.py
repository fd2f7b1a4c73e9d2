"""Graph reads of API callers: at most a few of one caller's reads at once, and none waited for past its time limit.

The graph server cannot always stop a query at its time limit (FalkorDB checks TIMEOUT only while executing, not
while parsing or building a large list), so the API stops waiting at the limit and answers TIMEOUT, while the read
keeps its caller's place until the server has really finished it: one caller can never hold more than
`per_caller` of the server's query threads, however many slow queries they send.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import EventLoopToken, current_token

from graph.errors import QueryTimedOut

T = TypeVar("T")
# How long after its time limit a read may still answer: the server's own TIMEOUT error arrives first when it can.
_GRACE_SECONDS = 0.25


@dataclass
class _Read:
    """One read handed to a worker thread: whoever comes first, the worker starting it or the caller giving up on
    it before it started, decides who gives its place back."""

    started: bool = False
    abandoned: bool = False


@dataclass
class _Waiter:
    """A read waiting for one of its caller's places; `handed` once a finished read gave it its place."""

    event: anyio.Event
    token: EventLoopToken
    handed: bool = False


class ReadGate:
    """Per-caller bound on graph reads in flight in this process, and a wait that ends at the time limit.

    A caller past its bound waits in line (first come, first served) and is woken when one of its reads ends; the
    count is kept under a thread lock because reads end in worker threads.
    """

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[_Waiter]] = {}

    def running(self, caller: str) -> int:
        """How many of `caller`'s reads the graph server is working on (including ones given up on)."""
        with self._lock:
            return self._running.get(caller, 0)

    async def run(self, caller: str, work: Callable[[], T], timeout_ms: int | None) -> T:
        """Run `work` (a blocking graph read) in a worker thread once `caller` has a free place; QueryTimedOut when
        no place frees up, or the read does not answer, within `timeout_ms`."""
        limit = None if timeout_ms is None else timeout_ms / 1000 + _GRACE_SECONDS
        deadline = None if limit is None else anyio.current_time() + limit
        await self._enter(caller, deadline)
        read = _Read()

        def guarded() -> T:
            with self._lock:
                if read.abandoned:
                    raise QueryTimedOut("the read was given up on before it started")
                read.started = True
            try:
                return work()
            finally:
                self._give_back(caller, in_loop=False)

        remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
        try:
            with anyio.move_on_after(remaining):
                return await anyio.to_thread.run_sync(guarded, abandon_on_cancel=True)
        except BaseException:  # the request was cancelled from outside (client gone, a sibling field failed)
            self._abandon(caller, read)
            raise
        self._abandon(caller, read)
        raise QueryTimedOut(f"the query did not finish within its time limit of {timeout_ms} ms")

    def _abandon(self, caller: str, read: _Read) -> None:
        """Stop waiting for `read`: its place is given back now if it never started (a worker that starts it later
        refuses it), else by the worker when the server has finished it."""
        with self._lock:
            if not read.started:
                read.abandoned = True
        if read.abandoned:
            self._give_back(caller, in_loop=True)

    async def _enter(self, caller: str, deadline: float | None) -> None:
        """Take one of `caller`'s places, waiting in line until `deadline`."""
        with self._lock:
            if not self._waiting.get(caller) and self._running.get(caller, 0) < self.per_caller:
                self._running[caller] = self._running.get(caller, 0) + 1
                return
            waiter = _Waiter(anyio.Event(), current_token())
            self._waiting.setdefault(caller, deque()).append(waiter)
        remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
        try:
            with anyio.move_on_after(remaining):
                await waiter.event.wait()  # woken by _give_back, which hands its place over
                return
        except BaseException:  # the request itself was cancelled (client gone): leave the line, or the place
            if not self._leave_line(caller, waiter):
                self._give_back(caller, in_loop=True)
            raise
        if self._leave_line(caller, waiter):
            raise QueryTimedOut(
                f"{self.per_caller} earlier queries of this caller are still running on the graph "
                "server; try again when they have finished"
            )
        # the place was handed over just as the wait ran out: keep it

    def _leave_line(self, caller: str, waiter: _Waiter) -> bool:
        """Take `waiter` out of its caller's line; False when a place had already been handed to it."""
        with self._lock:
            if waiter.handed:
                return False
            queue = self._waiting[caller]
            queue.remove(waiter)
            if not queue:
                del self._waiting[caller]
            return True

    def _give_back(self, caller: str, *, in_loop: bool) -> None:
        """End one of `caller`'s reads: hand the place to the next waiting read of theirs, or free it."""
        with self._lock:
            queue = self._waiting.get(caller)
            if not queue:
                count = self._running.get(caller, 0) - 1
                if count > 0:
                    self._running[caller] = count
                else:
                    self._running.pop(caller, None)
                return
            waiter = queue.popleft()
            waiter.handed = True
            if not queue:
                del self._waiting[caller]
        if in_loop:
            waiter.event.set()
            return
        try:
            anyio.from_thread.run_sync(waiter.event.set, token=waiter.token)
        except RuntimeError:  # the event loop has ended (shutdown): nobody is waiting any more
            return
