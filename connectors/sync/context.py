"""The state of one sync run, shared by its steps (mapping, writing, committing, deleting)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.source import Watermark
from connectors.sync.committer import BatchCommitter
from connectors.sync.report import Connector, Mode, SyncReport


@dataclass
class RunContext:
    """State of one run."""

    connector: Connector
    mode: Mode
    dry_run: bool
    run_id: str
    report: SyncReport
    progress: Callable[[str, int, int | None], None] | None
    has_merges: bool
    open_quarantine: dict[str, set[str]]
    committer: BatchCommitter | None = None
    watermarks: dict[str, Watermark] = field(default_factory=dict)  # committed watermarks as the run began
    planned: set[str] = field(default_factory=set)  # dry run: uids an earlier page would have created or updated
    ledger_counts: dict[str, int] = field(default_factory=dict)  # per entity: ledger entries when the run began,
    new_keys: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # records new to the ledger since,
    dropped: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # and ledger entries dropped since
    unledgered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # keys quarantined this run
    created_keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # keys new to the ledger
    allow_deletions: float | None = None  # the share of an entity's records this run may delete (None: the default)
    deleting: dict[str, tuple[int, int]] = field(default_factory=dict)  # entity -> (records known, deleted so far)

    def ledger_size(self, entity: str) -> int:
        """The entity's ledger entries once this run's submitted batches are committed: as the run began, plus
        records new to the ledger, minus entries dropped (a connector's runs do not overlap)."""
        return self.ledger_counts.get(entity, 0) + self.new_keys[entity] - self.dropped[entity]
