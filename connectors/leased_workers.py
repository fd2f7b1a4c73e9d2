"""Long-running workers that each run only while this process holds their lease: the connector runtime's syncs and
the event routes' deliveries.

One thread per name does the work while the name's lease is held; a keeper thread renews the leases every third of a
lease period and takes over names whose holder stopped renewing (connectors/leases.py). Each name has a frozen status
object with a `held` field, replaced under a lock; `stop()` lets the workers finish what they are doing, then
releases the leases so another runtime takes over at once instead of after expiry.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from connectors.leases import LeaseStore


class LeasedStatus(Protocol):
    """A worker's status: a dataclass (updated with `dataclasses.replace`) telling whether this process holds the
    worker's lease."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def held(self) -> bool: ...


S = TypeVar("S", bound=LeasedStatus)


class LeasedWorkers(ABC, Generic[S]):
    """A worker thread per name, working only while this process holds the name's lease."""

    def __init__(
        self,
        statuses: Mapping[str, S],
        leases: LeaseStore,
        holder: str,
        lease_seconds: float,
        *,
        lease_prefix: str,
        thread_prefix: str,
    ) -> None:
        self.leases = leases
        self.holder = holder
        self.lease_seconds = lease_seconds
        self._lease_prefix = lease_prefix
        self._thread_prefix = thread_prefix
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status = dict(statuses)
        self._threads: list[threading.Thread] = []

    @abstractmethod
    def work(self, name: str) -> None:
        """The loop of one name's worker (runs until `stopping`); each runtime says what it does."""

    @property
    def stopping(self) -> threading.Event:
        """Set when the workers should finish and return."""
        return self._stop

    def start(self) -> None:
        """Take the free leases, then start the keeper and one worker per name (threads; returns at once)."""
        if self._threads or not self._status:
            return
        self._keep_leases()
        self._threads = [threading.Thread(target=self._keeper, name=f"{self._thread_prefix}-leases", daemon=True)]
        self._threads += [
            threading.Thread(target=self.work, args=(name,), name=f"{self._thread_prefix}-{name}", daemon=True)
            for name in self._status
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Let the workers finish (up to `timeout` seconds each), then release this process's leases."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for name in self._status:
            try:
                self.leases.release(self._lease_prefix + name, self.holder)
            except Exception:  # noqa: BLE001 - a store that is down releases by expiry instead
                continue
        self._threads = []

    def status(self) -> list[S]:
        """Every name's status, by name."""
        with self._lock:
            return [self._status[name] for name in sorted(self._status)]

    def held(self, name: str) -> bool:
        """Whether this process holds `name`'s lease (as the keeper last found)."""
        return bool(self.current(name).held)

    def current(self, name: str) -> S:
        """`name`'s status now."""
        with self._lock:
            return self._status[name]

    def update(self, name: str, **changes: Any) -> S:
        """Replace fields of `name`'s status; returns the new status."""
        with self._lock:
            self._status[name] = updated = replace(self._status[name], **changes)
            return updated

    def _keeper(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            self._keep_leases()

    def _keep_leases(self) -> None:
        """Renew what this process holds and take what is free; a store that does not answer holds nothing."""
        for name in self._status:
            try:
                held = self.leases.acquire(self._lease_prefix + name, self.holder, self.lease_seconds)
            except Exception:  # noqa: BLE001 - the store is down: work on nothing until it answers again
                held = False
            self.update(name, held=held)
