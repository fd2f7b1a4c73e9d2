"""The change feed as one subject may see it: the one policy gate for every reader of changes (GraphQL, REST, event
routes, subscriptions), so none of them can show a change, or a value in it, that a read of the twin would hide.

A twin's change is shown when the subject may read the twin's class as it was then and may see the twin now (row
rules are decided on the graph as it is, in one scoped read per page). A twin that is gone (deleted, or moved out
of the subject's rows) keeps its changes visible only to a subject whose roles read its class without row rules:
whether it was inside a row rule cannot be decided any more. Row rules are decided when a page is read, so a reader
following the feed live does not see the creation of a twin that enters its rows only later (a new employee's
`worksIn` link written after the employee); `changes(after:)` read afterwards does. A link's change is shown
when both of its twins are visible now (or the subject reads every row of every class). Values are masked as a
read of the twin masks them, link properties by their classification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from governance.identity import Subject
from governance.policy import Policy
from graph.feed import FeedChange
from graph.model import TwinRecord
from graph.reads import TwinReader
from ontology.errors import UnknownTerm


@dataclass(frozen=True)
class ChangeView:
    """A change as the subject may see it, and which fields were masked how (field -> mode)."""

    change: FeedChange
    masked: dict[str, str] = field(default_factory=dict)


class ChangeGate:
    """Filters and masks pages of the change feed for one subject."""

    def __init__(self, policy: Policy, subject: Subject, reader: TwinReader) -> None:
        self.policy = policy
        self.subject = subject
        self.reader = reader
        self.scope = policy.read_scope(subject).including_retired()  # the feed is history: retired twins too
        self.ontology = reader.ontology
        self._every_row = self.scope.predicate is None and self.scope.readable_classes is None
        # a study's KPIs and a forecast's values are results, not twin properties: shown only to roles that may read
        # studies (scenario.read) or forecasts (forecast.read), as the API shows them
        self._results = {
            kind: policy.decide(subject, "operation", operation).allowed
            for kind, operation in (("study", "scenario.read"), ("forecast", "forecast.read"))
        }

    def view(self, changes: Sequence[FeedChange]) -> list[ChangeView]:
        """The changes of `changes` the subject may see, masked, in feed order (one graph read at most)."""
        uids = sorted({c.uid for c in changes} | {c.target for c in changes if c.kind == "link" and c.target})
        now = self.reader.get_many(uids, self.scope) if uids and not self._every_row else {}
        classes: dict[str, tuple[str, ...] | None] = {}  # class -> its labels, or None when the subject may not read it
        shown: list[ChangeView] = []
        for change in changes:
            if not self._results.get(change.kind, True):
                continue
            # an anomaly, forecast or study event (simulation/) is shown and masked like a change of its twin
            twin_like = change.kind in ("twin", "anomaly", "forecast", "study")
            view = self._twin(change, now, classes) if twin_like else self._link(change, now)
            if view is not None:
                shown.append(view)
        return shown

    def _readable(self, cls: str | None, classes: dict[str, tuple[str, ...] | None]) -> tuple[str, ...] | None:
        """The labels of `cls` when the subject may read its twins (None when not), decided once per page."""
        if cls is None:
            return None
        if cls not in classes:
            allowed = cls in self.ontology and self.policy.decide(self.subject, "read", cls).allowed
            classes[cls] = tuple(self.ontology.labels(cls)) if allowed else None
        return classes[cls]

    def _twin(
        self, change: FeedChange, now: dict[str, TwinRecord], classes: dict[str, tuple[str, ...] | None]
    ) -> ChangeView | None:
        cls = change.cls
        labels = self._readable(cls, classes)
        if labels is None or cls is None:
            return None
        if not self._every_row and change.uid not in now and not self.policy.sees_created(self.subject, cls):
            return None
        if self.policy.shows_every_field(self.subject, cls):  # nothing to mask: the states are the stored ones
            return ChangeView(change)
        masked: dict[str, str] = {}
        states: list[dict[str, Any] | None] = []
        for state in (change.before, change.after):
            if state is None:
                states.append(None)
                continue
            view = self.policy.mask(self.subject, TwinRecord(change.uid, cls, labels, state))
            masked.update(view.masked)
            states.append(view.properties)
        if not masked:  # nothing hidden: the states are the stored ones
            return ChangeView(change)
        return ChangeView(change.seen_as(states[0], states[1]), masked)

    def _link(self, change: FeedChange, now: dict[str, TwinRecord]) -> ChangeView | None:
        if not self._every_row and not (change.uid in now and change.target in now):
            return None
        source = now.get(change.uid)
        rel = None
        if source is not None:
            try:
                rel = self.ontology.relationships(source.cls).get(change.link_type or "")
            except UnknownTerm:
                rel = None
        masked: dict[str, str] = {}
        states: list[dict[str, Any] | None] = []
        for state in (change.before, change.after):
            if state is None:
                states.append(None)
                continue
            shown = {}
            for key, value in state.items():
                prop = rel.property(key) if rel is not None else None
                mode = self.policy.relationship_field_mode(self.subject, prop.classification if prop else None)
                if mode != "show":
                    masked[key] = mode
                    if mode == "null":
                        continue
                    value = self.policy.mask_value(value, mode)
                shown[key] = value
            states.append(shown)
        return ChangeView(change.seen_as(states[0], states[1]), masked)
