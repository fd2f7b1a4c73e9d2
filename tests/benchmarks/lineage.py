"""Benchmark: writing lineage as a sync does (issue 25) — batches of source records, each feeding one twin five
values (four properties and a link), into a SQLite lineage store. Prints one JSON line per figure.

    .venv/bin/python tests/benchmarks/lineage.py [--records 20000] [--batch 500] [--repeat 5]

`lineage_write_us_per_record`: CPU microseconds of the writing thread per source record (best of the repeats; the
SQLite insert runs on that thread), with the wall-clock seconds of the best repeat. Every line carries the load average
(`os.getloadavg()`): the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's packages, not this folder's scripts

from governance.lineage import LineageBatch, LineageStore, PropertyLineage, RecordLineage  # noqa: E402

VALUES_PER_RECORD = 5


def emit(figure: str, **values: object) -> None:
    """One JSON line per figure, with the load average of the moment."""
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"benchmark": "lineage", "figure": figure, **values, "load_avg": load}), flush=True)


def _record(i: int) -> RecordLineage:
    values = (
        ("name", f"Person {i}"),
        ("salary", 50_000.0 + i),
        ("email", f"p{i}@example.test"),
        ("employeeId", f"E{i:06d}"),
        ("link:worksIn", {"target": f"hr:department:D{i % 50}"}),
    )
    return RecordLineage(
        f"hr:employee:E{i:06d}",
        f"E{i:06d}",
        [PropertyLineage(p, v, p, f"sample_hr.yaml#employees.{p}", "cast:double") for p, v in values],
    )


def main() -> None:
    """Write the batches `--repeat` times into a fresh store; print the best repeat."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="source records per repeat (default 20000)")
    parser.add_argument("--batch", type=int, default=500, help="source records per batch (default 500)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="twin-lineage-bench-"))
    try:
        store = LineageStore(f"sqlite:///{work / 'lineage.db'}", digest_key=b"d" * 32)
        run = store.start_run("connector", "benchmark")
        records = [_record(i) for i in range(args.records)]
        batches = [
            LineageBatch(run.run_id, "hr", "employees", records[i : i + args.batch])
            for i in range(0, len(records), args.batch)
        ]
        best_cpu = best_wall = float("inf")
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.thread_time()
            for batch in batches:
                store.record_lineage(batch)
            best_cpu = min(best_cpu, time.thread_time() - cpu)
            best_wall = min(best_wall, time.perf_counter() - wall)
        emit(
            "lineage_write_us_per_record",
            value=round(best_cpu / args.records * 1e6, 1),
            records=args.records,
            values_per_record=VALUES_PER_RECORD,
            wall_seconds=round(best_wall, 3),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
