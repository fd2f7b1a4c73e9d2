"""Benchmark: end-to-end sync of the sample enterprise (SQLite sources -> mapping -> validated graph write ->
lineage), full and incremental after 1 % of rows changed. Prints one JSON line per figure.

    .venv/bin/python -m tests.benchmarks.sync [--rows 100000] [--fsync always|everysec|no] [--profile]
        [--profile-incremental] [--workers N] [--parallel-min-rows N]

Worker processes (TWIN_SYNC_WORKERS, TWIN_SYNC_PARALLEL_MIN_ROWS) are used as `twin` uses them by default; the full
run's line names how many; `--workers 0` measures the in-process run.

Every line carries the load average (`os.getloadavg()`) when the figure was taken: the machine is shared. The run
lines also give the CPU seconds of this process (`cpu_s.process`: the run's one writer, its threads included) and of
its children (`cpu_s.children`: the embedded graph server and the sync workers), which a loaded machine does not
stretch as it stretches wall-clock time; `rows_per_process_cpu_s` is what the writer's process would reach on a core
of its own.

Goals (issue 5): >= 50k rows/s end to end; an incremental run after 1 % changed in under 5 % of the full run's time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's packages, not this folder's scripts

from api.settings import Settings  # noqa: E402
from connectors.registry import ConnectorRegistry  # noqa: E402
from connectors.sample.enterprise import generate_sample, mutate_sample  # noqa: E402
from connectors.sync import SyncEngine  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402

CONNECTORS = ("sample-erp", "sample-hr", "sample-crm")
ROWS_PER_PERSON = 19.7  # the sample enterprise's source rows per employee


def emit(figure: str, **values: object) -> None:
    """One JSON line per figure, with the load average of the moment."""
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"benchmark": "sync", "figure": figure, **values, "load_avg": load}), flush=True)


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (all its threads) and by its child processes that are alive (the
    embedded graph server, the sync workers): a load-independent view beside the wall-clock figures."""
    me = psutil.Process()
    own = me.cpu_times()
    children = 0.0
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        children += times.user + times.system
    return own.user + own.system, children


def sync_all(
    engine: SyncEngine, registry: ConnectorRegistry, mode: str
) -> tuple[int, float, dict[str, float], dict[str, float]]:
    """Run every sample connector; (rows read, seconds, summed phase timings, CPU seconds of this process and of
    its children)."""
    rows = 0
    phases: dict[str, float] = {}
    own, children = cpu_seconds()
    started = time.perf_counter()
    for name in CONNECTORS:
        report = engine.run(registry.connector(name), mode)  # type: ignore[arg-type]
        rows += report.counts["read"]
        for phase, seconds in report.timings.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    elapsed = time.perf_counter() - started
    own_after, children_after = cpu_seconds()
    cpu = {"process": round(own_after - own, 2), "children": round(children_after - children, 2)}
    return rows, elapsed, {k: round(v, 3) for k, v in phases.items()}, cpu


def _sampler() -> Any:
    """A pyinstrument profiler (a sampling profiler: it barely slows the run it watches)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile-incremental needs pyinstrument: pip install pyinstrument") from None
    return Profiler(interval=0.0005)


def main() -> None:
    """Generate, sync fully, mutate 1 %, sync incrementally; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="source rows (about; default 100000)")
    parser.add_argument("--fsync", default="always", choices=["always", "everysec", "no"])
    parser.add_argument("--profile", action="store_true", help="print the top functions of the full run")
    parser.add_argument(
        "--profile-incremental",
        action="store_true",
        help="print where the incremental run spends its time (pyinstrument, if installed)",
    )
    parser.add_argument(
        "--history", action="store_true", help="keep graph history (in the state database), as `twin connect run` does"
    )
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    defaults = Settings()
    parser.add_argument(
        "--workers", type=int, default=defaults.sync_workers, help="sync worker processes (0: in-process)"
    )
    parser.add_argument(
        "--parallel-min-rows",
        type=int,
        default=defaults.sync_parallel_min_rows,
        help="records a read must expect before it goes to the workers",
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="twin-sync-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    people = max(40, round(args.rows / ROWS_PER_PERSON))
    started = time.perf_counter()
    manifest = generate_sample(work / "sample", people, seed=7)
    emit("generate", rows=manifest.total_rows, people=people, seconds=round(time.perf_counter() - started, 2))

    ontology = load_core()
    store = GraphStore.open(
        f"falkordb+embedded://{work / 'graph'}",
        ontology,
        fsync=args.fsync,
        history_url=f"sqlite:///{work / 'state.db'}" if args.history else None,
    )
    try:
        engine = SyncEngine(
            store, f"sqlite:///{work / 'state.db'}", workers=args.workers, parallel_min_rows=args.parallel_min_rows
        )
        registry = ConnectorRegistry.load(ontology, data_dir=work)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        rows, seconds, phases, cpu = sync_all(engine, registry, "full")
        if profiler:
            profiler.disable()
        emit(
            "full_rows_per_s",
            rows=rows,
            seconds=round(seconds, 2),
            value=round(rows / seconds),
            goal=50_000,
            fsync=args.fsync,
            history=args.history,
            workers=args.workers,
            phases=phases,
            cpu_s=cpu,
            rows_per_process_cpu_s=round(rows / max(cpu["process"], 1e-9)),
        )
        summary = mutate_sample(work / "sample", fraction=0.01, seed=3)
        changed = summary.changed_rows
        sampler = _sampler() if args.profile_incremental else None
        if sampler is not None:
            sampler.start()
        inc_rows, inc_seconds, inc_phases, inc_cpu = sync_all(engine, registry, "incremental")
        if sampler is not None:
            sampler.stop()
        emit(
            "incremental_1pct_seconds",
            changed_rows=changed,
            rows_read=inc_rows,
            seconds=round(inc_seconds, 3),
            ratio_to_full=round(inc_seconds / seconds, 4),
            goal_ratio=0.05,
            phases=inc_phases,
            cpu_s=inc_cpu,
            cpu_ratio_to_full=round(inc_cpu["process"] / max(cpu["process"], 1e-9), 4),
        )
        stats = store.stats()
        emit("graph", twins=stats.twins, links=stats.links)
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        if sampler is not None:
            print(sampler.output_text(unicode=True, show_all=False), file=sys.stderr)
    finally:
        store.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
