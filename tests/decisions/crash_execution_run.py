"""Execute the approved proposals of a data directory in a process of its own, for the crash tests:
`python -m tests.decisions.crash_execution_run DATA_DIR PAUSE`.

Runs every due execution until none is pending or claimed (a claim a killed process left lapses after LEASE
seconds), pausing PAUSE seconds after each write-back so that a kill can land between the write-back and the
twin change or the ledger's update. Prints `ready` once the stores are open (the test aims its kill after it) and
`done` at the end.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from api.runtime import Runtime
from governance.decisions.execution import Executor
from governance.decisions.proposals import execution_table
from tests.decisions.conftest import settings_for

LEASE = 0.5


def run(data_dir: Path, pause: float) -> None:
    """Run every due execution of `data_dir` to its end."""
    runtime = Runtime(settings=settings_for(data_dir))
    try:
        service = runtime.decisions
        for name in service.action_types.names():
            kind = service.action_types.get(name)
            if kind is not None and kind.writeback is not None:
                write = kind.writeback
                service.action_types.register(
                    replace(kind, writeback=lambda pid, p, w=write: _paused(w(pid, p), pause))
                )
        executor = Executor(
            service.proposals,
            service.action_types,
            runtime.store,
            runtime.policy,
            holder=f"crash-{os.getpid()}",
            lease_seconds=LEASE,
            on_outcome=service.executed,
        )
        runtime.store.feed.head()
        print("ready", flush=True)
        while True:
            executor.run_and_record(service.executed)
            with executor.engine.connect() as conn:
                open_entries = conn.execute(
                    select(execution_table.c.proposal_id).where(execution_table.c.state.in_(["pending", "running"]))
                ).all()
            if not open_entries and not executor.unrecorded():
                break
            time.sleep(0.05)
    finally:
        runtime.close()
    print("done", flush=True)


def _paused(reference: str, pause: float) -> str:
    time.sleep(pause)
    return reference


if __name__ == "__main__":
    run(Path(sys.argv[1]), float(sys.argv[2]))
