"""Sync worker processes: a large source is read, screened and mapped by key range in worker processes, off the run's
interpreter lock, while the run's own process keeps what needs the whole run — repeated keys, the ledger, identities,
the graph writes and the commits — as the one writer.

Shared nothing: a worker is handed what opens the source again (a SQL source pickles as its arguments, never a
connection), the entity's mapping and a key range, and hands back the screened records of that range in key order
(connectors/sync/screening.py); the run takes the ranges in key order, so it sees the records in the order an
in-process read gives them. The workers are forked from a fork server started from a clean interpreter (no graph or
database handle and no thread of the run is ever forked), once per process and kept for later runs.

A worker that dies (killed, out of memory) breaks the pool: the run stops with a SyncError naming the entity and the
key range, after writing the pages before that range whole and nothing of it; its watermark is not advanced, so the
next run reads that range again (a new pool is started for it). An error a worker raises (a failed query, a mapping
defect) comes back to the run as it was raised.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import pickle
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from connectors.errors import SyncError
from connectors.limits import SizeLimits
from connectors.mapping import EntityMapping
from connectors.source import SplittableSource, Watermark
from connectors.sync.screening import RecordScreen, Screened

KeySlice = tuple[int | None, int | None]  # keys from the first (inclusive) to the second (exclusive); None: open end


@dataclass(frozen=True)
class SliceTask:
    """What a worker needs to screen one key range of an entity: the source (as what opens it again), the mapping,
    the size limits, the watermark to read from and the range."""

    source: SplittableSource
    entity: EntityMapping
    system: str
    limits: SizeLimits
    where: str  # "<connector>/<entity>"
    since: Watermark | None
    low: int | None
    high: int | None


def screen_slice(task: SliceTask) -> bytes:
    """(In a worker process.) The screened records of the task's key range, in key order, pickled (see `_loaded`)."""
    screen = RecordScreen(task.entity, task.system, task.limits, task.where)
    screened: list[Screened] = []
    for page in task.source.read_slice(task.since, task.low, task.high):
        screened += [screen.screen(record) for record in page]
    for each in screened:  # the payload goes back as its text and digest (the run rebuilds it when it needs it)
        if each.item is not None:
            each.item.stored = None
    return pickle.dumps(screened, protocol=pickle.HIGHEST_PROTOCOL)


def _loaded(data: bytes) -> list[Screened]:
    """Screened records as a worker pickled them, loaded with the cyclic collector paused: a range's records are
    some hundred thousand new containers, none of them garbage, which the collector would otherwise scan again and
    again while they are built (it is about two thirds of the loading time)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        loaded: list[Screened] = pickle.loads(data)
    finally:
        if paused:
            gc.enable()
    return loaded


def key_slices(first: int, last: int, rows: int, rows_per_slice: int, *, open_start: bool = True) -> list[KeySlice]:
    """Key ranges covering every integer key from `first` on (from the smallest, when `open_start`: a key added
    below `first` meanwhile is read too; the last range is open-ended for keys added above `last`), each spanning
    about `rows_per_slice` of the `rows` records expected between `first` and `last` (keys spread evenly)."""
    count = max(1, math.ceil(rows / max(1, rows_per_slice)))
    width = max(1, math.ceil((last - first + 1) / count))
    bounds = list(range(first + width, last + 1, width))
    edges: list[int | None] = [None if open_start else first, *bounds, None]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


_lock = threading.Lock()
_pools: dict[int, tuple[int, ProcessPoolExecutor]] = {}  # workers -> (the process that started it, the pool)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The process's pool of `workers` sync worker processes (started on first use, kept for later runs; a forked
    child starts its own)."""
    with _lock:
        held = _pools.get(workers)
        if held is not None and held[0] == os.getpid():
            return held[1]
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":  # the fork server imports the sync package once; each worker forks from it
            context.set_forkserver_preload([__name__])
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        _pools[workers] = (os.getpid(), pool)
        return pool


def discard_pool(pool: ProcessPoolExecutor) -> None:
    """Forget a broken pool (the next run starts a new one) and let its processes go."""
    with _lock:
        for workers, (_, held) in list(_pools.items()):
            if held is pool:
                del _pools[workers]
    pool.shutdown(wait=False, cancel_futures=True)


class SlicedRead:
    """The screened records of an entity's key ranges, read by worker processes a few ranges ahead, handed on in
    key order in pages of `page_size` records (the last one shorter): the pages an in-process read of the same
    records gives, so the run writes the same batches."""

    def __init__(self, pool: ProcessPoolExecutor, tasks: Sequence[SliceTask], page_size: int, ahead: int) -> None:
        self.pool = pool
        self.tasks = tasks
        self.page_size = max(1, page_size)
        self.ahead = max(1, ahead)

    def __iter__(self) -> Iterator[list[Screened]]:
        waiting: deque[tuple[SliceTask, Future[bytes]]] = deque()
        todo = iter(self.tasks)
        held: list[Screened] = []  # screened records not yet handed on
        try:
            while True:
                while len(waiting) < self.ahead and (task := next(todo, None)) is not None:
                    waiting.append((task, self._submit(task)))
                if not waiting:
                    break
                task, future = waiting.popleft()
                held += self._result(task, future)
                while len(held) >= self.page_size:  # pages as an in-process read cuts them: same batches, same run
                    page, held = held[: self.page_size], held[self.page_size :]
                    yield page
            if held:
                yield held
        finally:
            for _, future in waiting:  # the run stopped early: ranges not started are not read
                future.cancel()

    def _submit(self, task: SliceTask) -> Future[bytes]:
        try:
            return self.pool.submit(screen_slice, task)
        except BrokenProcessPool as exc:
            discard_pool(self.pool)
            raise self._died(task, exc) from exc

    def _result(self, task: SliceTask, future: Future[bytes]) -> list[Screened]:
        try:
            return _loaded(future.result())
        except BrokenProcessPool as exc:
            discard_pool(self.pool)
            raise self._died(task, exc) from exc

    @staticmethod
    def _died(task: SliceTask, exc: BaseException) -> SyncError:
        low = "the first key" if task.low is None else f"key {task.low}"
        high = "the last key" if task.high is None else f"below key {task.high}"
        return SyncError(
            f"{task.where}: a sync worker process ended abruptly while reading {low} to {high} ({exc}); the pages "
            "before that range were written whole, nothing of it was, and the watermark was not advanced: "
            "the next run reads it again"
        )


def slice_tasks(
    source: SplittableSource,
    entity: EntityMapping,
    system: str,
    limits: SizeLimits,
    where: str,
    since: Watermark | None,
    slices: Sequence[KeySlice],
) -> list[SliceTask]:
    """One task per key range."""
    return [SliceTask(source, entity, system, limits, where, since, low, high) for low, high in slices]
