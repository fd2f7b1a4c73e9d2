"""What a sync run is asked to do and what it did: the connector it runs, and its report per entity and in total."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from connectors.mapping import EntityMapping, SourceMapping
from connectors.quarantine import QuarantinedRow
from connectors.source import Source

Mode = Literal["full", "incremental"]
EXAMPLES = 5  # examples kept per kind of change


@dataclass(frozen=True)
class Connector:
    """A named source system: its mapping and a factory opening the Source of each entity."""

    name: str
    mapping: SourceMapping
    open_source: Callable[[EntityMapping], Source]
    description: str = ""
    close: Callable[[], None] = lambda: None  # releases what the sources share (e.g. an RPC session)


@dataclass
class EntityReport:
    """What a run did (or, dry, would do) with one entity: records read; twins and links created, updated,
    unchanged and deleted; records quarantined; links waiting for an endpoint."""

    entity: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    pending_links: int = 0
    links_written: int = 0
    skipped: str | None = None  # why the entity was not synced (its source object does not exist)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def example(self, kind: str, text: str) -> None:
        """Keep a few examples per kind of change for the report."""
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(text)


@dataclass
class SyncReport:
    """The outcome of a run: counts per entity and in total, timings, quarantined rows, and the run id."""

    run_id: str
    connector: str
    mode: Mode
    dry_run: bool
    status: str = "running"
    entities: list[EntityReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    quarantined_rows: list[QuarantinedRow] = field(default_factory=list)
    error: str | None = None
    resumed_from: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Totals over the entities: read, created, updated, unchanged, deleted, quarantined, pending_links."""
        keys = ("read", "created", "updated", "unchanged", "deleted", "quarantined", "pending_links", "links_written")
        return {k: sum(getattr(e, k) for e in self.entities) for k in keys}

    def entity(self, name: str) -> EntityReport:
        """The report of one entity."""
        return next(e for e in self.entities if e.entity == name)
