"""Exactly-once execution: a process executing an approved purchase order is killed (SIGKILL) at a random moment
between the approval and the end of the execution (after it opened its stores, within the time an uninterrupted
execution takes), then run again; each time the ERP holds exactly one order for
the proposal, the proposal is executed and its ledger entry done. A fast variant runs in the default set, the
50-moment variant with `-m slow`."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.runtime import Runtime
from governance.identity import Subject

REPO = Path(__file__).resolve().parents[2]
PAUSE = 0.3
STEWARD = Subject(sub="ann", roles=frozenset({"data_steward"}))
ADMIN = Subject(sub="ada", roles=frozenset({"admin"}))
EXECUTIVE = Subject(sub="bob", roles=frozenset({"executive"}))


def _approved(runtime: Runtime) -> str:
    """A new purchase-order proposal, approved by two people (its execution queued)."""
    supplier, material = runtime.store.query(
        "MATCH (s:Supplier)-[:supplies]->(m:Material) RETURN s.uid, m.uid ORDER BY m.uid LIMIT 1"
    )[0]
    service = runtime.decisions
    proposal = service.propose(
        ADMIN,
        "erp.purchase_order",
        {"material": material, "supplier": supplier, "quantity": 10.0},
        material,
        "crash test",
    )
    service.approve(STEWARD, proposal.id)
    assert service.approve(EXECUTIVE, proposal.id).state == "approved"
    return proposal.id


def _child(data_dir: Path) -> subprocess.Popen[str]:
    """An executing process; its errors go to DATA_DIR/child.err (a file: reading `ready` from the output pipe
    buffers what follows, which `communicate` would then miss)."""
    with open(data_dir / "child.err", "w") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.decisions.crash_execution_run", str(data_dir), str(PAUSE)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )


def _ready(child: subprocess.Popen[str]) -> None:
    """Wait until the child has opened its stores (so the kill lands in the execution, not in the imports)."""
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip() == "ready", line


def _finish(data_dir: Path) -> float:
    """Run a child to its end; the seconds from `ready` to its exit."""
    child = _child(data_dir)
    _ready(child)
    started = time.monotonic()
    assert child.stdout is not None
    out = child.stdout.read()  # to the end, from the text buffer on
    child.wait(timeout=120)
    assert child.returncode == 0 and "done" in out, (
        child.returncode,
        out[-500:],
        (data_dir / "child.err").read_text()[-2000:],
    )
    return time.monotonic() - started


def crash_runs(runtime: Runtime, moments: int, seed: int) -> list[tuple[str, int]]:
    """For each moment: approve a new proposal, start an executing process, kill it after a random delay within one
    uninterrupted run's duration, run it again to the end; (proposal id, orders the ERP holds for it)."""
    data_dir = runtime.settings.data_dir
    rng = random.Random(seed)
    erp = data_dir / "sample" / "erp.sqlite"
    results = []
    duration = None
    for _ in range(moments):
        proposal_id = _approved(runtime)
        if duration is None:
            duration = _finish(data_dir)  # the first runs uninterrupted: how long a whole execution takes
        else:
            child = _child(data_dir)
            _ready(child)
            time.sleep(rng.uniform(0.0, duration))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            assert child.stdout is not None
            child.stdout.close()
            _finish(data_dir)
        with sqlite3.connect(erp) as con:
            orders = con.execute(
                "SELECT COUNT(*) FROM purchase_orders WHERE po_number = ?", (f"TW-{proposal_id}",)
            ).fetchone()[0]
        results.append((proposal_id, orders))
        proposal = runtime.decisions.proposals.require(proposal_id)
        assert proposal.state == "executed", (proposal.state, proposal.result)
        assert runtime.store.get(f"erp:po:TW-{proposal_id}") is not None
        recorded = [
            r
            for r in runtime.audit.query(operation="decision.executed", limit=1000)
            if f'"proposal": "{proposal_id}"' in r.detail
        ]
        assert recorded, f"the execution of {proposal_id} is not in the audit log"
    return results


def test_killed_execution_writes_back_exactly_once(erp_twin: Runtime) -> None:
    results = crash_runs(erp_twin, moments=3, seed=11)
    assert [orders for _, orders in results] == [1, 1, 1]


@pytest.mark.slow
def test_killed_execution_writes_back_exactly_once_at_50_moments(erp_twin: Runtime) -> None:
    results = crash_runs(erp_twin, moments=51, seed=20261203)
    assert all(orders == 1 for _, orders in results), [r for r in results if r[1] != 1]
