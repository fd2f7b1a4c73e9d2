"""Online anomaly detection on telemetry and KPI streams, with the events written to the change feed.

One detector per stream (asset, metric) keeps a robust picture of the recent readings with river's rolling
statistics: the median and the interquartile range of the last `window` normal readings. A reading scores
|value - median| / (IQR / 1.349) (a robust z-score); above `threshold` it is anomalous and is kept out of the
picture. An anomalous episode ends as a `spike` when a normal reading follows within `shift_after` readings, or is
declared a `level_shift` after `shift_after` anomalous readings on the same side — the detector then learns the new
level from those readings. Each event carries its evidence: the window of readings the expectation came from, the
expected range (median +/- threshold robust deviations), the value seen and its score. The first `warmup` readings
of a stream only teach it. Non-numeric or non-finite readings are rejected with a reason (never an exception
mid-batch).

`record_anomalies` appends events to the change feed (graph/history.py's outbox: kind `anomaly`, op `create`, the
asset twin as uid and its class), so feed readers, subscriptions, event routes (`kinds: [anomaly]`) and automations
(`trigger: {anomaly: ...}`) see them through the same policy gate as the asset's changes.

`ArrivingTelemetry` runs the detectors as readings arrive: the sync runtime (connectors/sync_runtime.py) hands it
each run's stored readings; a stream seen for the first time in this process is primed with its readings stored
before them, so a restart neither re-learns from nothing nor reports the same reading twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from river import stats

from graph.history import Change, ChangeContext, HistoryStore
from graph.reads import TwinReader
from simulation.forecast.errors import TelemetryValueError

ROBUST_SIGMA = 1.349  # IQR of a normal distribution in standard deviations


@dataclass(frozen=True)
class Observation:
    """One reading of a stream: the asset twin, the metric, the time (ISO 8601) and the value."""

    asset_uid: str
    metric: str
    ts: str
    value: Any


@dataclass(frozen=True)
class AnomalyEvent:
    """An anomaly with its evidence."""

    asset_uid: str
    metric: str
    kind: str  # spike | level_shift
    ts: str  # the first anomalous reading's time
    value: float  # the most extreme value of the episode
    score: float  # its robust z-score
    expected_low: float
    expected_high: float
    window_start: str  # the readings the expectation came from
    window_end: str
    window_readings: int
    readings: int  # anomalous readings in the episode

    def evidence(self) -> dict[str, Any]:
        """The event as the change feed carries it."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Rejected:
    """A reading the detectors refused, with the reason."""

    observation: Observation
    reason: str


class StreamDetector:
    """The robust rolling detector of one stream."""

    def __init__(self, window: int = 120, threshold: float = 7.0, warmup: int = 30, shift_after: int = 5) -> None:
        if window < 10 or warmup < 5 or shift_after < 2 or threshold <= 0:
            raise ValueError("window >= 10, warmup >= 5, shift_after >= 2 and threshold > 0 are needed")
        self.window = window
        self.threshold = threshold
        self.warmup = warmup
        self.shift_after = shift_after
        self._reset([])
        self._episode: list[tuple[str, float, float]] = []  # (ts, value, signed score)
        self._episode_expectation: tuple[float, float, str, str, int] | None = None

    def _reset(self, seed: Sequence[tuple[str, float]]) -> None:
        self._median = stats.RollingQuantile(q=0.5, window_size=self.window)
        self._iqr = stats.RollingIQR(q_inf=0.25, q_sup=0.75, window_size=self.window)
        self._times: deque[str] = deque(maxlen=self.window)
        self.seen = 0
        for ts, value in seed:
            self._learn(ts, value)

    def _learn(self, ts: str, value: float) -> None:
        self._median.update(value)
        self._iqr.update(value)
        self._times.append(ts)
        self.seen += 1

    def expectation(self) -> tuple[float, float]:
        """The current median and robust standard deviation."""
        median = float(self._median.get() or 0.0)
        spread = float(self._iqr.get() or 0.0) / ROBUST_SIGMA
        return median, max(spread, 1e-9 + 1e-6 * abs(median))

    def update(self, ts: str, value: float) -> AnomalyEvent | None:
        """Score one reading; an event when an anomalous episode is classified."""
        if self.seen < self.warmup:
            self._learn(ts, value)
            return None
        median, sigma = self.expectation()
        score = (value - median) / sigma
        if abs(score) <= self.threshold:
            event = self._close_spike() if self._episode else None
            self._learn(ts, value)
            return event
        if self._episode and (score > 0) != (self._episode[0][2] > 0):
            event = self._close_spike()
            self._open(ts, value, score, median, sigma)
            return event
        if not self._episode:
            self._open(ts, value, score, median, sigma)
            return None
        self._episode.append((ts, value, score))
        if len(self._episode) >= self.shift_after:
            event = self._event("level_shift")
            self._reset([(t, v) for t, v, _ in self._episode])
            self._episode = []
            return event
        return None

    def _open(self, ts: str, value: float, score: float, median: float, sigma: float) -> None:
        self._episode = [(ts, value, score)]
        first = self._times[0] if self._times else ts
        last = self._times[-1] if self._times else ts
        self._episode_expectation = (median, sigma, first, last, len(self._times))

    def _close_spike(self) -> AnomalyEvent:
        event = self._event("spike")
        self._episode = []
        return event

    def _event(self, kind: str) -> AnomalyEvent:
        assert self._episode_expectation is not None
        median, sigma, first, last, count = self._episode_expectation
        ts = self._episode[0][0]
        _, value, score = max(self._episode, key=lambda e: abs(e[2]))
        return AnomalyEvent(
            "",
            "",
            kind,
            ts,
            value,
            score,
            median - self.threshold * sigma,
            median + self.threshold * sigma,
            first,
            last,
            count,
            len(self._episode),
        )


