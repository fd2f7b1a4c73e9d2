"""The stores a sync run works with, wired once: the graph, and the relational stores that share one engine."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.identity import IdentityResolver
from connectors.quarantine import QuarantineStore
from connectors.sync_state import SyncState
from connectors.telemetry import TelemetryStore
from governance.lineage import LineageStore
from graph.store import GraphStore


@dataclass(frozen=True)
class SyncStores:
    """The graph and the relational stores of a sync: state (ledger, watermarks, pending links, runs), quarantine,
    identities, telemetry and lineage. The relational ones at one URL share that URL's engine (graph/relational.py),
    whose tables are created once per process."""

    graph: GraphStore
    state: SyncState
    quarantine: QuarantineStore
    identity: IdentityResolver
    telemetry: TelemetryStore
    lineage: LineageStore

    @classmethod
    def open(cls, graph: GraphStore, state_url: str, lineage: LineageStore | None = None) -> SyncStores:
        """The stores of the sync state at `state_url` (lineage there too, unless another lineage store is given);
        the ledger and identity keys seal personal values with the given lineage store's seal."""
        seal = lineage.seal if lineage is not None else None
        return cls(
            graph,
            SyncState(state_url, seal),
            QuarantineStore(state_url),
            IdentityResolver(state_url, seal),
            TelemetryStore(state_url),
            lineage or LineageStore(state_url),
        )

    @property
    def lineage_with_state(self) -> bool:
        """Whether lineage lives in the sync state's database: then a batch's lineage commits in its ledger
        transaction (no batch journal)."""
        return self.lineage.engine is self.state.engine
