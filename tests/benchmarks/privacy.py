"""Benchmark: what sealing personal values costs a sync, and how long erasing one subject takes.

    .venv/bin/python -m tests.benchmarks.privacy [--rows 20000] [--rounds 2] [--history-rows 1000]

`sync_encryption_overhead`: a full sync of the sample enterprise (history and lineage kept, as `twin connect run`
does) with personal values sealed under their subjects' keys, divided by the same sync without sealing; same data,
same run, fresh twins, the rounds alternated and the best time of each kept. Goal (issue 19): <= 1.15.
`erase_seconds`: `erase_personal_data` of one employee with `--history-rows` history rows (graph, history, lineage,
ledger and identity keys blanked, the graph's log compacted, the subject's key destroyed). Goal: < 0.5 s.

Every line carries the load average of the moment: the machine is shared.
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

from connectors.registry import ConnectorRegistry  # noqa: E402
from connectors.sample.enterprise import generate_sample  # noqa: E402
from connectors.sync import SyncEngine  # noqa: E402
from governance.audit import AuditLog  # noqa: E402
from governance.erasure import erase_personal_data  # noqa: E402
from governance.identity import Subject  # noqa: E402
from governance.lineage import LineageStore  # noqa: E402
from governance.master_key import FileMasterKey  # noqa: E402
from governance.personal_seal import PersonalSeal, personal_properties  # noqa: E402
from governance.policy import load_policy  # noqa: E402
from governance.subject_keys import SubjectKeyRing  # noqa: E402
from graph.embedded import stop_embedded  # noqa: E402
from graph.model import Twin  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from ontology.model import Ontology  # noqa: E402

CONNECTORS = ("sample-erp", "sample-hr", "sample-crm")
ROWS_PER_PERSON = 19.7  # the sample enterprise's source rows per employee


def emit(figure: str, **values: object) -> None:
    """One JSON line per figure, with the load average of the moment."""
    load = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"benchmark": "privacy", "figure": figure, **values, "load_avg": load}), flush=True)


def _seal(work: Path, ontology: Ontology) -> PersonalSeal:
    ring = SubjectKeyRing(f"sqlite:///{work / 'keys' / 'subject_keys.db'}", FileMasterKey(work / "keys" / "master.key"))
    return PersonalSeal(ring, personal_properties(ontology), b"k" * 32)


def full_sync(sample: Path, work: Path, ontology: Ontology, sealed: bool) -> float:
    """Seconds of one full sync of every sample connector into a fresh twin (sealed or not)."""
    work.mkdir(parents=True)
    shutil.copytree(sample, work / "sample")
    state = f"sqlite:///{work / 'state.db'}"
    seal = _seal(work, ontology) if sealed else None
    store = GraphStore.open(f"falkordb+embedded://{work / 'graph'}", ontology, fsync="no", history_url=state, seal=seal)
    try:
        engine = SyncEngine(store, state, lineage=LineageStore(state, b"d" * 32, seal))
        registry = ConnectorRegistry.load(ontology, data_dir=work)
        started = time.perf_counter()
        for name in CONNECTORS:
            engine.run(registry.connector(name), "full")  # type: ignore[arg-type]
        return time.perf_counter() - started
    finally:
        store.close()
        stop_embedded(work / "graph")


def erase_time(work: Path, ontology: Ontology, history_rows: int) -> tuple[float, int]:
    """Seconds to erase one employee with `history_rows` history rows; and the history entries it blanked."""
    work.mkdir(parents=True)
    state = f"sqlite:///{work / 'state.db'}"
    seal = _seal(work, ontology)
    store = GraphStore.open(f"falkordb+embedded://{work / 'graph'}", ontology, fsync="no", history_url=state, seal=seal)
    try:
        uid = "hr:employee:E1"
        base = {"employeeId": "E1", "name": "Ann Archer", "email": "ann@acme.test", "birthDate": "1980-02-29"}
        for i in range(history_rows):
            store.upsert_twins([Twin(uid, "Employee", {**base, "phone": f"+44 20 7946 {i:04d}"})], actor="bench")
        policy = load_policy(ontology, None, b"d" * 32)
        started = time.perf_counter()
        report = erase_personal_data(
            uid,
            store=store,
            lineage=LineageStore(state, b"d" * 32, seal),
            audit=AuditLog(state),
            policy=policy,
            subject=Subject("dpo", frozenset({"compliance"})),
            keys=seal.ring,
        )
        return time.perf_counter() - started, report.history_entries
    finally:
        store.close()
        stop_embedded(work / "graph")


def main() -> None:
    """Run both figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="source rows of the sample enterprise (about)")
    parser.add_argument("--rounds", type=int, default=2, help="full syncs of each kind, alternated")
    parser.add_argument("--history-rows", type=int, default=1_000, help="history rows of the erased subject")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="twin-privacy-bench-"))
    try:
        ontology = load_core()
        people = max(40, round(args.rows / ROWS_PER_PERSON))
        manifest = generate_sample(work / "sample", people, seed=7)
        times: dict[bool, list[float]] = {False: [], True: []}
        for round_no in range(args.rounds):
            for sealed in (False, True) if round_no % 2 == 0 else (True, False):
                kind = "sealed" if sealed else "plain"
                times[sealed].append(full_sync(work / "sample", work / f"{kind}-{round_no}", ontology, sealed))
        plain, sealed_best = min(times[False]), min(times[True])
        emit(
            "sync_encryption_overhead",
            value=round(sealed_best / plain, 3),
            goal=1.15,
            rows=manifest.total_rows,
            plain_seconds=[round(t, 2) for t in times[False]],
            sealed_seconds=[round(t, 2) for t in times[True]],
        )
        seconds, entries = erase_time(work / "erase", ontology, args.history_rows)
        emit("erase_seconds", value=round(seconds, 3), goal=0.5, history_rows=args.history_rows, blanked=entries)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
