"""The lineage answers of the tiny sample enterprise (issue 25), normalised so that two codes or two stores compare
field by field: synced with a fixed digest key and sealed personal values (a full run, 5 % of rows changed, an
incremental run), then one employee erased and another crypto-shredded. Runs are named by connector and order,
recording times and row ids are left out (they differ between any two syncs); everything else each answer holds is in.

    python -m tests.governance.lineage_answers OUT.json.gz   # writes the answers of the code it runs on

`tests/governance/data/lineage_answers_tiny.json.gz` holds the answers of the code before lineage was stored per source
record (commit 8cd73f2), written this way; tests/governance/test_lineage_record.py compares today's with them.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connectors.registry import ConnectorRegistry
from connectors.sample.enterprise import generate_sample, mutate_sample
from connectors.sync import SyncEngine
from governance.lineage import LineageStore, ProvenanceRecord
from governance.master_key import FileMasterKey
from governance.personal_seal import PersonalSeal, personal_properties
from governance.subject_keys import SubjectKeyRing
from graph.embedded import stop_embedded
from graph.store import GraphStore
from ontology.core import load_core

CONNECTORS = ("sample-erp", "sample-hr", "sample-crm")
DIGEST_KEY = b"d" * 32
FIELDS = (
    "twin_uid",
    "property",
    "value",
    "has_value",
    "value_digest",
    "source_system",
    "source_object",
    "record_key",
    "source_field",
    "mapping_rule",
    "transform",
    "erased",
)


def open_seal(work: Path) -> PersonalSeal:
    """The key ring and seal of a sample twin in `work`."""
    ring = SubjectKeyRing(f"sqlite:///{work / 'keys.db'}", FileMasterKey(work / "master.key"))
    return PersonalSeal(ring, personal_properties(load_core()), b"k" * 32)


def sync_sample(work: Path, state_url: str) -> None:
    """Generate the tiny sample enterprise in `work` and sync it into a fresh twin there, lineage into `state_url`:
    a full run of every connector, then 5 % of the rows changed and an incremental run."""
    ontology = load_core()
    generate_sample(work / "sample", "tiny", seed=7)
    store = GraphStore.open(f"falkordb+embedded://{work / 'graph'}", ontology, fsync="no")
    try:
        engine = SyncEngine(store, state_url, lineage=LineageStore(state_url, DIGEST_KEY, open_seal(work)))
        registry = ConnectorRegistry.load(ontology, data_dir=work)
        for name in CONNECTORS:
            engine.run(registry.connector(name), "full")  # type: ignore[arg-type]
        mutate_sample(work / "sample", fraction=0.05, seed=3)
        for name in CONNECTORS:
            engine.run(registry.connector(name), "incremental")  # type: ignore[arg-type]
    finally:
        store.close()
        stop_embedded(work / "graph")


def _value(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _plain(records: Iterable[ProvenanceRecord], runs: dict[str, str]) -> list[dict[str, Any]]:
    """Records as plain dicts of every field but the recording time and row id (the run by its name)."""
    plain = []
    for record in records:
        row = {name: getattr(record, name) for name in FIELDS}
        row["value"] = _value(row["value"])
        row["run"] = runs[record.run_id]
        plain.append(row)
    return plain


def run_names(lineage: LineageStore) -> dict[str, str]:
    """Each run's id -> its connector's name and its place among that connector's runs (`sample-hr#1`)."""
    runs: dict[str, str] = {}
    for run in sorted(lineage.runs(limit=1_000), key=lambda run: run.started_at):
        runs[run.run_id] = f"{run.name}#{sum(1 for name in runs.values() if name.startswith(run.name + '#'))}"
    return runs


def plain_value(value: Any) -> Any:
    """A value as the answers hold it (JSON)."""
    return _value(value)


def answers(lineage: LineageStore) -> dict[str, Any]:
    """Every answer the lineage store gives about the synced sample, normalised; erases one employee's lineage values
    and destroys another's key (the seal's ring), then answers for both again."""
    ordered = sorted(lineage.runs(limit=1_000), key=lambda run: run.started_at)
    runs = run_names(lineage)
    of_run = {runs[run.run_id]: lineage.records_of_run(run.run_id) for run in ordered}
    uids = sorted({r.twin_uid for records in of_run.values() for r in records})
    result: dict[str, Any] = {
        "runs": [runs[run.run_id] for run in ordered],
        "records_of_run": {name: _plain(records, runs) for name, records in of_run.items()},
        "records_of_run_first_5": {name: _plain(lineage.records_of_run(r, limit=5), runs) for r, name in runs.items()},
        "where_from": {uid: _plain(lineage.where_from(uid), runs) for uid in uids},
    }
    by_property: dict[str, Any] = {}
    for uid in uids[::7]:
        for prop in sorted({r.property for r in lineage.where_from(uid)}):
            by_property[f"{uid} {prop}"] = _plain(lineage.where_from(uid, prop), runs)
            by_property[f"{uid} {prop} first"] = _plain(lineage.where_from(uid, prop, limit=1), runs)
    result["where_from_property"] = by_property
    result["where_from_first_3"] = {uid: _plain(lineage.where_from(uid, limit=3), runs) for uid in uids[::5]}
    sources = sorted({(r.source_system, r.source_object, r.record_key) for rs in of_run.values() for r in rs})
    result["fed_by"] = {
        f"{system} {obj} {key}": [
            [list(p) for p in lineage.fed_by(system, key)],
            [list(p) for p in lineage.fed_by(system, key, source_object=obj)],
        ]
        for system, obj, key in sources[::3]
    }
    employees = [uid for uid in uids if uid.startswith("hr:employee:")]
    erased, shredded = employees[0], employees[1]
    result["erased_count"] = lineage.erase_values(erased)
    result["erased_again_count"] = lineage.erase_values(erased)
    assert lineage.seal is not None
    lineage.seal.ring.destroy(shredded)
    result["after_erasure"] = {uid: _plain(lineage.where_from(uid), runs) for uid in (erased, shredded)}
    result["matches_after_erasure"] = [
        lineage.matches(r, value)
        for r, value in zip(
            lineage.where_from(erased),
            [r["value"] for r in result["where_from"][erased]],
            strict=True,
        )
    ]
    return result


def sample_answers(work: Path) -> dict[str, Any]:
    """Sync the tiny sample into `work` and return its lineage answers."""
    state_url = f"sqlite:///{work / 'state.db'}"
    sync_sample(work, state_url)
    return answers(LineageStore(state_url, DIGEST_KEY, open_seal(work)))


def main() -> None:
    """Write the answers of this code to the file named on the command line."""
    out = Path(sys.argv[1])
    work = Path(tempfile.mkdtemp(prefix="twin-lineage-answers-"))
    try:
        result = sample_answers(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with gzip.open(out, "wt", encoding="utf-8") as file:
        json.dump(result, file, sort_keys=True, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    main()
