"""Graph reads of API callers: at most a few of one caller's reads at once, and none waited for past its time limit.

The graph server cannot always stop a query at its time limit (FalkorDB checks TIMEOUT only while executing, not
while parsing or building a large list), so the API stops waiting at the limit and answers TIMEOUT, while the read
keeps its caller's place until the server has really finished it: one caller can never hold more than
`per_caller` of the server's query threads, however many slow queries they send.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.to_thread

from graph.errors import QueryTimedOut

T = TypeVar("T")
_POLL_SECONDS = 0.01
# How long after its time limit a read may still answer: the server's own TIMEOUT error arrives first when it can.
_GRACE_SECONDS = 0.25


@dataclass
class _Read:
    """One read handed to a worker thread: whoever comes first, the worker starting it or the caller giving up on
    it before it started, decides who gives its place back."""

    started: bool = False
    abandoned: bool = False


class ReadGate:
    """Per-caller bound on graph reads in flight in this process, and a wait that ends at the time limit."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def running(self, caller: str) -> int:
        """How many of `caller`'s reads the graph server is working on (including ones given up on)."""
        with self._lock:
            return self._running.get(caller, 0)

    async def run(self, caller: str, work: Callable[[], T], timeout_ms: int | None) -> T:
        """Run `work` (a blocking graph read) in a worker thread once `caller` has a free place; QueryTimedOut when
        no place frees up, or the read does not answer, within `timeout_ms`."""
        limit = None if timeout_ms is None else timeout_ms / 1000 + _GRACE_SECONDS
        deadline = None if limit is None else anyio.current_time() + limit
        while not self._take(caller):
            if deadline is not None and anyio.current_time() >= deadline:
                raise QueryTimedOut(f"{self.per_caller} earlier queries of this caller are still running on the "
                                    f"graph server; try again when they have finished")
            await anyio.sleep(_POLL_SECONDS)
        read = _Read()

        def guarded() -> T:
            with self._lock:
                if read.abandoned:
                    raise QueryTimedOut("the read was given up on before it started")
                read.started = True
            try:
                return work()
            finally:
                self._give_back(caller)

        remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
        with anyio.move_on_after(remaining):
            return await anyio.to_thread.run_sync(guarded, abandon_on_cancel=True)
        with self._lock:
            if not read.started:
                read.abandoned = True
        if read.abandoned:
            self._give_back(caller)
        raise QueryTimedOut(f"the query did not finish within its time limit of {timeout_ms} ms")

    def _take(self, caller: str) -> bool:
        with self._lock:
            count = self._running.get(caller, 0)
            if count >= self.per_caller:
                return False
            self._running[caller] = count + 1
            return True

    def _give_back(self, caller: str) -> None:
        with self._lock:
            count = self._running.get(caller, 0) - 1
            if count > 0:
                self._running[caller] = count
            else:
                self._running.pop(caller, None)
