"""Benchmark: the whole graph as of a past time (graph/as_of.py) on a synthetic enterprise with history.

Usage: python tests/benchmarks/time_travel.py [--twins 100000] [--samples 300] [--only migration]
Loads N twins and ~5N links with history, then updates 2% of the twins and deletes 0.5% (recorded too); reads the
graph as of the time before those changes. Prints one JSON line per figure, with the load average:
  asof_first_query_s       the first 3-hop impact as of the past time: replay + bulk load + indexes + the query
                           (goal < 5 s at 100k twins)
  asof_replay_s            of which: the replay of history into memory
  asof_cached_3hop_p99_ms  3-hop impact p99 on the cached past graph (goal < 50 ms)
  live_3hop_p99_ms         the same queries on the live graph, for comparison
  asof_point_lookup_ms     finding the cached graph of a time (one history query)
  migration_twins_per_s    an ontology migration renaming Entity.name (on every twin) to title,
                           written with history (goal >= 10,000): the dry run's read and plan, the pages of
                           UNWIND writes and their history; `migration_plan_s` and `migration_write_s` split it
  migration_shacl_twins_per_s  SHACL validation of migrated twins (ontology/shacl.py, pyshacl), on a sample
`--only migration` loads the graph and times the migration figures only (the as-of figures are skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph.embedded import stop_embedded  # noqa: E402
from graph.model import Twin  # noqa: E402
from graph.ontology_migration import Migrator, parse_migration, shacl_issues  # noqa: E402
from graph.replay import replay_until  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from ontology.model import Ontology  # noqa: E402
from tests.benchmarks.graph_query import latencies  # noqa: E402
from tests.benchmarks.synthetic_enterprise import batches, build  # noqa: E402


def emit(figure: str, value: object, **extra: object) -> None:
    """One JSON line per figure, with the load average of the moment."""
    load = [round(x, 2) for x in os.getloadavg()]
    print(
        json.dumps({"benchmark": "time_travel", "figure": figure, "value": value, **extra, "load_avg": load}),
        flush=True,
    )


def main() -> None:
    """Load, change, and time reads of the past."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--only", choices=["migration"], help="time only these figures")
    args = parser.parse_args()
    ontology = load_core()
    data = build(ontology, args.twins)
    work = Path(tempfile.mkdtemp(prefix="twin-bench-asof-"))
    rng = random.Random(18)
    start = time.perf_counter()
    store, _ = GraphStore.load(
        f"falkordb+embedded://{work / 'graph'}",
        ontology,
        data.twins,
        data.links,
        history_url=f"sqlite:///{work / 'history.db'}",
        fsync="everysec",
    )
    try:
        emit("setup_load_s", round(time.perf_counter() - start, 1), twins=len(data.twins), links=len(data.links))
        if args.only == "migration":
            migrate(store)
            return
        time.sleep(0.01)
        past = dt.datetime.now(dt.UTC)
        time.sleep(0.01)
        machines = data.uids["Machine"]
        changed = rng.sample(machines, min(len(machines), len(data.twins) // 50))
        for chunk in batches([Twin(uid, "Machine", {"status": "down"}) for uid in changed], 5_000):
            store.upsert_twins(chunk, actor="bench")
        store.delete_twins(rng.sample(data.uids["Employee"], len(data.twins) // 200), actor="bench")
        assert store.history is not None
        start = time.perf_counter()
        replayed = replay_until(store.history, past)
        emit("asof_replay_s", round(time.perf_counter() - start, 2), twins=len(replayed.twins))
        starts = rng.choices(data.uids["Supplier"], k=args.samples // 2) + rng.choices(machines, k=args.samples // 2)
        start = time.perf_counter()
        store.at(past).impact(starts[0], 3)
        emit("asof_first_query_s", round(time.perf_counter() - start, 2), goal="< 5 s at 100k twins")
        reader = store.at(past)
        emit("asof_cached_3hop_p99_ms", latencies(lambda uid: reader.impact(uid, 3), starts)["p99_ms"], goal="< 50")
        emit("live_3hop_p99_ms", latencies(lambda uid: store.impact(uid, 3), starts)["p99_ms"])
        lookups = latencies(lambda _: store.at(past), starts[:100])
        emit("asof_point_lookup_ms", lookups["p50_ms"], p99_ms=lookups["p99_ms"])
        migrate(store)
    finally:
        store.close()
        stop_embedded(work / "graph")


def migrate(store: GraphStore) -> None:
    """Rename Entity.name to title on every twin, with history; then SHACL on a sample."""
    old = store.ontology
    classes = [
        dataclasses.replace(
            c,
            properties=tuple(dataclasses.replace(p, name="title") if p.name == "name" else p for p in c.properties),
        )
        if c.name == "Entity"
        else c
        for c in old.classes.values()
    ]
    new = Ontology(classes, iri=old.iri, version=old.version, schemas=old.schemas.values())
    migration = parse_migration("name: title\nsteps:\n  - rename_property: {class: Entity, from: name, to: title}\n")
    migrator = Migrator(migration, old, new)
    start = time.perf_counter()
    planned = migrator.plan(store)[0].changed
    plan_s = time.perf_counter() - start
    start = time.perf_counter()
    report = migrator.apply(store)
    elapsed = time.perf_counter() - start
    assert report.changed == planned
    emit("migration_plan_s", round(plan_s, 2), twins=planned)
    emit("migration_write_s", round(elapsed - plan_s, 2), twins=report.changed)
    emit(
        "migration_twins_per_s",
        round(report.changed / elapsed),
        twins=report.changed,
        seconds=round(elapsed, 1),
        goal=">= 10000",
    )
    target = GraphStore(store.backend, new, store.history, schema=False)
    sample = store.twins_of(["Machine"])[:1000]
    start = time.perf_counter()
    issues = shacl_issues(target, [t.uid for t in sample])
    elapsed = time.perf_counter() - start
    emit("migration_shacl_twins_per_s", round(len(sample) / elapsed), twins=len(sample), issues=len(issues))
    target.release()


if __name__ == "__main__":
    main()
