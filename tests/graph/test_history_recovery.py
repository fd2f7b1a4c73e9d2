"""History survives a kill -9 between a graph write and its history: the writer is killed (SIGKILL, in a subprocess)
exactly after the graph took the write and before its history was committed/confirmed; the next open of the store
recovers the history of what the graph holds, and drops the intent of a write that never reached the graph."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from graph.embedded import stop_embedded
from graph.history import HistoryStore, twin_history, twin_history_write
from graph.store import GraphStore
from tests.graph.contract_ontology import contract_ontology

REPO = Path(__file__).resolve().parents[2]

# Writes a few twins and links normally, then kills itself (SIGKILL) at the first history commit of STEP: after the
# graph write, before its history is durable. STEP "never" kills itself after the intent, before the graph write.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from graph import history
    from graph.model import Link, Twin
    from graph.store import GraphStore
    from tests.graph.contract_ontology import contract_ontology

    data_dir, history_url, step = sys.argv[1], sys.argv[2], sys.argv[3]
    store = GraphStore.open(f"falkordb+embedded://{data_dir}", contract_ontology(), history_url=history_url)
    if step == "twins":
        store.upsert_twins([Twin(f"m{i}", "Machine", {"name": f"m{i}", "capacity": 1.0}) for i in range(3)])
    else:
        store.upsert_twins([Twin(f"m{i}", "Machine", {"name": f"m{i}", "capacity": 1.0}) for i in range(5)])
        store.upsert_links([Link("dependsOn", "m1", "m0")])
    kill = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
    if step == "never":
        history.PendingChanges.seal = lambda self, _seal=history.PendingChanges.seal: (_seal(self), kill())
    else:
        history.PendingChanges.commit = kill  # called once the graph has taken the write
    if step == "twins":  # creates and an update in one write
        store.upsert_twins([Twin("m0", "Machine", {"name": "m0", "capacity": 2.5}),
                            *(Twin(f"m{i}", "Machine", {"name": f"m{i}", "capacity": 1.0}) for i in range(3, 2003))])
    elif step == "links":
        store.upsert_links([Link("dependsOn", f"m{i}", f"m{i - 1}") for i in range(2, 5)])
    elif step == "delete":
        store.delete_twins(["m1"])
    elif step == "never":
        store.upsert_twins([Twin("m9", "Machine", {"name": "m9", "capacity": 1.0})])
    print("not killed", flush=True)
    """
)


def _killed_at(step: str, data_dir: Path, history_url: str) -> None:
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(data_dir), history_url, step],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stdout + writer.stderr


def _ops(store: GraphStore, uid: str) -> list[tuple[str, str, str | None]]:
    return [(e.kind, e.op, e.target) for e in store.history_of(uid)]


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh history database: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_write_killed_before_its_history_commit_gets_its_history_at_the_next_open(
    tmp_path: Path, history_url: str
) -> None:
    graph = tmp_path / "graph"
    try:
        _killed_at("twins", graph, history_url)
        store = GraphStore.open(f"falkordb+embedded://{graph}", contract_ontology(), history_url=history_url)
        try:
            assert store.get("m0").properties["capacity"] == 2.5  # the graph took the write
            assert _ops(store, "m0") == [("twin", "create", None), ("twin", "update", None)]
            assert store.history_of("m0")[1].after["capacity"] == 2.5
            assert all(_ops(store, f"m{i}") == [("twin", "create", None)] for i in range(3, 2003))
        finally:
            store.close()
        stop_embedded(graph)

        for step in ("links", "delete"):
            _killed_at(step, graph, history_url)
        store = GraphStore.open(f"falkordb+embedded://{graph}", contract_ontology(), history_url=history_url)
        try:
            for i in range(2, 5):  # the links of the killed write
                assert ("link", "create", f"m{i - 1}") in _ops(store, f"m{i}")
            assert store.get("m1") is None
            m1 = _ops(store, "m1")
            assert m1[-1] == ("twin", "delete", None)  # the killed delete, with the links it took along
            assert ("link", "delete", "m0") in m1 and m1.count(("link", "delete", "m1")) == 1  # m2 -> m1
        finally:
            store.close()
    finally:
        stop_embedded(graph)
    w = twin_history_write
    with HistoryStore(history_url).engine.connect() as db:  # every write confirmed, with gap-free sequence numbers
        writes = db.execute(select(w.c.state, w.c.seq_start, w.c.count).order_by(w.c.seq_start)).all()
    assert {state for state, _, _ in writes} == {"confirmed"}
    assert [seq for _, seq, _ in writes] == [1 + sum(c for _, _, c in writes[:i]) for i in range(len(writes))]


def test_an_intent_whose_graph_write_never_happened_is_dropped(tmp_path: Path, history_url: str) -> None:
    graph = tmp_path / "graph"
    try:
        _killed_at("never", graph, history_url)
        with HistoryStore(history_url).engine.connect() as db:  # the intent
            assert db.execute(select(func.count()).where(twin_history.c.uid == "m9")).scalar_one() == 1
        store = GraphStore.open(f"falkordb+embedded://{graph}", contract_ontology(), history_url=history_url)
        try:
            assert store.get("m9") is None
            assert store.history_of("m9") == []
            assert _ops(store, "m0") == [("twin", "create", None), ("link", "create", "m0")]  # confirmed writes stay
            assert HistoryStore(history_url).unsettled() == []
        finally:
            store.close()
    finally:
        stop_embedded(graph)


BULK_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from graph import history
    from graph.model import Link, Twin
    from graph.store import GraphStore
    from tests.graph.contract_ontology import contract_ontology

    data_dir, history_url, step = sys.argv[1], sys.argv[2], sys.argv[3]
    kill = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
    if step == "sealed":  # the intent is durable, the bulk write never started
        history.PendingChanges.seal = lambda self, _seal=history.PendingChanges.seal: (_seal(self), kill())
    elif step == "written":  # the bulk write created the graph, its history is not confirmed
        history.PendingChanges.commit = kill
    twins = [Twin(f"b{i}", "Machine", {"name": f"b{i}", "capacity": 1.0}) for i in range(500)]
    links = [Link("dependsOn", f"b{i}", f"b{i - 1}") for i in range(1, 500)]
    store, _ = GraphStore.load(f"falkordb+embedded://{data_dir}", contract_ontology(), twins, links,
                               history_url=history_url)
    store.close()
    print("not killed", flush=True)
    """
)


def test_a_bulk_load_killed_before_or_after_it_created_the_graph_leaves_exactly_its_history(tmp_path: Path) -> None:
    for step in ("sealed", "written"):
        history_url = f"sqlite:///{tmp_path / step / 'history.db'}"
        graph = tmp_path / step / "graph"
        graph.mkdir(parents=True)
        try:
            killed = subprocess.run(
                [sys.executable, "-c", BULK_WRITER, str(graph), history_url, step],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
            rerun = subprocess.run(
                [sys.executable, "-c", BULK_WRITER, str(graph), history_url, "-"],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=120,
            )  # sealed: the load again; written: an upsert of the same, no change
            assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        finally:
            stop_embedded(graph)
        with sqlite3.connect(tmp_path / step / "history.db") as db:
            ops = db.execute(
                "SELECT kind, op, count(*), sum(json_array_length(links)) FROM twin_history GROUP BY kind, op"
            ).fetchall()
            assert ops == [("twin", "create", 500, 499)], step  # compact rows: each twin with the links from it
            assert db.execute("SELECT last FROM twin_history_sequence WHERE name = 'history'").fetchone() == (999,)
            assert db.execute("SELECT DISTINCT state FROM twin_history_write").fetchall() == [("confirmed",)]
