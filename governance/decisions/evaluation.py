"""Evaluating automations: a page of the change feed (or, for a schedule, every twin of a class) against the rules
that watch it, over the twin as the rule's role may see it, its neighbours and its telemetry windows.

Rules are found by (class, property) (`AutomationSet.watching`), so a change evaluates only the rules that watch
what changed. The values of one twin are bound once for all its rules (binding costs more than a rule), neighbours
are read in one round trip per page (graph/neighbourhood.py) and the page passes the change gate
(governance/change_view.py) once per role, so a rule never reads a twin or a value its role may not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from governance.change_view import ChangeGate
from governance.decisions.automations import Automation, AutomationSet
from governance.expressions import Bindings, ExpressionError, bind
from governance.identity import Subject
from governance.policy import Policy
from graph.feed import FeedChange
from graph.neighbourhood import Neighbour, neighbourhoods
from graph.store import GraphStore

logger = logging.getLogger(__name__)
MAX_SCHEDULED_TWINS = 10_000  # twins one scheduled evaluation looks at
BOUND = frozenset({"twin", "neighbours", "telemetry", "now", "anomaly", "forecast", "study"})
EVENT_KINDS = frozenset({"anomaly", "forecast", "study"})  # feed kinds that are events about a twin, not changes of it


class TelemetryReading(Protocol):
    """A reading as the telemetry store returns it (read-only: the store's readings are frozen)."""

    @property
    def ts(self) -> str:
        """When it was measured (UTC ISO 8601)."""

    @property
    def value(self) -> float | None:
        """What was measured; None when the source had no value."""


class TelemetryReader(Protocol):
    """The telemetry time series (connectors/telemetry.TelemetryStore)."""

    def series(
        self, asset_uid: str, metric: str, since: datetime | None = None, limit: int = 10_000
    ) -> Sequence[TelemetryReading]:
        """Readings of one asset's metric since a time, in time order."""


@dataclass(frozen=True)
class Firing:
    """A rule whose condition held for a twin, with the values it read and its outputs evaluated."""

    automation: Automation
    uid: str
    cls: str
    properties: dict[str, Any]
    neighbours: tuple[Neighbour, ...]
    telemetry: dict[str, dict[str, Any]]
    change: FeedChange | None
    alert_key: str | None = None
    alert_message: str | None = None
    parameters: dict[str, Any] | None = None


@dataclass
class EvaluationReport:
    """What one evaluation pass did."""

    evaluated: int = 0  # (change or twin) x matching rule condition evaluations
    firings: list[Firing] = field(default_factory=list)
    cleared: list[tuple[Automation, str]] = field(default_factory=list)  # alerting rules that no longer hold, by twin
    errors: list[str] = field(default_factory=list)


class Evaluator:
    """Evaluates automations over feed pages and scheduled scans."""

    def __init__(self, store: GraphStore, policy: Policy, telemetry: TelemetryReader | None = None) -> None:
        self.store = store
        self.policy = policy
        self.telemetry = telemetry
        self._gates: dict[str, ChangeGate] = {}

    def gate(self, role: str) -> ChangeGate:
        """The change gate of an automation role (cached)."""
        if role not in self._gates:
            self._gates[role] = ChangeGate(
                self.policy, Subject(sub=f"automations:{role}", roles=frozenset({role})), self.store
            )
        return self._gates[role]

    def changes(self, rules: AutomationSet, page: Sequence[FeedChange]) -> EvaluationReport:
        """Evaluate the rules watching each twin change of `page`."""
        report = EvaluationReport()
        wanted: list[tuple[FeedChange, list[Automation]]] = []
        events: list[tuple[FeedChange, list[Automation]]] = []
        watched = rules.event_kinds
        for change in page:
            if change.kind in watched:
                on_event = rules.on_events(change.kind, change.cls, change.after or {})
                if on_event:
                    events.append((change, on_event))
                continue
            if change.kind != "twin":
                continue
            before, after = change.before or {}, change.after or {}
            changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
            matching = rules.watching(change.cls, change.op, changed)
            if matching:
                wanted.append((change, matching))
        if events:
            self._events(events, report)
        if not wanted:
            return report
        by_role: dict[str, list[tuple[FeedChange, list[Automation]]]] = {}
        for change, matching in wanted:
            for rule in matching:
                entries = by_role.setdefault(rule.role, [])
                if not entries or entries[-1][0] is not change:
                    entries.append((change, []))
                entries[-1][1].append(rule)
        for role, entries in by_role.items():
            views = {view.change.seq: view.change for view in self.gate(role).view([c for c, _ in entries])}
            subjects = [(views[c.seq], rs) for c, rs in entries if c.seq in views]
            self._evaluate(
                role,
                [(c.uid, c.cls or "", (c.after if c.op != "delete" else c.before) or {}, c, rs) for c, rs in subjects],
                report,
            )
        return report

    def _events(self, events: Sequence[tuple[FeedChange, list[Automation]]], report: EvaluationReport) -> None:
        """Evaluate the rules watching anomaly, forecast and study events over the event and its twin as it is now,
        as each rule's role may see both (the change gate decides and masks the event; the twin is read in the
        role's scope and masked)."""
        by_role: dict[str, list[tuple[FeedChange, list[Automation]]]] = {}
        for change, matching in events:
            for rule in matching:
                entries = by_role.setdefault(rule.role, [])
                if not entries or entries[-1][0] is not change:
                    entries.append((change, []))
                entries[-1][1].append(rule)
        for role, entries in by_role.items():
            subject = Subject(sub=f"automations:{role}", roles=frozenset({role}))
            views = {view.change.seq: view.change for view in self.gate(role).view([c for c, _ in entries])}
            shown = [(views[c.seq], rs) for c, rs in entries if c.seq in views]
            twins = self.store.get_many(sorted({c.uid for c, _ in shown}), self.policy.read_scope(subject))
            subjects = []
            for change, rs in shown:
                twin = twins.get(change.uid)
                if twin is None:  # gone, or outside the role's rows
                    continue
                subjects.append((twin.uid, twin.cls, self.policy.mask(subject, twin).properties, change, rs))
            self._evaluate(role, subjects, report)

    def scheduled(self, rule: Automation) -> EvaluationReport:
        """Evaluate a schedule rule over every twin of its class its role may see (at most MAX_SCHEDULED_TWINS)."""
        report = EvaluationReport()
        scope = self.policy.read_scope(rule.subject)
        offset, subjects = 0, []
        while offset < MAX_SCHEDULED_TWINS:
            page = self.store.find(rule.cls, limit=1000, offset=offset, scope=scope)
            for twin in page.items:
                masked = self.policy.mask(rule.subject, twin)
                subjects.append((twin.uid, twin.cls, masked.properties, None, [rule]))
            offset += len(page.items)
            if len(page.items) < 1000:
                break
        self._evaluate(rule.role, subjects, report)
        return report

    def _evaluate(
        self,
        role: str,
        subjects: Sequence[tuple[str, str, dict[str, Any], FeedChange | None, list[Automation]]],
        report: EvaluationReport,
    ) -> None:
        near: dict[tuple[int, tuple[str, ...]], dict[str, list[Neighbour]]] = {}
        groups: dict[tuple[int, tuple[str, ...]], set[str]] = {}
        for uid, _, _, change, rules in subjects:
            if change is not None and change.op == "delete":
                continue
            for rule in rules:
                if rule.hops:
                    groups.setdefault((rule.hops, rule.via), set()).add(uid)
        scope = self.policy.read_scope(Subject(sub=f"automations:{role}", roles=frozenset({role})))
        for (hops, via), uids in groups.items():
            near[(hops, via)] = neighbourhoods(self.store, sorted(uids), hops, via, scope)
        now = datetime.now(UTC)
        for uid, cls, props, change, rules in subjects:
            twin = {**props, "uid": uid, "cls": cls}
            windows = self._windows(uid, rules, now)
            cache: dict[tuple[int, tuple[str, ...]], tuple[Bindings, tuple[Neighbour, ...]]] = {}
            for rule in rules:
                key = (rule.hops, rule.via)
                if key not in cache:
                    found = tuple(near.get(key, {}).get(uid, ())) if rule.hops else ()
                    values = {
                        "twin": twin,
                        "telemetry": windows,
                        "now": now.isoformat(),
                        "neighbours": [_neighbour(n, self.policy, rule.subject) for n in found],
                    }
                    if change is not None and change.kind in EVENT_KINDS:
                        values[change.kind] = change.after or {}
                    try:
                        cache[key] = (bind(values), found)
                    except ExpressionError as exc:
                        report.errors.append(f"{rule.name} on {uid}: {exc}")
                        continue
                bindings, found = cache[key]
                report.evaluated += 1
                try:
                    if not rule.condition.holds(bindings):
                        if rule.alert is not None and rule.trigger in ("change", "schedule"):  # an event that
                            # does not hold says nothing about whether an earlier one still does
                            report.cleared.append((rule, uid))
                        continue
                    firing = Firing(rule, uid, cls, props, found, windows, change)
                    if rule.alert is not None:
                        firing = _with(
                            firing,
                            alert_key=str(rule.alert.key.evaluate(bindings)),
                            alert_message=str(rule.alert.message.evaluate(bindings))
                            if rule.alert.message
                            else f"{rule.name}: {uid}",
                        )
                    if rule.action is not None:
                        firing = _with(
                            firing,
                            parameters={
                                name: expression.evaluate(bindings)
                                for name, expression in rule.action.parameters.items()
                            },
                        )
                except ExpressionError as exc:
                    report.errors.append(f"{rule.name} on {uid}: {exc}")
                    continue
                report.firings.append(firing)

    def _windows(self, uid: str, rules: Iterable[Automation], now: datetime) -> dict[str, dict[str, Any]]:
        """The telemetry windows the rules declare, for one twin: last, mean, min, max and count over each."""
        windows: dict[str, dict[str, Any]] = {}
        for rule in rules:
            for window in rule.telemetry:
                if window.alias in windows:
                    continue
                readings = (
                    []
                    if self.telemetry is None
                    else self.telemetry.series(uid, window.metric, since=now - timedelta(seconds=window.seconds))
                )
                values = [r.value for r in readings if r.value is not None]
                windows[window.alias] = {
                    "metric": window.metric,
                    "count": len(values),
                    "last": values[-1] if values else None,
                    "mean": sum(values) / len(values) if values else None,
                    "min": min(values, default=None),
                    "max": max(values, default=None),
                }
        return windows


def _neighbour(neighbour: Neighbour, policy: Policy, subject: Subject) -> dict[str, Any]:
    """A neighbour as a rule sees it: its values masked for the rule's role, its uid, class, hops and path."""
    masked = policy.mask(subject, neighbour.twin)
    return {
        **masked.properties,
        "uid": neighbour.twin.uid,
        "cls": neighbour.twin.cls,
        "hops": neighbour.hops,
        "via": list(neighbour.via),
    }


def _with(firing: Firing, **changes: Any) -> Firing:
    from dataclasses import replace

    return replace(firing, **changes)
