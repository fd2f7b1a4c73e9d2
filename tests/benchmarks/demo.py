"""Benchmark: wall time of `twin demo --no-serve` in a fresh data directory, then of a re-run.

Usage: python tests/benchmarks/demo.py [--size small]
Prints one JSON line per run. Goal (issue 8): under 60 s for the default sample size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    """Run the demo twice in a fresh data directory and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="small")
    args = parser.parse_args()
    twin = Path(sys.executable).with_name("twin")
    with tempfile.TemporaryDirectory(prefix="twin-demo-") as tmp:
        env = {**os.environ, "TWIN_DATA_DIR": str(Path(tmp) / "twin")}
        for run in ("fresh", "rerun"):
            start = time.perf_counter()
            done = subprocess.run(
                [str(twin), "demo", "--no-serve", "--json", "--size", args.size],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=tmp,
            )
            seconds = time.perf_counter() - start
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                json.dumps(
                    {
                        "benchmark": "demo",
                        "run": run,
                        "size": args.size,
                        "seconds": round(seconds, 2),
                        "source_rows": summary["sample"]["rows"],
                        "created": sum(s["created"] for s in summary["syncs"].values()),
                        "goal_s": 60,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
