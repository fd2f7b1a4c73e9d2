"""Side queries of sync runs: short reads asked beside the run's own work (the source's key census while the last page
is written, the ledger's side of a deletion check while the source answers its side), on a few threads made once per
process rather than per entity (a thread start cost more than the query it ran on a loaded machine)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

WORKERS = 4  # side queries in flight at most, over every run of the process (each run waits on its own ones)

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process that made it, the pool)


def side_pool() -> ThreadPoolExecutor:
    """The process's pool for side queries; a forked child makes its own (the parent's threads are not in it)."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="sync-side"))
        return _pool[1]


def ask_aside(query: Callable[[], T]) -> Future[T]:
    """Run a side query on the pool; its result (or error) comes from the future. A side query never waits on
    another side query, so runs sharing the pool cannot block each other."""
    return side_pool().submit(query)
