"""The long-running runtime that keeps every scheduled connector in sync by itself (`twin run`, `twin serve`).

One worker thread per scheduled connector runs it when due (connectors/schedule.py) through the audited connector
service, but only while this runtime holds the connector's lease (connectors/leased_workers.py), so among several
runtimes on one store each connector runs in exactly one. A failing connector backs off exponentially and never
delays the others. `stop()` lets each running sync finish, then releases the leases.

A PostgreSQL source with `push:` (connectors/sql_push.py) also wakes its worker when a change is committed: the
worker runs the entities reading the notified table at once, between the scheduled runs, which keep polling as the
fall-back while the listener reconnects.

The telemetry readings each run stores go through anomaly detection as they arrive (simulation/forecast/anomaly.py,
one detector per stream, kept by the worker): spikes and level shifts become `anomaly` events on the change feed,
where automations (`trigger: {anomaly: ...}`), event routes and subscriptions see them. A detection that fails is
reported in the connector's status and never fails the run.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from connectors.leased_workers import LeasedWorkers
from connectors.leases import LeaseStore
from connectors.schedule import Schedule
from connectors.service import run_connector
from connectors.sql_push import ChangeListener, SqlPush
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
    push: str | None = None  # a pushing source's listener: 'listening on CHANNEL' or 'reconnecting: REASON'
    pushed_runs: int = 0  # runs a change notification started (also counted in `runs`)
    anomalies: int = 0  # anomaly events found in the telemetry this connector's runs brought
    anomaly_error: str | None = None  # why the last detection failed (None: it did not)

    def lag_seconds(self, since: datetime, now: datetime | None = None) -> float:
        """How far the twin may be behind this source: since the last good run started (or since `since`)."""
        moment = now or datetime.now(UTC)
        return max(0.0, (moment - (self.last_success or since)).total_seconds())


class Wake:
    """Wakes one connector's worker early: entity names a change notification asked for, or everything."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._entities: set[str] = set()
        self._everything = False

    def ask(self, entities: tuple[str, ...] | None) -> None:
        """Ask for a run of `entities` (None: of every entity) as soon as possible."""
        with self._lock:
            if entities is None:
                self._everything = True
            else:
                self._entities.update(entities)
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken early."""
        return self._event.wait(seconds)

    def take(self) -> tuple[bool, tuple[str, ...] | None]:
        """(whether a run was asked for, the entities asked: None for all), clearing the request."""
        with self._lock:
            asked = self._event.is_set()
            entities = None if self._everything else tuple(sorted(self._entities))
            self._entities.clear()
            self._everything = False
            self._event.clear()
        return asked, entities


def runtime_holder() -> str:
    """A lease holder id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SyncRuntime(LeasedWorkers[ConnectorStatus]):
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
        detect_anomalies: bool = True,
    ) -> None:
        """`detect_anomalies`: run anomaly detection on the telemetry each run stores (see the module's text)."""
        self.schedules = {name: s for name, s in schedules.items() if s.kind != "off"}
        super().__init__(
            {name: ConnectorStatus(name, s.describe()) for name, s in self.schedules.items()},
            leases,
            holder or runtime_holder(),
            lease_seconds,
            lease_prefix="",
            thread_prefix="sync-runtime",
        )
        self.open_connector = open_connector
        self.open_engine = open_engine
        self.policy = policy
        self.audit = audit
        self.subject = Subject(sub=f"runtime:{self.holder}", roles=frozenset({RUNTIME_ROLE}))
        self.max_backoff_seconds = max_backoff_seconds
        self.on_run = on_run
        self.started_at = datetime.now(UTC)
        self.wakes = {name: Wake() for name in self.schedules}
        self.detect_anomalies = detect_anomalies
        self._detectors: dict[str, Any] = {}  # connector -> its ArrivingTelemetry (one worker thread uses each)

    def start(self) -> None:
        """Start the lease keeper and one worker per scheduled connector (threads; returns at once)."""
        self.started_at = datetime.now(UTC)
        super().start()

    def stop(self, timeout: float | None = None) -> None:
        """Let each running sync finish (up to `timeout` seconds), then release the leases."""
        self.stopping.set()
        for wake in self.wakes.values():
            wake.ask(None)  # a worker sleeping until its next run returns at once
        super().stop(timeout)

    def work(self, name: str) -> None:
        """Run `name` whenever it is due, or a change notification asks for it, while this runtime holds its lease."""
        schedule = self.schedules[name]
        wake = self.wakes[name]
        engine: SyncEngine | None = None
        listener: ChangeListener | None = None
        due = datetime.now(UTC)
        try:
            while not self.stopping.is_set():
                delay = (due - datetime.now(UTC)).total_seconds()
                if delay > 0:
                    wake.wait(delay)
                    if self.stopping.is_set():
                        break
                if not self.held(name):
                    wake.take()  # the lease's holder runs what a notification asks for
                    due = datetime.now(UTC) + timedelta(seconds=min(1.0, self.lease_seconds / 3))
                    continue
                if engine is None:
                    engine = self.open_engine()
                    listener = self._listen(name)
                scheduled = datetime.now(UTC) >= due
                asked, entities = wake.take()
                if scheduled:  # a scheduled run syncs every entity, including those a notification asked for
                    due = self._run_once(name, schedule, engine)
                elif asked and self.current(name).failures == 0:  # pushed: the notified entities now, the
                    # schedule stays as it was; a failing connector waits for its back-off instead
                    due = min(due, self._run_once(name, schedule, engine, entities, pushed=True))
        finally:
            if listener is not None:
                listener.stop()

    def _detect(self, name: str, engine: SyncEngine, run_id: str) -> None:
        """Anomaly detection over the readings run `run_id` of `name` stored; events go to the change feed."""
        try:
            from simulation.forecast.anomaly import ArrivingTelemetry  # river is loaded by the first telemetry run

            detector = self._detectors.get(name)
            if detector is None:
                detector = self._detectors[name] = ArrivingTelemetry(actor=f"anomaly-detector:{name}")
            found = detector.after_run(engine.telemetry, engine.store, engine.store.history, run_id)
        except Exception as exc:  # noqa: BLE001 - detection never fails the run it follows; its status says why
            self.update(name, anomaly_error=f"{type(exc).__name__}: {str(exc)[:300]}")
            return
        if found.readings:
            self.update(name, anomalies=self.current(name).anomalies + found.recorded, anomaly_error=None)

    def _push_state(self, name: str, state: str) -> None:
        """Record where `name`'s change listener stands (the listener tells it)."""
        self.update(name, push=state)

    def _listen(self, name: str) -> ChangeListener | None:
        """Start listening for `name`'s change notifications when its source pushes (connectors/sql_push.py)."""
        try:
            connector = self.open_connector(name)
        except Exception:  # noqa: BLE001 - the runs report a connector that cannot open; it just gets no push
            return None
        try:
            push: SqlPush | None = getattr(connector.open_source, "push", None)
        except Exception as exc:  # noqa: BLE001 - a malformed push option is reported like a failed run
            self.update(name, push=f"off: {str(exc)[:300]}")
            return None
        finally:
            connector.close()
        if push is None:
            return None
        mapping = connector.mapping
        wake = self.wakes[name]
        listener = ChangeListener(
            push,
            lambda table: wake.ask(None if table is None else push.entities_for(table, mapping)),
            partial(self._push_state, name),
        )
        listener.start()
        return listener

    def _run_once(
        self,
        name: str,
        schedule: Schedule,
        engine: SyncEngine,
        entities: tuple[str, ...] | None = None,
        *,
        pushed: bool = False,
    ) -> datetime:
        """One run of `name` (of some `entities` only, when a notification named them); returns when the next
        scheduled run is due (backing off after failures)."""
        started = datetime.now(UTC)
        self.update(name, running=True, last_started=started)
        report: SyncReport | None = None
        error: str | None = None
        try:
            connector = self.open_connector(name)
            try:
                report = run_connector(
                    engine,
                    connector,
                    subject=self.subject,
                    policy=self.policy,
                    audit=self.audit,
                    mode="incremental",
                    entities=entities,
                )
            finally:
                connector.close()
        except Exception as exc:  # noqa: BLE001 - any failure of one connector is its own; the others go on
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
        if error is None and report is not None and self.detect_anomalies:
            self._detect(name, engine, report.run_id)
        now = datetime.now(UTC)
        current = self.current(name)
        if error is None and report is not None:
            due = schedule.next_run(now) or now
            status = self.update(
                name,
                running=False,
                runs=current.runs + 1,
                failures=0,
                last_success=started if entities is None else current.last_success,
                last_error=None,
                next_run=due,
                quarantined=report.counts.get("quarantined", 0),
                pushed_runs=current.pushed_runs + pushed,
            )
        else:
            failures = current.failures + 1
            backoff = min(self.max_backoff_seconds, FIRST_BACKOFF_SECONDS * 2 ** (failures - 1))
            due = max(schedule.next_run(now) or now, now + timedelta(seconds=backoff))
            status = self.update(
                name,
                running=False,
                runs=current.runs + 1,
                failures=failures,
                last_error=error,
                next_run=due,
                pushed_runs=current.pushed_runs + pushed,
            )
        if self.on_run is not None:
            self.on_run(status, report)
        return due
