"""kill -9 of `twin serve` while clients send mutations: after the next open every twin a mutation put in the graph
has its history, and no acknowledged twin is lost.

The server runs with each history confirmation delayed by 50 ms (a real `twin serve`, its PendingChanges.commit
wrapped), which widens the window between a graph write and its history so the kill lands in it."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from governance.audit import AuditLog
from governance.tokens import issue_token
from graph.embedded import stop_embedded
from graph.store import GraphStore
from ontology.core import load_core

REPO = Path(__file__).resolve().parents[2]
SERVER = """
import sys, time
from graph import history
commit = history.PendingChanges.commit
history.PendingChanges.commit = lambda self: (time.sleep(0.05), commit(self))[1]
from api.cli.app import app
app(["serve", "--port", sys.argv[1], "--log-level", "warning"])
"""
UPSERT = "mutation($t: [TwinInput!]!) { upsertTwins(twins: $t) { created updated } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _serve_and_kill(data_dir: Path, token: str, round_no: int, acknowledged: set[str], answered: list[int]) -> int:
    """Start `twin serve`, let 4 clients send mutations, kill -9 the server; returns how many mutations were sent."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TWIN_DATA_DIR": str(data_dir), "TWIN_GRAPH_FSYNC": "always"}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "twin serve did not become ready"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        stop = threading.Event()
        sent = [0]

        def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                uids = [f"api-{round_no}-{n}-{i}-{k}" for k in range(5)]
                twins = [{"uid": u, "className": "Machine", "properties": {"name": u, "mtbfHours": 1.0}} for u in uids]
                i += 1
                sent[0] += 1
                try:
                    body = _post(port, token, {"query": UPSERT, "variables": {"t": twins}})
                except (urllib.error.URLError, OSError, ValueError):
                    return  # the server is gone
                if body.get("data") and body["data"].get("upsertTwins"):
                    acknowledged.update(uids)
                    answered[0] += 1

        clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in clients:
            thread.start()
        time.sleep(1.5 + round_no * 0.37)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
        return sent[0]
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.slow
def test_kill_9_of_twin_serve_during_mutations_leaves_every_twin_with_its_history(tmp_path: Path) -> None:
    data_dir = tmp_path / "twin"
    data_dir.mkdir()
    token = issue_token(data_dir, ["architect"], sub="crash-test")
    acknowledged: set[str] = set()
    answered = [0]  # mutations the server answered with a result
    try:
        for round_no in range(4):
            assert _serve_and_kill(data_dir, token, round_no, acknowledged, answered) > 10
        store = GraphStore.open(
            f"falkordb+embedded://{data_dir / 'graph'}", load_core(), history_url=f"sqlite:///{data_dir / 'twin.db'}"
        )  # the recovery runs here
        try:
            in_graph = {
                uid for (uid,) in store.backend.read("MATCH (n:Twin) WHERE n.uid STARTS WITH 'api-' RETURN n.uid")
            }
        finally:
            store.close()
    finally:
        stop_embedded(data_dir / "graph")
    assert acknowledged and acknowledged <= in_graph  # no acknowledged mutation lost
    with sqlite3.connect(data_dir / "twin.db") as db:
        recorded = {
            uid
            for (uid,) in db.execute(
                "SELECT uid FROM twin_history WHERE kind = 'twin' AND op = 'create' AND uid LIKE 'api-%'"
            )
        }
        assert in_graph - recorded == set()  # every twin a mutation created has its history
        assert recorded <= in_graph  # and no history of a twin the graph does not hold
        assert {state for (state,) in db.execute("SELECT DISTINCT state FROM twin_history_write")} == {"confirmed"}
    # a mutation is answered only once its audit record is stored: every answered one has its record, and the chain
    # the killed servers left verifies
    log = AuditLog(f"sqlite:///{data_dir / 'twin.db'}")
    audited = [
        r
        for r in log.query(subject="crash-test", limit=1_000_000)
        if r.operation.startswith("graphql.mutation") and str(r.decision) == "allow"
    ]
    assert answered[0] > 0 and len(audited) >= answered[0]
    assert log.verify().ok
