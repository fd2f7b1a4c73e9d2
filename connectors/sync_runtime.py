"""The long-running runtime that keeps every scheduled connector in sync by itself (`twin run`, `twin serve`).

One worker thread per scheduled connector runs it when due (connectors/schedule.py) through the audited connector
service, but only while this runtime holds the connector's lease (connectors/leases.py), so among several
runtimes on one store each connector runs in exactly one. A keeper thread renews the leases every third of a lease
period and takes over connectors whose holder stopped renewing. A failing connector backs off exponentially and
never delays the others. `stop()` lets each running sync finish, then releases the leases.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from connectors.leases import LeaseStore
from connectors.schedule import Schedule
from connectors.service import run_connector
from connectors.sync import Connector, SyncEngine, SyncReport
from governance.audit import AuditLog
from governance.identity import Subject
from governance.policy import Policy

RUNTIME_ROLE = "data_steward"  # the role the runtime's own syncs run (and are audited) as
FIRST_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class ConnectorStatus:
    """Where one scheduled connector stands in this runtime."""

    connector: str
    schedule: str
    held: bool = False
    running: bool = False
    runs: int = 0
    failures: int = 0  # consecutive failed runs (0 after a success)
    last_started: datetime | None = None
    last_success: datetime | None = None  # when the last completed run started: the twin is at most this old
    last_error: str | None = None
    next_run: datetime | None = None
    quarantined: int = 0  # rows the last completed run quarantined

    def lag_seconds(self, since: datetime, now: datetime | None = None) -> float:
        """How far the twin may be behind this source: since the last good run started (or since `since`)."""
        moment = now or datetime.now(UTC)
        return max(0.0, (moment - (self.last_success or since)).total_seconds())


def runtime_holder() -> str:
    """A lease holder id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SyncRuntime:
    """Runs scheduled connectors by themselves, one runtime per connector at a time."""

    def __init__(
        self,
        schedules: Mapping[str, Schedule],
        open_connector: Callable[[str], Connector],
        open_engine: Callable[[], SyncEngine],
        leases: LeaseStore,
        *,
        policy: Policy,
        audit: AuditLog,
        holder: str | None = None,
        lease_seconds: float = 30.0,
        max_backoff_seconds: float = 300.0,
        on_run: Callable[[ConnectorStatus, SyncReport | None], None] | None = None,
    ) -> None:
        self.schedules = {name: s for name, s in schedules.items() if s.kind != "off"}
        self.open_connector = open_connector
        self.open_engine = open_engine
        self.leases = leases
        self.policy = policy
        self.audit = audit
        self.holder = holder or runtime_holder()
        self.subject = Subject(sub=f"runtime:{self.holder}", roles=frozenset({RUNTIME_ROLE}))
        self.lease_seconds = lease_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_run = on_run
        self.started_at = datetime.now(UTC)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status = {name: ConnectorStatus(name, s.describe()) for name, s in self.schedules.items()}
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the lease keeper and one worker per scheduled connector (threads; returns at once)."""
        if self._threads:
            return
        self.started_at = datetime.now(UTC)
        self._keep_leases()  # take what is free before the first runs are due
        self._threads = [threading.Thread(target=self._keeper, name="sync-runtime-leases", daemon=True)]
        self._threads += [threading.Thread(target=self._worker, args=(name,), name=f"sync-runtime-{name}",
                                           daemon=True) for name in self.schedules]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Let running syncs finish (up to `timeout` seconds), then release this runtime's leases."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for name in self.schedules:
            try:
                self.leases.release(name, self.holder)
            except Exception:  # noqa: BLE001 - a store that is down releases by expiry instead
                continue
        self._threads = []

    def status(self) -> list[ConnectorStatus]:
        """Every scheduled connector's status, by name."""
        with self._lock:
            return [self._status[name] for name in sorted(self._status)]

    # ------------------------------------------------------------------------------------------- threads
    def _keeper(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            self._keep_leases()

    def _keep_leases(self) -> None:
        """Renew what this runtime holds and take what is free; a store that does not answer holds nothing."""
        for name in self.schedules:
            try:
                held = self.leases.acquire(name, self.holder, self.lease_seconds)
            except Exception:  # noqa: BLE001 - the store is down: run nothing until it answers again
                held = False
            self._update(name, held=held)

    def _worker(self, name: str) -> None:
        schedule = self.schedules[name]
        engine: SyncEngine | None = None
        due = datetime.now(UTC)
        while not self._stop.is_set():
            delay = (due - datetime.now(UTC)).total_seconds()
            if delay > 0 and self._stop.wait(delay):
                break
            if not self._current(name).held:
                due = datetime.now(UTC) + timedelta(seconds=min(1.0, self.lease_seconds / 3))
                continue
            if engine is None:
                engine = self.open_engine()
            due = self._run_once(name, schedule, engine)

    def _run_once(self, name: str, schedule: Schedule, engine: SyncEngine) -> datetime:
        """One run of `name`; returns when the next one is due (backing off after failures)."""
        started = datetime.now(UTC)
        self._update(name, running=True, last_started=started)
        report: SyncReport | None = None
        error: str | None = None
        try:
            connector = self.open_connector(name)
            try:
                report = run_connector(engine, connector, subject=self.subject, policy=self.policy,
                                       audit=self.audit, mode="incremental")
            finally:
                connector.close()
        except Exception as exc:  # noqa: BLE001 - any failure of one connector is its own; the others go on
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
        now = datetime.now(UTC)
        current = self._current(name)
        if error is None and report is not None:
            due = schedule.next_run(now) or now
            status = self._update(name, running=False, runs=current.runs + 1, failures=0, last_success=started,
                                  last_error=None, next_run=due, quarantined=report.counts.get("quarantined", 0))
        else:
            failures = current.failures + 1
            backoff = min(self.max_backoff_seconds, FIRST_BACKOFF_SECONDS * 2 ** (failures - 1))
            due = max(schedule.next_run(now) or now, now + timedelta(seconds=backoff))
            status = self._update(name, running=False, runs=current.runs + 1, failures=failures, last_error=error,
                                  next_run=due)
        if self.on_run is not None:
            self.on_run(status, report)
        return due

    # ------------------------------------------------------------------------------------------- status
    def _current(self, name: str) -> ConnectorStatus:
        with self._lock:
            return self._status[name]

    def _update(self, name: str, **changes: object) -> ConnectorStatus:
        with self._lock:
            self._status[name] = updated = replace(self._status[name], **changes)  # type: ignore[arg-type]
            return updated

