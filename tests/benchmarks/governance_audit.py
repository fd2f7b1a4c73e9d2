"""Benchmark: audit appends per second (single, batched, and through the API's trail beside a busy thread), chain
verification, and lineage record rate.

Usage: python tests/benchmarks/governance_audit.py [--appends 20000] [--batch 1000] [--lineage 200000]
       [--url sqlite:///PATH | postgresql://...]
Prints one JSON line per figure. Goal from issue 4: >= 5,000 audit appends/s on SQLite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from api.http.audit_hook import AuditTrail  # noqa: E402
from governance.audit import AuditEvent, AuditLog, Decision  # noqa: E402
from governance.identity import Subject  # noqa: E402
from governance.lineage import LineageStore, ProvenanceRecord  # noqa: E402


def emit(**figures: object) -> None:
    """Print one JSON line."""
    print(json.dumps({"benchmark": "governance_audit", **figures}), flush=True)


def event(i: int) -> AuditEvent:
    """A typical API-operation event."""
    return AuditEvent(
        subject=f"user-{i % 50}",
        operation="query employees",
        decision="allow",
        roles=("hr", "viewer"),
        variables={"orgUnit": "plant-b", "first": 50, "after": i},
        policy_version="v1",
        rows_returned=50,
    )


def trail_rate(log: AuditLog, events: list[AuditEvent]) -> float:
    """Events/s through the API's audit trail (a writer thread) while another thread computes, as request
    handlers do under load."""
    trail = AuditTrail(log)
    stop = threading.Event()

    def compute() -> None:
        total = 0
        while not stop.is_set():
            total += sum(range(1_000))

    busy = threading.Thread(target=compute, daemon=True)
    busy.start()
    try:
        start = time.perf_counter()
        for item in events:
            trail.record(
                Subject(item.subject, frozenset(item.roles)),
                item.operation,
                decision=Decision.ALLOW,
                policy_version=item.policy_version,
                variables=item.variables,
                rows=item.rows_returned,
            )
        trail.flush()
        return len(events) / (time.perf_counter() - start)
    finally:
        stop.set()
        busy.join()
        trail.close()


def main() -> None:
    """Run the audit and lineage benchmarks and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--lineage", type=int, default=200_000)
    parser.add_argument("--url", default=None, help="relational store URL (default: a fresh SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="twin-bench-") as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'governance.db'}"
        backend = url.split(":", 1)[0]
        log = AuditLog(url)
        events = [event(i) for i in range(args.appends)]

        start = time.perf_counter()
        for item in events:
            log.append(item)
        elapsed = time.perf_counter() - start
        emit(
            figure="audit_single_appends_per_s",
            backend=backend,
            value=round(args.appends / elapsed),
            appends=args.appends,
            goal=5000,
        )

        start = time.perf_counter()
        for offset in range(0, len(events), args.batch):
            log.append_many(events[offset : offset + args.batch])
        elapsed = time.perf_counter() - start
        emit(
            figure="audit_batched_appends_per_s",
            backend=backend,
            value=round(args.appends / elapsed),
            appends=args.appends,
            batch=args.batch,
        )

        emit(
            figure="audit_trail_appends_per_s_beside_busy_thread",
            backend=backend,
            value=round(trail_rate(log, events[:5_000])),
            appends=min(5_000, len(events)),
        )

        start = time.perf_counter()
        result = log.verify()
        elapsed = time.perf_counter() - start
        emit(
            figure="audit_verify_records_per_s",
            backend=backend,
            value=round(result.records_checked / elapsed),
            records=result.records_checked,
            ok=result.ok,
        )

        store = LineageStore(url)
        run = store.start_run("connector", "benchmark")
        start = time.perf_counter()
        records = [
            ProvenanceRecord.of(
                f"emp-{i % 10_000}",
                f"p{i % 12}",
                i * 7,
                source_system="erp",
                source_object="employees",
                record_key=f"E{i % 10_000}",
                run_id=run.run_id,
                source_field=f"F{i % 12}",
                mapping_rule="employee",
            )
            for i in range(args.lineage)
        ]
        built = time.perf_counter()
        for offset in range(0, len(records), 50_000):
            store.record(records[offset : offset + 50_000])
        stored = time.perf_counter()
        emit(
            figure="lineage_records_per_s",
            backend=backend,
            value=round(args.lineage / (stored - built)),
            records=args.lineage,
            including_digests_per_s=round(args.lineage / (stored - start)),
        )

        start = time.perf_counter()
        for i in range(1000):
            store.where_from(f"emp-{i}", "p3")
        emit(
            figure="lineage_where_from_per_s",
            backend=backend,
            value=round(1000 / (time.perf_counter() - start)),
            records=args.lineage,
        )


if __name__ == "__main__":
    main()
