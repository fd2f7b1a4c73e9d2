"""A sync run in its own process, for the crash test: `python -m tests.connectors.crash_sync_run DATA_DIR PAUSE`.

Runs the sample HR and ERP connectors (full) of DATA_DIR into DATA_DIR/graph with fsync=always, pausing PAUSE
seconds after each committed page so the test can kill it mid-run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from connectors.registry import ConnectorRegistry
from connectors.sync import SyncEngine
from graph.store import GraphStore
from ontology.core import load_core

CONNECTORS = ("sample-erp", "sample-hr")


def run(data_dir: Path, pause: float) -> None:
    """Sync the sample connectors of `data_dir`, pausing after each page."""
    ontology = load_core()
    store = GraphStore.open(f"falkordb+embedded://{data_dir / 'graph'}", ontology, fsync="always")
    try:
        engine = SyncEngine(store, f"sqlite:///{data_dir / 'state.db'}")
        registry = ConnectorRegistry.load(ontology, data_dir=data_dir)
        for name in CONNECTORS:
            engine.run(registry.connector(name), "full", progress=lambda *_: time.sleep(pause))
    finally:
        store.close()


if __name__ == "__main__":
    run(Path(sys.argv[1]), float(sys.argv[2]))