@dataclass
class AnomalyMonitor:
    """Detectors for every stream it is shown, created on first sight with the same settings."""

    window: int = 120
    threshold: float = 7.0
    warmup: int = 30
    shift_after: int = 5
    detectors: dict[tuple[str, str], StreamDetector] = field(default_factory=dict)

    def observe(self, observations: Iterable[Observation]) -> tuple[list[AnomalyEvent], list[Rejected]]:
        """Score readings in order; the events classified and the readings refused (non-numeric, non-finite)."""
        events: list[AnomalyEvent] = []
        rejected: list[Rejected] = []
        for obs in observations:
            try:
                value = numeric(obs)
            except TelemetryValueError as exc:
                rejected.append(Rejected(obs, str(exc)))
                continue
            key = (obs.asset_uid, obs.metric)
            detector = self.detectors.get(key)
            if detector is None:
                detector = self.detectors[key] = StreamDetector(
                    self.window, self.threshold, self.warmup, self.shift_after
                )
            event = detector.update(obs.ts, value)
            if event is not None:
                events.append(_for_stream(event, obs))
        return events, rejected


def _for_stream(event: AnomalyEvent, obs: Observation) -> AnomalyEvent:
    return AnomalyEvent(obs.asset_uid, obs.metric, *list(asdict(event).values())[2:])


def numeric(obs: Observation) -> float:
    """The reading's value as a finite float; TelemetryValueError names the stream and the problem."""
    value = obs.value
    if isinstance(value, bool) or value is None:
        raise TelemetryValueError(f"{obs.asset_uid} {obs.metric} at {obs.ts}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        shown = str(value)[:40]
        raise TelemetryValueError(f"{obs.asset_uid} {obs.metric} at {obs.ts}: {shown!r} is not a number") from None
    if not math.isfinite(number):
        raise TelemetryValueError(f"{obs.asset_uid} {obs.metric} at {obs.ts}: {number} is not finite")
    return number


def record_anomalies(
    history: HistoryStore,
    events: Sequence[AnomalyEvent],
    classes: Mapping[str, str],
    *,
    actor: str = "anomaly-detector",
    run_id: str | None = None,
) -> int:
    """Append the events to the change feed as `anomaly` changes of their asset twins (`classes`: uid -> class);
    returns how many were written."""
    changes = [
        Change(e.asset_uid, "anomaly", "create", None, e.evidence(), cls=classes.get(e.asset_uid, "Asset"))
        for e in events
    ]
    return history.record(changes, ChangeContext(actor=actor, source="anomaly:telemetry", run_id=run_id))


class StoredReading(Protocol):
    """A reading as the telemetry store returns it (connectors/telemetry.Reading)."""

    @property
    def asset_uid(self) -> str:
        """The asset twin."""

    @property
    def metric(self) -> str:
        """The metric."""

    @property
    def ts(self) -> str:
        """When it was measured (ISO 8601)."""

    @property
    def value(self) -> float | None:
        """What was measured."""


class TelemetryRuns(Protocol):
    """The telemetry time series, by sync run (connectors/telemetry.TelemetryStore)."""

    def of_run(self, run_id: str, limit: int = 200_000) -> Sequence[StoredReading]:
        """The readings a run stored, per stream in time order."""

    def latest_before(self, asset_uid: str, metric: str, ts: str, limit: int) -> Sequence[StoredReading]:
        """The last readings of a stream before a time, in time order."""


@dataclass(frozen=True)
class RunAnomalies:
    """What detection did with one sync run's readings."""

    readings: int
    events: tuple[AnomalyEvent, ...]
    recorded: int  # events written to the change feed
    rejected: int


class ArrivingTelemetry:
    """Detects anomalies in the readings each sync run stores and records them on the change feed."""

    def __init__(self, monitor: AnomalyMonitor | None = None, actor: str = "anomaly-detector") -> None:
        self.monitor = monitor or AnomalyMonitor()
        self.actor = actor

    def after_run(
        self, telemetry: TelemetryRuns, twins: TwinReader, history: HistoryStore | None, run_id: str
    ) -> RunAnomalies:
        """Score the readings run `run_id` stored (priming streams first seen) and record the events found as
        `anomaly` changes of their asset twins (when there is a history to record them in)."""
        readings = telemetry.of_run(run_id)
        if not readings:
            return RunAnomalies(0, (), 0, 0)
        for key in sorted({(r.asset_uid, r.metric) for r in readings} - set(self.monitor.detectors)):
            first = min(r.ts for r in readings if (r.asset_uid, r.metric) == key)
            earlier = telemetry.latest_before(key[0], key[1], first, self.monitor.window + self.monitor.warmup)
            self.monitor.observe(Observation(r.asset_uid, r.metric, r.ts, r.value) for r in earlier)
        events, rejected = self.monitor.observe(Observation(r.asset_uid, r.metric, r.ts, r.value) for r in readings)
        recorded = 0
        if events and history is not None:
            found = twins.get_many(sorted({e.asset_uid for e in events}))
            classes = {uid: twin.cls for uid, twin in found.items()}
            known = [e for e in events if e.asset_uid in classes]  # a reading of a twin since deleted: no event
            recorded = record_anomalies(history, known, classes, actor=self.actor, run_id=run_id) if known else 0
        return RunAnomalies(len(readings), tuple(events), recorded, len(rejected))
