"""Benchmark the sample enterprise: generation time and rows/s per size, and the time of a 1 % mutation.

Run: .venv/bin/python tests/benchmarks/sample_generate.py [--sizes tiny small medium large] [--dir PATH]
Prints one JSON line per figure. Goal: "large" (about 1M source rows) at >= 200k rows/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.sample.enterprise import SIZE_PEOPLE, generate_sample, mutate_sample  # noqa: E402


def emit(figure: str, **values: object) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps({"benchmark": "sample_generate", "figure": figure, **values}), flush=True)


def main() -> None:
    """Generate each requested size into a scratch directory, time it, then time a 1 % mutation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=list(SIZE_PEOPLE), choices=list(SIZE_PEOPLE))
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sample-bench-", dir=args.dir))
    try:
        for size in args.sizes:
            out = base / size
            start = time.perf_counter()
            manifest = generate_sample(out, size, seed=args.seed)
            seconds = time.perf_counter() - start
            emit(
                "generate",
                size=size,
                people=manifest.people,
                rows=manifest.total_rows,
                file_rows=sum(manifest.file_rows.values()),
                seconds=round(seconds, 3),
                rows_per_s=round(manifest.total_rows / seconds),
                goal_rows_per_s=200_000,
            )
            start = time.perf_counter()
            summary = mutate_sample(out, fraction=0.01, seed=args.seed)
            seconds = time.perf_counter() - start
            emit(
                "mutate_1pct",
                size=size,
                changed_rows=summary.changed_rows,
                seconds=round(seconds, 3),
                changed_rows_per_s=round(summary.changed_rows / seconds),
            )
            shutil.rmtree(out)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
