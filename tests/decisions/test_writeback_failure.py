"""A write-back the ERP refuses aborts the action before the twin is touched: the attempt is recorded and retried
with back-off; after the last attempt the proposal is failed, visibly, and its end is in the audit log."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from sqlalchemy import update

from api.runtime import Runtime
from governance.decisions.execution import MAX_ATTEMPTS, Executor
from governance.decisions.proposals import execution_table
from governance.identity import Subject
from graph.model import Twin


def test_refused_writeback_aborts_and_fails_after_retries(erp_twin: Runtime) -> None:
    runtime = erp_twin
    service = runtime.decisions
    material = runtime.store.query("MATCH (m:Material) RETURN m.uid ORDER BY m.uid LIMIT 1")[0][0]
    # a supplier the twin knows but the ERP does not: the ERP refuses the order
    runtime.store.upsert_twins([Twin("erp:supplier:SUP-99999", "Supplier", {"name": "Ghost Supplies"})])
    admin = Subject(sub="ada", roles=frozenset({"admin"}))
    proposal = service.propose(
        admin,
        "erp.purchase_order",
        {"material": material, "supplier": "erp:supplier:SUP-99999", "quantity": 3.0},
        material,
        "test",
    )
    service.approve(Subject(sub="ann", roles=frozenset({"data_steward"})), proposal.id)
    service.approve(Subject(sub="bob", roles=frozenset({"executive"})), proposal.id)
    executor = Executor(
        service.proposals, service.action_types, runtime.store, runtime.policy, "test", on_outcome=service.executed
    )

    [first] = executor.run_and_record(service.executed)
    assert first.state == "retry" and "no supplier SUP-99999" in (first.error or "")
    entry = executor.entry(proposal.id)
    assert entry is not None and entry["state"] == "pending" and entry["attempts"] == 1
    assert executor.due() == []  # backing off
    assert runtime.store.get(f"erp:po:TW-{proposal.id}") is None  # the twin was not touched
    with sqlite3.connect(runtime.settings.data_dir / "sample" / "erp.sqlite") as erp:
        assert (
            erp.execute("SELECT COUNT(*) FROM purchase_orders WHERE po_number = ?", (f"TW-{proposal.id}",)).fetchone()[
                0
            ]
            == 0
        )

    with executor.engine.begin() as conn:  # the last attempt is due now
        conn.execute(
            update(execution_table)
            .where(execution_table.c.proposal_id == proposal.id)
            .values(attempts=MAX_ATTEMPTS - 1, next_attempt_at=datetime.now(UTC))
        )
    [last] = executor.run_and_record(service.executed)
    assert last.state == "failed"
    failed = service.proposals.require(proposal.id)
    assert failed.state == "failed" and "SUP-99999" in (failed.result or "")
    records = {
        r.operation: json.loads(r.detail)
        for r in runtime.audit.query(limit=1000)
        if r.operation in ("decision.attempt_failed", "decision.failed")
    }
    assert records["decision.attempt_failed"]["attempts"] == 1
    assert records["decision.failed"]["state"] == "failed" and records["decision.failed"]["proposal"] == proposal.id
    assert executor.unrecorded() == []
