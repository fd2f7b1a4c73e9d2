"""Crash safety at the GraphStore level: kill -9 the writer and the embedded server mid-load, reopen, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from graph.embedded import embedded_status
from graph.store import GraphStore
from tests.graph.contract_ontology import contract_ontology

WRITER = textwrap.dedent(
    """
    import sys
    from graph.model import Link, Twin
    from graph.store import GraphStore
    from tests.graph.contract_ontology import contract_ontology

    data_dir, history = sys.argv[1], sys.argv[2]
    store = GraphStore.open(f"falkordb+embedded://{data_dir}", contract_ontology(), history_url=history)
    for batch in range(10_000):
        uids = [f"m{batch}-{i}" for i in range(50)]
        store.upsert_twins([Twin(u, "Machine", {"name": u, "capacity": float(batch)}) for u in uids])
        store.upsert_links([Link("dependsOn", uids[i], uids[i - 1]) for i in range(1, 50)])
        print(f"ACK {batch}", flush=True)
    """
)


def _acknowledged_then_kill(graph_dir: Path, history: str, wanted: int, kill_server: bool) -> int:
    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(graph_dir), history],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert writer.stdout is not None
    last = -1
    deadline = time.monotonic() + 120
    while last < wanted and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if not line:
            break
        if line.startswith("ACK "):
            last = int(line.split()[1])
    status = embedded_status(graph_dir)
    writer.send_signal(signal.SIGKILL)
    if kill_server and status is not None:
        os.kill(status.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    assert last >= wanted, f"the writer acknowledged only {last + 1} batches"
    return last


def _check_everything_acknowledged_is_there(graph_dir: Path, history: str, last: int) -> None:
    store = GraphStore.open(f"falkordb+embedded://{graph_dir}", contract_ontology(), history_url=history)
    try:
        for batch in range(last + 1):
            found = store.get_many([f"m{batch}-{i}" for i in range(50)])
            assert len(found) == 50, f"batch {batch}: only {len(found)} of 50 acknowledged twins survived"
            assert all(t.properties["capacity"] == float(batch) for t in found.values())
        rows = store.query("MATCH (a:Machine)-[:dependsOn]->(b:Machine) RETURN count(a)")
        assert rows[0][0] >= 49 * (last + 1)
        assert store.query("MATCH (n:Twin) RETURN count(n) - count(DISTINCT n.uid)") == [[0]]
        assert len(store.history_of("m0-1")) >= 2  # twin create and link create were recorded
    finally:
        store.close()


def test_acknowledged_store_writes_survive_kill_9_of_writer_and_server(graph_data_dir: Path, tmp_path: Path) -> None:
    history = f"sqlite:///{tmp_path / 'history.db'}"
    last = _acknowledged_then_kill(graph_data_dir, history, wanted=20, kill_server=True)
    _check_everything_acknowledged_is_there(graph_data_dir, history, last)


def test_acknowledged_store_writes_survive_kill_9_of_the_writer_alone(graph_data_dir: Path, tmp_path: Path) -> None:
    history = f"sqlite:///{tmp_path / 'history.db'}"
    last = _acknowledged_then_kill(graph_data_dir, history, wanted=10, kill_server=False)
    _check_everything_acknowledged_is_there(graph_data_dir, history, last)


def test_a_rerun_after_a_crash_completes_without_duplicates(graph_data_dir: Path, tmp_path: Path) -> None:
    history = f"sqlite:///{tmp_path / 'history.db'}"
    last = _acknowledged_then_kill(graph_data_dir, history, wanted=5, kill_server=True)
    from graph.model import Link, Twin

    store = GraphStore.open(f"falkordb+embedded://{graph_data_dir}", contract_ontology(), history_url=history)
    try:
        for batch in range(last + 3):  # replay everything, including the batch in flight at the crash
            uids = [f"m{batch}-{i}" for i in range(50)]
            store.upsert_twins([Twin(u, "Machine", {"name": u, "capacity": float(batch)}) for u in uids])
            store.upsert_links([Link("dependsOn", uids[i], uids[i - 1]) for i in range(1, 50)])
        assert store.query("MATCH (n:Machine) RETURN count(n), count(DISTINCT n.uid)")[0][0] >= 50 * (last + 3)
        assert store.query("MATCH (n:Twin) RETURN count(n) - count(DISTINCT n.uid)") == [[0]]
        assert store.query("MATCH (a)-[r:dependsOn]->(b) WITH a, b, count(r) AS c WHERE c > 1 RETURN count(*)") == [[0]]
    finally:
        store.close()


def test_a_cleared_graph_reopens_after_every_restart(graph_data_dir: Path) -> None:
    """Clearing must not leave an append-only file that FalkorDB cannot replay (GRAPH.DELETE then re-creating the
    graph did: the server crashed in GraphContext_GetSchemaByID on the next start)."""
    from graph.model import Link, Twin

    url = f"falkordb+embedded://{graph_data_dir}"
    for cycle in range(12):
        store = GraphStore.open(url, contract_ontology())
        try:
            assert store.stats().twins in (0, 31)
            store.clear()
            store.upsert_twins(
                [Twin(f"m{i}", "Machine", {"name": f"m{i}-{cycle}"}) for i in range(30)]
                + [Twin("u", "Unit", {"name": "u"})]
            )
            store.upsert_links([Link("dependsOn", f"m{i}", f"m{i - 1}") for i in range(1, 30)])
        finally:
            store.close()
    store = GraphStore.open(url, contract_ontology())
    try:
        assert store.stats().twins == 31
        assert store.get("m5").properties["name"] == "m5-11"  # type: ignore[union-attr]
    finally:
        store.close()
