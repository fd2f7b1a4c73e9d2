"""Benchmark: query latency on a synthetic enterprise in the embedded twin graph.

Usage: python tests/benchmarks/graph_query.py [--twins 100000] [--samples 300]
Prints one JSON line per figure: 1-, 2- and 3-hop impact p50/p99, by-uid lookup, filtered page, 2-hop neighbourhood,
grouped aggregate, full-text search; plus server memory. Goals (issue 3): 3-hop impact p99 < 50 ms at 100k twins,
< 200 ms at 1M.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph.embedded import embedded_status  # noqa: E402
from graph.model import Condition, OrderBy  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from tests.benchmarks.synthetic_enterprise import batches, build  # noqa: E402


def emit(**figures: object) -> None:
    """Print one JSON line."""
    print(json.dumps({"benchmark": "graph_query", **figures}), flush=True)


def latencies(action: Callable[[str], object], keys: list[str]) -> dict[str, float]:
    """p50/p99/mean in ms of `action` over `keys` (after a short warm-up)."""
    for key in keys[:10]:
        action(key)
    times = []
    for key in keys:
        start = time.perf_counter()
        action(key)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "mean_ms": round(statistics.fmean(times), 2),
        "samples": len(times),
    }


def main() -> None:
    """Load a synthetic enterprise and time the read paths."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    ontology = load_core()
    data = build(ontology, args.twins)
    work = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    store = GraphStore.open(f"falkordb+embedded://{work / 'graph'}", ontology, fsync="everysec")
    rng = random.Random(7)
    try:
        start = time.perf_counter()
        for chunk in batches(data.twins, 20_000):
            store.upsert_twins(chunk)
        for chunk in batches(data.links, 20_000):
            store.upsert_links(chunk)
        emit(
            figure="setup",
            twins=len(data.twins),
            links=len(data.links),
            load_seconds=round(time.perf_counter() - start, 1),
        )
        starts = (
            rng.choices(data.uids["Supplier"], k=args.samples // 3)
            + rng.choices(data.uids["Machine"], k=args.samples // 3)
            + rng.choices(data.uids["Material"], k=args.samples - 2 * (args.samples // 3))
        )
        rng.shuffle(starts)
        sizes = []
        for hops in (1, 2, 3):
            emit(
                figure="impact",
                hops=hops,
                twins=len(data.twins),
                **latencies(lambda uid, h=hops: sizes.append(len(store.impact(uid, h))), starts),
            )
        emit(figure="impact_result_size", mean_hits=round(statistics.fmean(sizes), 1), max_hits=max(sizes))
        employees = rng.choices(data.uids["Employee"], k=args.samples)
        emit(figure="get_by_uid", **latencies(store.get, employees))
        emit(figure="neighbours_2_hops", **latencies(lambda uid: store.neighbours(uid, depth=2, limit=200), employees))
        prefixes = [f"Employee {rng.randint(1, 99)}" for _ in range(args.samples)]
        emit(
            figure="filtered_sorted_page",
            **latencies(
                lambda p: store.find("Employee", [Condition("name", "starts_with", p)], [OrderBy("name")], limit=20),
                prefixes,
            ),
        )
        emit(
            figure="grouped_aggregate",
            **latencies(lambda _: store.aggregate("Entity", [("count", None)], group_by=["_class"]), ["x"] * 20),
        )
        words = [f"Machine {rng.randint(0, len(data.uids['Machine']) - 1)}" for _ in range(args.samples)]
        emit(figure="full_text_search", **latencies(lambda w: store.search(w, limit=10), words))
        status = embedded_status(work / "graph")
        if status is not None:
            emit(figure="memory", server_rss_mb=round(psutil.Process(status.pid).memory_info().rss / 2**20))
    finally:
        store.close()


if __name__ == "__main__":
    main()
