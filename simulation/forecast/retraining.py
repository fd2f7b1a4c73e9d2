"""Retraining, by itself: the runtime inside `twin run`/`twin serve` retrains each series whose definition has a
`retrain:` schedule when it is due, and every series whose retrain alert someone approved.

A scheduled retrain of series NAME first checks each group for drift against its champion (raising a `retrain` alert
where the inputs shifted or the accuracy decayed, governance/models.py), then forecasts every group again with
`retrain`, which registers each group's best model, trained on the newest data, as a new version — a challenger that
serves nothing until someone else approves and promotes it (or the champion when the group has none); a group whose
data did not change since that kind was last trained gets no new version. The next run is due one schedule step
after the newest version of the series was trained (so a restarted runtime does not retrain at once).

A drift alert is a retrain proposal: `twin forecast approve-retrain ALERT` by someone holding `model.approve` who did
not raise it approves it, and the runtime's `approved` worker retrains the alert's series within `poll_seconds`, then
marks the alert `retrained` with the versions it registered.

Each worker runs only while this process holds its lease (`forecast-retrain:NAME`, connectors/leases.py), so among
several runtimes on one store each series is retrained by one. Runs are audited as the runtime's subject; a failing
run backs off exponentially and never delays the other series.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connectors.leased_workers import LeasedWorkers
from connectors.leases import LeaseStore
from connectors.schedule import Schedule
from governance.identity import Subject
from simulation.forecast.series import SeriesSet
from simulation.forecast.service import ForecastContext, ForecastOutcome, check_drift, run_forecasts

RETRAIN_ROLE = "data_steward"  # the role the runtime's retraining runs (and is audited) as
APPROVED = "approved"  # the worker that retrains series whose retrain alert was approved
LEASE_PREFIX = "forecast-retrain:"
FIRST_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class RetrainStatus:
    """Where one series' retraining (or the approved-alert worker) stands in this runtime."""

    name: str
    schedule: str
    held: bool = False
    running: bool = False
    runs: int = 0
    failures: int = 0  # consecutive failed runs (0 after a success)
    last_started: datetime | None = None
    last_error: str | None = None
    next_run: datetime | None = None
    versions: tuple[str, ...] = ()  # model versions the last run registered
    drifted: tuple[str, ...] = ()  # groups the last scheduled run found drifted


class RetrainRuntime(LeasedWorkers[RetrainStatus]):
    """Retrains series on their `retrain:` schedules and on approved retrain alerts, one runtime per series."""

    def __init__(
        self,
        series: SeriesSet,
        ctx: ForecastContext,
        leases: LeaseStore,
        *,
        holder: str,
        lease_seconds: float = 30.0,
        poll_seconds: float = 30.0,
        max_backoff_seconds: float = 300.0,
        on_run: Callable[[RetrainStatus], None] | None = None,
    ) -> None:
        self.series = series
        self.ctx = ctx
        self.schedules: dict[str, Schedule] = {}
        for name, definition in series.definitions.items():
            schedule = definition.retrain_schedule
            if schedule is not None:
                self.schedules[name] = schedule
        statuses = {name: RetrainStatus(name, s.describe()) for name, s in self.schedules.items()}
        statuses[APPROVED] = RetrainStatus(APPROVED, f"approved retrain alerts, every {poll_seconds:g} s")
        super().__init__(
            statuses, leases, holder, lease_seconds, lease_prefix=LEASE_PREFIX, thread_prefix="forecast-retrain"
        )
        self.subject = Subject(sub=f"runtime:{holder}", roles=frozenset({RETRAIN_ROLE}))
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_run = on_run
        self._wake = threading.Event()

    def stop(self, timeout: float | None = None) -> None:
        """Let a running retrain finish (up to `timeout` seconds), then release the leases."""
        self.stopping.set()
        self._wake.set()
        super().stop(timeout)

    def work(self, name: str) -> None:
        """Retrain `name` whenever it is due (the approved worker: poll the alerts) while this runtime holds its
        lease."""
        due = self._first_due(name)
        self.update(name, next_run=due)
        while not self.stopping.is_set():
            delay = (due - datetime.now(UTC)).total_seconds()
            if delay > 0:
                self._wake.wait(min(delay, max(0.05, self.lease_seconds / 3)))
                continue
            if not self.held(name):
                due = datetime.now(UTC) + timedelta(seconds=min(1.0, self.lease_seconds / 3))
                continue
            due = self._run_once(name)

    def _first_due(self, name: str) -> datetime:
        """Now for the approved worker and a series never trained; else one step after its newest version."""
        now = datetime.now(UTC)
        if name == APPROVED:
            return now
        newest = self._newest_training(name)
        if newest is None:
            return now
        return min(now + timedelta(days=3650), self.schedules[name].next_run(newest) or now)

    def _newest_training(self, name: str) -> datetime | None:
        """When the newest model version of series `name` (any group) was trained."""
        times = [
            v.trained_at
            for group in self.ctx.forecasts.series_names(name)
            if group == name or group.startswith(f"{name}/")
            for v in self.ctx.registry.versions(group)
        ]
        return datetime.fromisoformat(max(times)) if times else None

    def _run_once(self, name: str) -> datetime:
        """One run of `name`; when the next is due (backing off after failures)."""
        started = datetime.now(UTC)
        self.update(name, running=True, last_started=started)
        current = self.current(name)
        versions: list[str] = []
        drifted: list[str] = []
        error = None
        try:
            if name == APPROVED:
                versions = self._retrain_approved()
            else:
                drifted = [
                    r.series for r in check_drift(self.series, name, self.ctx, subject=self.subject) if r.drifted
                ]
                versions = _registered(
                    run_forecasts(self.series, name, self.ctx, subject=self.subject, retrain="schedule")
                )
        except Exception as exc:  # noqa: BLE001 - one series' failure is its own; the others go on
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
        now = datetime.now(UTC)
        if error is None:
            step = Schedule("every", self.poll_seconds) if name == APPROVED else self.schedules[name]
            due = step.next_run(now) or now
            status = self.update(
                name,
                running=False,
                runs=current.runs + 1,
                failures=0,
                last_error=None,
                next_run=due,
                versions=tuple(versions),
                drifted=tuple(drifted),
            )
        else:
            failures = current.failures + 1
            backoff = min(self.max_backoff_seconds, FIRST_BACKOFF_SECONDS * 2 ** (failures - 1))
            due = now + timedelta(seconds=backoff)
            status = self.update(
                name, running=False, runs=current.runs + 1, failures=failures, last_error=error, next_run=due
            )
        if self.on_run is not None:
            self.on_run(status)
        return due

    def _retrain_approved(self) -> list[str]:
        """Retrain the series of every approved retrain alert and mark each alert retrained; the versions."""
        registered: list[str] = []
        for alert in self.ctx.registry.alerts(status="approved"):
            if alert.kind != "retrain":
                continue
            outcomes = run_forecasts(
                self.series, alert.series, self.ctx, subject=self.subject, retrain=f"approved alert {alert.alert_id}"
            )
            failed = [o for o in outcomes if o.status != "stored"]
            if failed:
                raise RuntimeError(f"retraining {alert.series} failed: {failed[0].error}")
            versions = _registered(outcomes)
            self.ctx.registry.retrained(self.subject, alert.alert_id, versions)
            registered += versions
        return registered


def _registered(outcomes: list[ForecastOutcome]) -> list[str]:
    """The model versions a run registered (new challengers)."""
    return [o.challenger for o in outcomes if o.challenger]
