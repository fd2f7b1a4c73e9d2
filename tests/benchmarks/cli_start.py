"""Benchmark the `twin` command line's cold start against a typer hello-world with one command, side by side.

Run: .venv/bin/python tests/benchmarks/cli_start.py [--runs 5]   (prints one JSON line per figure)
Each figure is the median wall time of `--runs` fresh interpreter starts; the ratio is twin / hello-world, taken in
one run so both see the same machine load. Other commands that must stay light (token, ontology show, graph
stats) are timed too, each in a fresh data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELLO = textwrap.dedent('''
    import typer

    app = typer.Typer()


    @app.command()
    def hello(name: str = "world") -> None:
        """Say hello."""
        print(f"hello {name}")


    if __name__ == "__main__":
        app()
''')


def emit(**figures: object) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps({"benchmark": "cli_start", **figures}), flush=True)


def median_seconds(argv: list[str], runs: int, env: dict[str, str]) -> float:
    """The median wall time of `runs` fresh starts of `argv` (each must exit 0)."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    """Time `twin --help` and a typer hello-world alternately, then the light commands."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    twin = str(Path(sys.executable).with_name("twin"))
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        env = {**os.environ, "TWIN_DATA_DIR": str(Path(tmp) / "twin")}
        for argv in ([sys.executable, str(hello), "--help"], [twin, "--help"]):  # warm the OS file cache once
            median_seconds(argv, 1, env)
        twin_s = median_seconds([twin, "--help"], args.runs, env)
        hello_s = median_seconds([sys.executable, str(hello), "--help"], args.runs, env)
        emit(
            figure="help_ratio",
            twin_s=round(twin_s, 4),
            typer_hello_s=round(hello_s, 4),
            value=round(twin_s / hello_s, 3),
            runs=args.runs,
            load_average=[round(x, 2) for x in os.getloadavg()],
        )
        for name, argv in (
            ("token_s", [twin, "token", "--role", "viewer"]),
            ("ontology_show_s", [twin, "ontology", "show", "Employee"]),
            ("graph_stats_s", [twin, "graph", "stats"]),
        ):
            emit(
                figure=name,
                value=round(median_seconds(argv, args.runs, env), 4),
                runs=args.runs,
                load_average=[round(x, 2) for x in os.getloadavg()],
            )


if __name__ == "__main__":
    main()
