"""Benchmark the embedded FalkorDB server: start, attach, restart, and write cost of each appendfsync policy.

Run: .venv/bin/python tests/benchmarks/embedded_fsync.py [--dir PATH]   (prints one JSON line per figure)
The data dir must be on the disk you care about (fsync on tmpfs is free).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph.embedded import open_embedded, stop_embedded  # noqa: E402
from graph.server_process import FSYNC_POLICIES, FsyncPolicy  # noqa: E402

NODES = 10_000
REPEATS = 3


def emit(figure: str, value: float, unit: str, **context: object) -> None:
    """Print one figure as a JSON line."""
    print(
        json.dumps(
            {"benchmark": "embedded_fsync", "figure": figure, "value": round(value, 4), "unit": unit, **context}
        ),
        flush=True,
    )


def fresh(base: Path, name: str) -> Path:
    """An empty data dir under `base` (any server on it stopped first)."""
    data_dir = base / name
    stop_embedded(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    return data_dir


def lifecycle(base: Path) -> None:
    """Cold start, attach, and restart with 10k nodes in the append-only file."""
    starts, attaches, stops, restarts = [], [], [], []
    for repeat in range(REPEATS):
        data_dir = fresh(base, f"lifecycle{repeat}")
        began = time.perf_counter()
        first = open_embedded(data_dir)
        starts.append(time.perf_counter() - began)
        began = time.perf_counter()
        second = open_embedded(data_dir)
        attaches.append(time.perf_counter() - began)
        first.client.select_graph("bench").query(
            f"UNWIND range(1, {NODES}) AS i CREATE (:N {{i: i, name: 'n' + toString(i)}})"
        )
        second.close()
        began = time.perf_counter()
        first.close()  # last client: stops the server
        stops.append(time.perf_counter() - began)
        began = time.perf_counter()
        with open_embedded(data_dir) as reopened:
            reopened.client.select_graph("bench").query("MATCH (n:N) RETURN count(n)")
            restarts.append(time.perf_counter() - began)
    emit("server_start_empty", statistics.median(starts), "s")
    emit("attach_running_server", statistics.median(attaches), "s")
    emit("stop_last_client_close", statistics.median(stops), "s")
    emit("restart_and_first_query", statistics.median(restarts), "s", nodes=NODES)


def writes(base: Path, fsync: FsyncPolicy, batch: int) -> None:
    """Create NODES nodes with UNWIND batches of `batch` rows (one GRAPH.QUERY per batch)."""
    seconds = []
    for repeat in range(REPEATS):
        data_dir = fresh(base, f"w-{fsync}-{batch}-{repeat}")
        with open_embedded(data_dir, fsync=fsync) as handle:
            graph = handle.client.select_graph("bench")
            began = time.perf_counter()
            for start in range(0, NODES, batch):
                graph.query("UNWIND $rows AS r CREATE (:N {i: r})", {"rows": list(range(start, start + batch))})
            seconds.append(time.perf_counter() - began)
        stop_embedded(data_dir)
    best = statistics.median(seconds)
    emit(
        "unwind_create_10k",
        best,
        "s",
        fsync=fsync,
        batch=batch,
        queries=NODES // batch,
        nodes_per_second=round(NODES / best),
    )


def main() -> None:
    """Run every figure in a temporary dir (or --dir)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="parent dir for the data dirs (default: temp)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="twin-fsync-bench-", dir=args.dir))
    try:
        lifecycle(base)
        for batch in (10_000, 1_000, 100, 10):
            for fsync in reversed(FSYNC_POLICIES):
                writes(base, fsync, batch)
    finally:
        for data_dir in base.iterdir():
            stop_embedded(data_dir)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
