"""Benchmark: what governance costs — a governed read vs the same read ungoverned, and audit appends per second.

Usage: python tests/benchmarks/governance.py [--twins 20000] [--repeat 300]
Prints one JSON line per figure. Goals (issue 4): governed/ungoverned ratio <= 1.10; >= 5,000 audit appends/s (SQLite).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from governance.audit import AuditEvent, AuditLog  # noqa: E402
from governance.identity import Subject  # noqa: E402
from governance.policy import load_policy  # noqa: E402
from graph.model import UNRESTRICTED, Condition, OrderBy  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from tests.benchmarks.synthetic_enterprise import batches, build  # noqa: E402


def emit(**figures: object) -> None:
    """Print one JSON line, with the load average it was measured under."""
    print(
        json.dumps({"benchmark": "governance", **figures, "load_average": [round(x, 2) for x in os.getloadavg()]}),
        flush=True,
    )


def median_ms(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `action` in milliseconds (after a warm-up)."""
    for _ in range(5):
        action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Load a synthetic enterprise, then compare governed and ungoverned reads and time audit appends."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    ontology = load_core()
    policy = load_policy(ontology)
    data = build(ontology, args.twins)
    work = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    store = GraphStore.open(f"falkordb+embedded://{work / 'graph'}", ontology)
    try:
        for chunk in batches(data.twins, 20_000):
            store.upsert_twins(chunk)
        for chunk in batches(data.links, 20_000):
            store.upsert_links(chunk)
        unit = data.uids["OrgUnit"][1]
        machine = data.uids["Machine"][0]
        cases = {
            "architect": Subject("a", frozenset({"architect"})),
            "hr_row_rule": Subject("h", frozenset({"hr"}), org_unit=unit),
        }
        for label, who in cases.items():
            scope = policy.read_scope(who)
            queries: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
                "employee_page": (
                    lambda: (
                        store.find(
                            "Employee",
                            [Condition("name", "starts_with", "Employee 1")],
                            [OrderBy("name")],
                            limit=50,
                            scope=UNRESTRICTED,
                        ).items
                    ),
                    lambda who=who, scope=scope: [
                        policy.mask(who, r)
                        for r in store.find(
                            "Employee",
                            [Condition("name", "starts_with", "Employee 1")],
                            [OrderBy("name")],
                            limit=50,
                            scope=scope,
                        ).items
                    ],
                ),
                "impact_3_hops": (
                    lambda: store.impact(machine, 3, scope=UNRESTRICTED),
                    lambda who=who, scope=scope: [
                        policy.mask(who, h.twin) for h in store.impact(machine, 3, scope=scope)
                    ],
                ),
            }
            for name, (ungoverned, governed) in queries.items():
                if label == "hr_row_rule" and name == "impact_3_hops":
                    continue  # hr cannot see machines at all
                base = median_ms(ungoverned, args.repeat)
                gov = median_ms(governed, args.repeat)
                emit(
                    figure="policy_overhead",
                    role=label,
                    query=name,
                    ungoverned_ms=round(base, 3),
                    governed_ms=round(gov, 3),
                    ratio=round(gov / base, 3),
                    goal=1.10,
                )
    finally:
        store.close()

    log = AuditLog(f"sqlite:///{work / 'audit.db'}")
    count = 10_000
    start = time.perf_counter()
    for i in range(count):
        log.append(
            AuditEvent(
                subject=f"user-{i % 20}",
                operation="query employees",
                decision="allow",
                roles=("architect",),
                variables={"first": 20, "after": i},
                policy_version="1.0.0",
                rows_returned=20,
            )
        )
    emit(figure="audit_appends_per_s", backend="sqlite", value=round(count / (time.perf_counter() - start)), goal=5000)


if __name__ == "__main__":
    main()
