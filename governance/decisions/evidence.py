"""Evidence: what made an automation's condition true — the twins and the values read, where each value came from
(lineage references), the change that triggered it and the telemetry windows — stored with an alert or a proposal
and masked per subject when read."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from governance.identity import Subject
from governance.policy import Policy
from graph.model import TwinRecord

EVENT_OPERATIONS = {"study": "scenario.read", "forecast": "forecast.read"}
"""The operation a reader needs to see the values of a study or forecast event in an alert's evidence."""


@dataclass(frozen=True)
class LineageRef:
    """Where a value came from: source system, object, record key, field and the sync run."""

    property: str
    source_system: str
    source_object: str
    record_key: str
    source_field: str
    run_id: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready fields."""
        return {
            "property": self.property,
            "sourceSystem": self.source_system,
            "sourceObject": self.source_object,
            "recordKey": self.record_key,
            "sourceField": self.source_field,
            "runId": self.run_id,
        }


@dataclass(frozen=True)
class EvidenceTwin:
    """A twin the condition read: the values it read, their lineage, and how it relates to the triggering twin."""

    uid: str
    cls: str
    values: dict[str, Any]
    lineage: tuple[LineageRef, ...] = ()
    hops: int = 0  # 0 = the triggering twin
    masked: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = {
            "uid": self.uid,
            "className": self.cls,
            "values": self.values,
            "hops": self.hops,
            "lineage": [ref.to_dict() for ref in self.lineage],
        }
        if self.masked:
            data["masked"] = dict(sorted(self.masked.items()))
        return data


@dataclass(frozen=True)
class Evidence:
    """Everything an alert or a proposal shows for why it exists."""

    twins: tuple[EvidenceTwin, ...] = ()
    change: dict[str, Any] | None = None  # seq, op, actor, source, runId of the triggering change
    telemetry: dict[str, dict[str, Any]] = field(default_factory=dict)
    hidden: int = 0  # evidence twins left out for the reader

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data: dict[str, Any] = {
            "twins": [t.to_dict() for t in self.twins],
            "change": self.change,
            "telemetry": self.telemetry,
        }
        if self.hidden:
            data["hidden"] = self.hidden
        return data

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Evidence:
        """Read back the stored form."""
        data = json.loads(text or "{}")
        twins = tuple(
            EvidenceTwin(
                t["uid"],
                t["className"],
                dict(t.get("values") or {}),
                tuple(
                    LineageRef(
                        r["property"],
                        r["sourceSystem"],
                        r["sourceObject"],
                        r["recordKey"],
                        r["sourceField"],
                        r["runId"],
                    )
                    for r in t.get("lineage") or ()
                ),
                int(t.get("hops", 0)),
                dict(t.get("masked") or {}),
            )
            for t in data.get("twins") or ()
        )
        return cls(twins, data.get("change"), dict(data.get("telemetry") or {}), int(data.get("hidden", 0)))


def visible_evidence(evidence: Evidence, policy: Policy, subject: Subject, seen: Collection[str]) -> Evidence:
    """`evidence` as `subject` may see it: twins it may not read (class, or rows: `seen` is what it sees) left out,
    values masked by the policy; telemetry only with the triggering twin."""
    shown = []
    for twin in evidence.twins:
        if (
            twin.cls not in policy.ontology
            or not policy.decide(subject, "read", twin.cls).allowed
            or twin.uid not in seen
        ):
            continue
        masked = policy.mask(
            subject, TwinRecord(twin.uid, twin.cls, policy.ontology.labels(twin.cls), dict(twin.values))
        )
        lineage = tuple(
            ref for ref in twin.lineage if ref.property in masked.properties and ref.property not in masked.masked
        )
        shown.append(replace(twin, values=masked.properties, lineage=lineage, masked=masked.masked))
    root_shown = any(t.hops == 0 for t in shown)
    change = evidence.change
    if change is not None and "event" in change:
        operation = EVENT_OPERATIONS.get(str(change.get("kind")))
        if not root_shown or (operation and not policy.decide(subject, "operation", operation).allowed):
            change = {k: v for k, v in change.items() if k != "event"}  # an event's values go with its twin, and
            # a study's or forecast's results with the right to read studies or forecasts
    return Evidence(
        tuple(shown),
        change,
        evidence.telemetry if root_shown else {},
        evidence.hidden + len(evidence.twins) - len(shown),
    )


def evidence_values(properties: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """The values among `properties` that an automation read (all of them when it names none)."""
    if not names:
        return dict(properties)
    return {name: properties[name] for name in sorted(names) if name in properties}
