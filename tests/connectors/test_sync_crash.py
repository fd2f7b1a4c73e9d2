"""Crash test: a sync process killed with SIGKILL mid-run, then run again, leaves exactly the graph (twins, links,
properties), the lineage and the history an uninterrupted run produces: nothing lost, nothing duplicated, and every
twin and link in the graph has its history."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.sample.enterprise import generate_sample
from connectors.sync_state import SyncState
from governance.lineage import LineageStore
from graph.embedded import stop_embedded
from graph.history import HistoryStore
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


def data_dir(root: Path, sample: Path, pages: str = SMALL_PAGES) -> Path:
    root.mkdir(parents=True)
    shutil.copytree(sample, root / "sample")
    (root / "connectors.yaml").write_text(pages)
    return root


def without_history(state: Path, twins: dict, links: set) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The twins and links of the graph whose latest history row is missing or a deletion."""
    with sqlite3.connect(state) as con:
        twin_ops = dict(
            con.execute(
                "SELECT uid, op FROM twin_history WHERE id IN "
                "(SELECT max(id) FROM twin_history WHERE kind = 'twin' GROUP BY uid)"
            ).fetchall()
        )
        link_ops = {
            (t, s, d): op
            for s, t, d, op in con.execute(
                "SELECT uid, link_type, target, op FROM twin_history WHERE id IN "
                "(SELECT max(id) FROM twin_history WHERE kind = 'link' GROUP BY uid, link_type, target)"
            ).fetchall()
        }
    return (
        [uid for uid in twins if twin_ops.get(uid) in (None, "delete")],
        [(t, s, d) for t, s, d, _ in links if link_ops.get((t, s, d)) in (None, "delete")],
    )


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
    return sorted(
        (
            r.twin_uid,
            r.property,
            r.value_digest,
            r.source_system,
            r.source_object,
            r.record_key,
            r.source_field,
            r.mapping_rule,
            r.transform,
        )
        for run in store.runs(limit=10_000)
        for r in store.records_of_run(run.run_id)
    )


def test_killed_sync_resumes_to_the_same_graph_and_lineage(core: Ontology, tmp_path: Path) -> None:
    sample = tmp_path / "generated"
    generate_sample(sample, "small", seed=11)
    crashed = data_dir(tmp_path / "crashed", sample)
    state = crashed / "state.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.connectors.crash_sync_run", str(crashed), "0.05"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
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


MEDIUM_PAGES = SMALL_PAGES.replace("page_size: 100", "page_size: 1000")


def _killed(crashed: Path, env: dict[str, str], rng: random.Random, at_commit: int | None) -> str:
    """One run of the sync, killed with SIGKILL: by itself at a history commit, or by the test after a random time."""
    args = [sys.executable, "-m", "tests.connectors.crash_sync_run", str(crashed), "0"]
    process = subprocess.Popen(
        args + ([str(at_commit)] if at_commit else []),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        if at_commit:
            process.wait(timeout=300)
        else:
            try:
                process.wait(timeout=rng.uniform(2.0, 6.0))
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    assert process.returncode in (0, -signal.SIGKILL), output[-3000:]
    return "finished" if process.returncode == 0 else (f"commit {at_commit}" if at_commit else "timer")


def _change_values(sample: Path, step: int) -> None:
    """Change a third of the salaries and order totals in the sample sources (no record comes or goes: a record
    deleted at the source between a crash and the rerun would leave its unledgered twin behind, a separate matter)."""
    for system, statement in (
        ("hr", "UPDATE employees SET salary = salary + ? WHERE rowid % 3 = ?"),
        ("erp", "UPDATE sales_orders SET total_amount = total_amount + ? WHERE rowid % 3 = ?"),
    ):
        with sqlite3.connect(sample / f"{system}.sqlite") as con:
            con.execute(statement, (step, step % 3))


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_twenty_kills_at_random_points_leave_every_twin_and_link_with_its_history(
    core: Ontology, tmp_path: Path
) -> None:
    sample = tmp_path / "generated"
    generate_sample(sample, "medium", seed=5)
    crashed = data_dir(tmp_path / "crashed", sample, MEDIUM_PAGES)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(2026)
    outcomes = []
    for kill in range(20):  # every other kill exactly between a graph write and its history
        if kill:  # the sources move on, so that every run has changes to write
            _change_values(crashed / "sample", kill)
        outcomes.append(_killed(crashed, env, rng, rng.randint(1, 12) if kill % 2 == 0 else None))
        stop_embedded(crashed / "graph")  # the graph server the killed run used (its data is fsynced)
    print("kills:", outcomes)

    run(crashed, 0.0)  # recovery and the rerun, to completion
    clean = data_dir(tmp_path / "clean", crashed / "sample", MEDIUM_PAGES)  # the sources as they are now
    run(clean, 0.0)
    try:
        crashed_store = open_twin(crashed, core)
        clean_store = open_twin(clean, core)
        crashed_twins, crashed_links = snapshot(crashed_store)
        clean_twins, clean_links = snapshot(clean_store)
        assert len(crashed_twins) == len(clean_twins) > 10_000
        assert crashed_twins == clean_twins
        assert crashed_links == clean_links
    finally:
        crashed_store.close()
        clean_store.close()
        for d in (crashed, clean):
            stop_embedded(d / "graph")
    twins_missing, links_missing = without_history(crashed / "state.db", crashed_twins, crashed_links)
    assert (len(twins_missing), len(links_missing)) == (0, 0), (twins_missing[:5], links_missing[:5])
    with sqlite3.connect(crashed / "state.db") as con:
        writes = con.execute("SELECT state, seq_start, count FROM twin_history_write ORDER BY seq_start").fetchall()
        rows = con.execute("SELECT count(*) FROM twin_history WHERE write_id IS NOT NULL").fetchone()[0]
    assert {state for state, _, _ in writes} == {"confirmed"}
    assert sum(count for _, _, count in writes) == rows  # every row belongs to one confirmed write
    assert [seq for _, seq, _ in writes] == [1 + sum(c for _, _, c in writes[:i]) for i in range(len(writes))]
    assert HistoryStore(f"sqlite:///{crashed / 'state.db'}").unsettled() == []
    assert sum(o.startswith("commit") for o in outcomes) >= 8, outcomes  # most self-kills came before the end
