"""Garbage-collector pacing: while sync runs allocate millions of short-lived objects, and for the life of a process
that delivers routes (its start-up objects frozen once)."""

from __future__ import annotations

import gc
import threading

_frozen_for_process = threading.Event()
_freezing = threading.Lock()


def freeze_startup_objects() -> None:
    """Once per process: collect, then move every object alive now (modules, ontology, policy, clients) out of the
    cycle collector's way (`gc.freeze`), for good.

    A route allocates a few containers per change; every ~70,000 allocations the collector's full pass scanned all
    ~185,000 objects of a started twin, 0.1-0.5 s each time, which was a quarter of the route's CPU in the throughput
    benchmark. Frozen objects are still freed by reference counting; only a reference cycle among them that becomes
    garbage later is kept, and the objects of a started process live as long as it does. Sync runs in the same
    process then leave the frozen heap frozen (`CollectorPacing` does not unfreeze it).
    """
    with _freezing:
        if not _frozen_for_process.is_set():
            gc.collect()
            gc.freeze()
            _frozen_for_process.set()


class CollectorPacing:
    """While runs are going on, the cyclic garbage collector scans less often and skips the heap that existed before.

    A run allocates millions of short-lived containers (records, mapped items, rows); with the default thresholds
    the collector re-scanned the whole long-lived heap (ontology, drivers) dozens of times per 100k records — a third
    of a full run's time. Only collection timing changes: reference counting still frees almost everything at once,
    and cycles are collected a little later. Nested and concurrent runs share one setting; the last one restores it.
    """

    _lock = threading.Lock()
    _active = 0
    _saved: tuple[int, int, int] = (700, 10, 10)
    GEN0 = 10_000

    def __enter__(self) -> None:
        with self._lock:
            if CollectorPacing._active == 0:
                saved = gc.get_threshold()
                CollectorPacing._saved = (saved[0], saved[1], saved[2])
                gc.freeze()  # what exists before the run is not garbage of the run: do not rescan it
                gc.set_threshold(max(saved[0], self.GEN0), saved[1], saved[2])
            CollectorPacing._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            CollectorPacing._active -= 1
            if CollectorPacing._active == 0:
                gc.set_threshold(*CollectorPacing._saved)
                if not _frozen_for_process.is_set():  # a route runtime froze the heap for good: keep it so
                    gc.unfreeze()
