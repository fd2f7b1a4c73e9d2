"""What one API request carries through resolvers: the caller, their compiled read scope, and what was returned."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from governance.identity import Subject
from governance.policy import Policy
from graph.model import ReadScope
from graph.store import GraphStore


@dataclass
class RequestContext:
    """Per-request state: subject, policy and scope, plus counters the audit record and the response report."""

    subject: Subject
    policy: Policy
    scope: ReadScope
    store: GraphStore
    services: Any  # api.http.app.ApiServices (typed loosely to keep this module free of the app)
    timeout_ms: int | None = None
    max_filter_depth: int = 5
    max_filter_conditions: int = 200
    masked: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rows: int = 0
    round_trips: int = 0
    denied: bool = False
    fields: list[str] = field(default_factory=list)
    privacy: list[dict[str, Any]] = field(default_factory=list)  # differentially private answers: epsilon spent

    def note_masked(self, cls: str, masked: dict[str, str]) -> None:
        """Remember that fields of a `cls` twin were masked (reported in the response's extensions)."""
        for name, mode in masked.items():
            self.masked[(cls, name, mode)] += 1

    def masked_report(self) -> list[dict[str, Any]]:
        """The masked fields of this response, one entry per class, field and mode, with how many values."""
        return [
            {"className": cls, "field": name, "mode": mode, "count": count}
            for (cls, name, mode), count in sorted(self.masked.items())
        ]
