"""Benchmark: read and validate (read_dtdl + Ontology.check) the RealEstateCore DTDL corpus; prints one JSON line."""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ontology.dtdl_reader import read_dtdl  # noqa: E402

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
    print(json.dumps({
        "benchmark": "ontology_load",
        "corpus": CORPUS,
        "interfaces": len(ontology),
        "seconds": round(seconds, 3),
        "peak_memory_mb": round(peak / 2**20, 1),
    }))


if __name__ == "__main__":
    main()
