"""Issue 22 item 11: `hash` masks and lineage digests are keyed with a per-deployment secret (a candidate cannot be
tried against them); erasure also blanks the sync ledger and identity match keys and compacts the graph's
append-only file; the data directory and its files are owner-only whatever the umask."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.runtime import Runtime
from api.settings import Settings
from connectors.identity import IdentityResolver, candidate
from connectors.sync_state import LedgerEntry, SyncState
from governance.canonical import sha256_digest
from governance.erasure import erase_personal_data
from governance.identity import Subject
from governance.lineage import FedValues, ProvenanceRecord
from governance.policy import mask_value
from graph.embedded import stop_embedded
from graph.model import Twin

DPO = Subject("dpo", frozenset({"compliance"}))
BIRTH = "1980-02-29"


def _settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        graph_url=f"falkordb+embedded://{data_dir / 'graph'}",
        database_url=f"sqlite:///{data_dir / 'twin.db'}",
    )


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    previous = os.umask(0o022)  # a permissive umask, as many systems have
    try:
        runtime = Runtime(settings=_settings(tmp_path / "data"))
        yield runtime
    finally:
        os.umask(previous)
    runtime.close()
    stop_embedded(tmp_path / "data" / "graph")


def test_hash_masks_are_keyed_per_deployment(runtime: Runtime, tmp_path: Path) -> None:
    unkeyed = "sha256:" + hashlib.sha256(BIRTH.encode()).hexdigest()[:12]
    masked = runtime.policy.mask_value(BIRTH, "hash")
    assert masked.startswith("sha256:") and masked != unkeyed
    assert runtime.policy.mask_value(BIRTH, "hash") == masked  # stable within a deployment
    other = Runtime(settings=_settings(tmp_path / "other"))
    assert other.policy.mask_value(BIRTH, "hash") != masked  # another deployment, another key
    assert mask_value(BIRTH, "redact") == "***"


def test_lineage_digests_are_keyed(runtime: Runtime) -> None:
    lineage = runtime.lineage
    run = lineage.start_run("connector", "hr")
    lineage.record_values(
        FedValues(run.run_id, "hr", "employees", [("e-1", "birthDate", BIRTH, "E1", "dob", "employee", None)], False)
    )
    lineage.record(
        [
            ProvenanceRecord.of(
                "e-2",
                "birthDate",
                BIRTH,
                source_system="hr",
                source_object="employees",
                record_key="E2",
                run_id=run.run_id,
                keep_value=False,
            )
        ]
    )
    for uid in ("e-1", "e-2"):  # fed values and single records alike
        record = lineage.where_from(uid)[0]
        assert record.value_digest != sha256_digest(BIRTH)
        assert lineage.matches(record, BIRTH) and not lineage.matches(record, "1980-03-01")


def test_data_directory_and_files_are_owner_only(runtime: Runtime) -> None:
    runtime.audit.append  # noqa: B018 - creates the relational store
    runtime.policy  # noqa: B018 - creates the digest key
    runtime.store  # noqa: B018 - starts the embedded graph server, which writes its files
    data_dir = runtime.settings.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    loose = [
        str(path.relative_to(data_dir))
        for path in data_dir.rglob("*")
        if not path.is_socket() and stat.S_IMODE(path.stat().st_mode) & 0o077
    ]
    assert not loose, loose
    assert (data_dir / "keys" / "digest.key").exists()


def test_erasure_blanks_ledger_identity_keys_and_compacts_the_graph_log(runtime: Runtime) -> None:
    store = runtime.store
    url = runtime.settings.resolved_database_url
    email = "ann.secret@acme.test"
    store.upsert_twins([Twin("e-ann", "Employee", {"name": "Ann Archer", "employeeId": "E1", "email": email})])
    state = SyncState(url)
    with state.engine.begin() as conn:
        state.write_ledger(
            conn,
            [
                LedgerEntry(
                    "hr",
                    "employees",
                    "E1",
                    "e-ann",
                    "d1",
                    {"u": "e-ann", "c": "Employee", "p": {"email": email, "name": "Ann"}},
                )
            ],
            "run-1",
        )
    identity = IdentityResolver(url)
    identity.resolve("person", [candidate("e-ann", "hr", email=email)])
    erase_personal_data(
        "e-ann",
        store=store,
        lineage=runtime.lineage,
        audit=runtime.audit,
        policy=runtime.policy,
        subject=DPO,
        holders=[state, identity],
    )
    ledger = state.ledger("hr", "employees", ["E1"])["E1"]
    assert ledger.payload["p"].get("email") is None and ledger.payload["p"]["name"] == "Ann"
    with identity.engine.connect() as conn:
        keys = [row[0] for row in conn.exec_driver_sql("SELECT value FROM identity_key WHERE uid = 'e-ann'")]
    assert email not in keys
    graph_files = [p for p in (runtime.settings.data_dir / "graph").rglob("*") if p.is_file()]
    assert graph_files
    assert not [p.name for p in graph_files if email.encode() in p.read_bytes()]
