"""Benchmark: read and validate (read_dtdl + Ontology.check) the RealEstateCore DTDL corpus, and refuse a 10,000-deep
`extends` chain; prints one JSON line each."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ontology.dtdl_reader import read_dtdl, read_dtdl_report  # noqa: E402

CORPUS = "realestatecore-building"
FOLDER = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "dtdl" / CORPUS


def main() -> None:
    """Time one cold load + check of the corpus; a second, traced run measures its peak Python memory."""
    started = time.perf_counter()
    ontology = read_dtdl([FOLDER])
    problems = ontology.check()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    read_dtdl([FOLDER]).check()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if problems:
        raise SystemExit(f"{CORPUS}: {len(problems)} check problem(s), first: {problems[0]}")
    print(
        json.dumps(
            {
                "benchmark": "ontology_load",
                "corpus": CORPUS,
                "interfaces": len(ontology),
                "seconds": round(seconds, 3),
                "peak_memory_mb": round(peak / 2**20, 1),
            }
        )
    )


def deep_chain(depth: int = 10_000) -> None:
    """Time reading a file whose interfaces extend each other `depth` deep (refused: DTDL allows 10)."""
    chain = [
        {
            "@context": "dtmi:dtdl:context;3",
            "@id": f"dtmi:ex:L{i};1",
            "@type": "Interface",
            **({"extends": f"dtmi:ex:L{i - 1};1"} if i else {}),
        }
        for i in range(depth)
    ]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "chain.json").write_text(json.dumps(chain))
        started = time.perf_counter()
        report = read_dtdl_report([Path(folder)])
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "benchmark": "dtdl_extends_chain",
                "depth": depth,
                "violations": [v.rule for v in report.violations],
                "seconds": round(seconds, 3),
                "loadavg": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
    deep_chain()
