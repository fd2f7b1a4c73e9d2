"""A sync run in its own process, for the crash tests: `python -m tests.connectors.crash_sync_run DATA_DIR PAUSE [N]`.

Runs the sample HR and ERP connectors (full) of DATA_DIR into DATA_DIR/graph with fsync=always and history in
DATA_DIR/state.db, pausing PAUSE seconds after each committed page so the test can kill it mid-run. With N, the
process kills itself (SIGKILL) at its N-th history commit that has changes: after the graph took a write, before
its history is confirmed — the point a crash must not lose history at.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from connectors.registry import ConnectorRegistry
from connectors.sync import SyncEngine
from graph import history
from graph.store import GraphStore
from ontology.core import load_core

CONNECTORS = ("sample-erp", "sample-hr")


def run(data_dir: Path, pause: float) -> None:
    """Sync the sample connectors of `data_dir`, pausing after each page."""
    ontology = load_core()
    state = f"sqlite:///{data_dir / 'state.db'}"
    store = GraphStore.open(f"falkordb+embedded://{data_dir / 'graph'}", ontology, fsync="always", history_url=state)
    try:
        engine = SyncEngine(store, state)
        registry = ConnectorRegistry.load(ontology, data_dir=data_dir)
        for name in CONNECTORS:
            engine.run(registry.connector(name), "full", progress=lambda *_: time.sleep(pause))
    finally:
        store.close()


def kill_at_history_commit(n: int) -> None:
    """Make this process kill itself at its `n`-th history commit with changes (the graph write has landed)."""
    commit = history.PendingChanges.commit
    seen = 0

    def killing(pending: history.PendingChanges) -> int:
        nonlocal seen
        if pending.count:
            seen += 1
            if seen == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return commit(pending)

    history.PendingChanges.commit = killing  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) > 3:
        kill_at_history_commit(int(sys.argv[3]))
    run(Path(sys.argv[1]), float(sys.argv[2]))
