"""Garbage-collector pacing while sync runs allocate millions of short-lived objects."""

from __future__ import annotations

import gc
import threading


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
                gc.unfreeze()
