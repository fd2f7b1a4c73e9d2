"""Crash test: a sync process killed with SIGKILL mid-run, then run again, leaves exactly the graph (twins, links,
properties) and the lineage an uninterrupted run produces: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from connectors.sample_enterprise import generate_sample
from connectors.sync_state import SyncState
from governance.lineage import LineageStore
from graph.embedded import stop_embedded
from ontology.model import Ontology
from tests.connectors.crash_sync_run import run
from tests.connectors.twin_fixtures import core, open_twin, snapshot  # noqa: F401
from tests.server_leaks import falkordb_processes_under

REPO = Path(__file__).resolve().parents[2]
SMALL_PAGES = """\
connectors:
  sample-hr:
    mapping: mappings/sample_hr.yaml
    source: {kind: sql, url: "sqlite:///{data_dir}/sample/hr.sqlite", page_size: 100}
  sample-erp:
    mapping: mappings/sample_erp.yaml
    source: {kind: sql, url: "sqlite:///{data_dir}/sample/erp.sqlite", page_size: 100}
"""


def data_dir(root: Path, sample: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copytree(sample, root / "sample")
    (root / "connectors.yaml").write_text(SMALL_PAGES)
    return root


def ledger_rows(state: Path) -> int:
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM sync_record").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def lineage_facts(url: str) -> list[tuple]:
    """Every provenance fact without run ids or times, sorted (duplicates stay visible)."""
    store = LineageStore(url)
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT twin_uid, property, value_digest, source_system, source_object, record_key, source_field, "
            "mapping_rule, transform FROM lineage_record").fetchall()
    return sorted(tuple(r) for r in rows)


def test_killed_sync_resumes_to_the_same_graph_and_lineage(core: Ontology, tmp_path: Path) -> None:
    sample = tmp_path / "generated"
    generate_sample(sample, "small", seed=11)
    crashed = data_dir(tmp_path / "crashed", sample)
    state = crashed / "state.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "tests.connectors.crash_sync_run", str(crashed), "0.05"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    try:
        while ledger_rows(state) < 1_500:  # several pages acknowledged (ledger committed)
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else "exited"
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    acknowledged = ledger_rows(state)
    assert acknowledged >= 1_500

    run(crashed, 0.0)  # the rerun: same command, to completion
    runs = SyncState(f"sqlite:///{state}").runs()
    assert any(r.status == "aborted" for r in runs) and all(r.status != "running" for r in runs)

    clean = data_dir(tmp_path / "clean", sample)
    run(clean, 0.0)

    try:
        crashed_store = open_twin(crashed, core)
        clean_store = open_twin(clean, core)
        crashed_twins, crashed_links = snapshot(crashed_store)
        clean_twins, clean_links = snapshot(clean_store)
        assert len(crashed_twins) == len(clean_twins) > 1_000
        assert crashed_twins == clean_twins
        assert crashed_links == clean_links
        (count,) = crashed_store.backend.read("MATCH (n:Twin) RETURN count(n)")[0]
        assert count == len(crashed_twins)  # no duplicate uid
    finally:
        crashed_store.close()
        clean_store.close()
        for d in (crashed, clean):
            stop_embedded(d / "graph")
        assert falkordb_processes_under(tmp_path) == []
    assert lineage_facts(f"sqlite:///{state}") == lineage_facts(f"sqlite:///{clean / 'state.db'}")
    assert ledger_rows(state) == ledger_rows(clean / "state.db")
