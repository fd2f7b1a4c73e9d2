"""The audit log: chained appends, queries, concurrent writers, tamper detection and signed checkpoints."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from governance.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditLog,
    Checkpoint,
    Decision,
    TamperKind,
    _record_hash,
    load_checkpoints,
)
from governance.canonical import sha256_digest
from governance.errors import AuditError, AuditTamperDetected
from governance.identity import Subject
from governance.key_files import ed25519_signing_key

REPO = Path(__file__).resolve().parents[2]


def _event(i: int, **overrides: object) -> AuditEvent:
    fields: dict[str, object] = {
        "subject": f"user-{i % 3}",
        "operation": "query employees" if i % 2 else "mutation syncRun",
        "decision": Decision.ALLOW if i % 4 else Decision.DENY,
        "roles": ("hr",),
        "variables": {"i": i},
        "policy_version": "v1",
        "rows_returned": i,
    }
    fields.update(overrides)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def _filled(url: str, count: int = 10) -> AuditLog:
    log = AuditLog(url)
    log.append_many([_event(i) for i in range(1, count + 1)])
    return log


def _sql(log: AuditLog, *statements: str, **params: object) -> None:
    with log.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def _row(log: AuditLog, seq: int) -> dict[str, object]:
    with log.engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_log WHERE seq = :s"), {"s": seq}).mappings().one())


def _shift(log: AuditLog, from_seq: int, by: int) -> None:
    """Renumber records >= from_seq by `by` in two steps, so the primary key never collides mid-update."""
    _sql(log, "UPDATE audit_log SET seq = -seq WHERE seq >= :f", f=from_seq)
    _sql(log, "UPDATE audit_log SET seq = -seq + :by WHERE seq < 0", by=by)


def _expect(log: AuditLog, kind: TamperKind, seq: int, **verify_args: object) -> str:
    result = log.verify(**verify_args)  # type: ignore[arg-type]
    assert not result.ok
    assert (result.tampering, result.first_bad_seq) == (kind, seq), result.message
    with pytest.raises(AuditTamperDetected) as caught:
        result.raise_if_tampered()
    assert caught.value.seq == seq and caught.value.kind == kind.value
    return result.message


def test_append_chains_records_and_digests_variables(sqlite_url: str) -> None:
    log = AuditLog(sqlite_url)
    first = log.append(
        AuditEvent(
            "alice",
            "query employees",
            "allow",
            roles=["hr", "viewer", "hr"],
            variables={"salaryAbove": 90000, "name": "Zoë"},
            rows_returned=4,
        )
    )
    second = log.append(AuditEvent("bob", "mutation erase", Decision.DENY, detail="not permitted"))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert first.roles == ("hr", "viewer")
    assert first.variables_digest == sha256_digest({"name": "Zoë", "salaryAbove": 90000})
    assert second.variables_digest == sha256_digest({})
    assert log.head() == (2, second.hash)
    raw = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    assert b"90000" not in raw and "Zoë".encode() not in raw, "raw variables must never be stored"
    assert log.verify().ok


def test_event_for_subject_records_subject_and_roles(sqlite_url: str) -> None:
    subject = Subject(sub="carol", roles=frozenset({"compliance"}), org_unit="hq")
    record = AuditLog(sqlite_url).append(AuditEvent.for_subject(subject, "query auditLog", "allow"))
    assert (record.subject, record.roles, record.decision) == ("carol", ("compliance",), Decision.ALLOW)


def test_bad_events_are_refused(sqlite_url: str) -> None:
    log = AuditLog(sqlite_url)
    with pytest.raises(AuditError, match="maybe"):
        log.append(AuditEvent("alice", "query", "maybe"))
    with pytest.raises(AuditError, match="subject and an operation"):
        log.append(AuditEvent("", "query", "allow"))
    assert log.head() == (0, GENESIS_HASH), "a refused event must not advance the chain"


def test_query_filters(sqlite_url: str) -> None:
    log = AuditLog(sqlite_url)
    base = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    log.append_many([_event(i, time=base + timedelta(minutes=i)) for i in range(1, 21)])
    assert [r.seq for r in log.query(subject="user-1")] == [1, 4, 7, 10, 13, 16, 19]
    assert all(r.operation == "query employees" for r in log.query(operation="query employees"))
    assert [r.seq for r in log.query(decision="deny")] == [4, 8, 12, 16, 20]
    window = log.query(since=base + timedelta(minutes=5), until=base + timedelta(minutes=8))
    assert [r.seq for r in window] == [5, 6, 7]
    assert [r.seq for r in log.query(limit=3, offset=2)] == [3, 4, 5]
    assert [r.seq for r in log.query(limit=2, newest_first=True)] == [20, 19]
    assert log.query(subject="user-1", decision="deny")[0].seq == 4


def test_export_jsonl_reproduces_the_chain(sqlite_url: str, tmp_path: Path) -> None:
    log = _filled(sqlite_url, 25)
    target = tmp_path / "out" / "audit.jsonl"
    assert log.export(target) == 25
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 26))
    previous = GENESIS_HASH
    for line in lines:
        stored = {**line, "roles": json.dumps(line["roles"], separators=(",", ":"))}
        assert line["prev_hash"] == previous and _record_hash(stored) == line["hash"]
        previous = line["hash"]
    with pytest.raises(AuditError, match="xml"):
        log.export(tmp_path / "x", format="xml")


def test_empty_log_verifies(store_url: str) -> None:
    result = AuditLog(store_url).verify()
    assert result.ok and result.records_checked == 0 and result.head_hash == GENESIS_HASH


def test_clean_log_verifies(store_url: str) -> None:
    result = _filled(store_url, 30).verify()
    assert result.ok and result.records_checked == 30 and result.head_seq == 30


def test_edited_record_is_named(store_url: str) -> None:
    log = _filled(store_url)
    _sql(log, "UPDATE audit_log SET decision = 'allow', rows_returned = 9999 WHERE seq = 4")
    assert "altered" in _expect(log, TamperKind.ALTERED, 4)


def test_edited_and_rehashed_record_is_named(store_url: str) -> None:
    log = _filled(store_url)
    row = _row(log, 6)
    row["subject"] = "mallory"
    _sql(log, "UPDATE audit_log SET subject = 'mallory', hash = :h WHERE seq = 6", h=_record_hash(row))
    assert "hash recomputed" in _expect(log, TamperKind.ALTERED, 6)


def test_deleted_record_is_named(store_url: str) -> None:
    log = _filled(store_url)
    _sql(log, "DELETE FROM audit_log WHERE seq = 5")
    assert "5" in _expect(log, TamperKind.DELETED, 5)


def test_deleted_first_record_is_named(store_url: str) -> None:
    log = _filled(store_url)
    _sql(log, "DELETE FROM audit_log WHERE seq = 1")
    _expect(log, TamperKind.DELETED, 1)


def test_deleted_and_renumbered_records_are_named(store_url: str) -> None:
    log = _filled(store_url)
    _sql(log, "DELETE FROM audit_log WHERE seq IN (5, 6)")
    _shift(log, 7, -2)
    _expect(log, TamperKind.DELETED, 5)


def test_inserted_forged_record_is_named(store_url: str) -> None:
    log = _filled(store_url)
    _shift(log, 5, 1)
    forged = {**_row(log, 4), "seq": 5, "subject": "mallory", "detail": "forged", "prev_hash": _row(log, 4)["hash"]}
    forged["hash"] = _record_hash(forged)
    _sql(
        log,
        "INSERT INTO audit_log (seq, time, subject, roles, operation, variables_digest, decision, "
        "policy_version, rows_returned, detail, prev_hash, hash) VALUES (:seq, :time, :subject, :roles, "
        ":operation, :variables_digest, :decision, :policy_version, :rows_returned, :detail, :prev_hash, "
        ":hash)",
        **forged,
    )
    assert "inserted" in _expect(log, TamperKind.INSERTED, 5)


def test_inserted_garbage_record_is_named(store_url: str) -> None:
    log = _filled(store_url)
    _shift(log, 3, 1)
    _sql(
        log,
        "INSERT INTO audit_log (seq, time, subject, roles, operation, variables_digest, decision, "
        "policy_version, rows_returned, detail, prev_hash, hash) VALUES (3, '2025-01-01T00:00:00.000000Z', "
        "'mallory', '[]', 'query', :z, 'allow', 'v1', 0, '', :z, :z)",
        z="f" * 64,
    )
    _expect(log, TamperKind.INSERTED, 3)


def test_reordered_records_are_named(store_url: str) -> None:
    log = _filled(store_url)
    _sql(
        log,
        "UPDATE audit_log SET seq = -1 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = 8",
        "UPDATE audit_log SET seq = 8 WHERE seq = -1",
    )
    assert "reordered" in _expect(log, TamperKind.REORDERED, 7)


def test_truncated_tail_is_named_by_the_head_row(store_url: str) -> None:
    log = _filled(store_url)
    _sql(log, "DELETE FROM audit_log WHERE seq > 7")
    _expect(log, TamperKind.TRUNCATED, 8)


def test_appended_past_head_is_named(store_url: str) -> None:
    log = _filled(store_url, 5)
    last = _row(log, 5)
    forged = {**last, "seq": 6, "detail": "sneaked in", "prev_hash": last["hash"]}
    forged["hash"] = _record_hash(forged)
    _sql(
        log,
        "INSERT INTO audit_log (seq, time, subject, roles, operation, variables_digest, decision, "
        "policy_version, rows_returned, detail, prev_hash, hash) VALUES (:seq, :time, :subject, :roles, "
        ":operation, :variables_digest, :decision, :policy_version, :rows_returned, :detail, :prev_hash, "
        ":hash)",
        **forged,
    )
    _expect(log, TamperKind.INSERTED, 6)


def test_checkpoint_catches_truncation_that_fixed_the_head(store_url: str, tmp_path: Path) -> None:
    log = _filled(store_url, 12)
    key = ed25519_signing_key(tmp_path / "keys" / "audit-checkpoint.pem")
    mark = log.checkpoint(key)
    assert (mark.seq, mark.head_hash) == log.head()
    off_box = tmp_path / "checkpoints.json"
    assert log.export_checkpoints(off_box) == 1
    last_kept = _row(log, 9)
    _sql(log, "DELETE FROM audit_log WHERE seq > 9", "DELETE FROM audit_checkpoint")
    _sql(log, "UPDATE audit_head SET seq = 9, hash = :h", h=last_kept["hash"])
    assert log.verify().ok, "without checkpoints a careful truncation is invisible"
    saved = load_checkpoints(off_box)
    message = _expect(log, TamperKind.TRUNCATED, 10, checkpoints=saved, trusted_key=key.public_key())
    assert "checkpoint" in message


def test_checkpoint_catches_rewritten_chain(store_url: str, tmp_path: Path) -> None:
    log = _filled(store_url, 8)
    key = Ed25519PrivateKey.generate()
    log.checkpoint(key)
    log.append_many([_event(i) for i in range(9, 13)])
    second = log.checkpoint(key)
    previous = _row(log, 9)["prev_hash"]
    for seq in range(9, 13):  # rewrite 9..12 consistently, as someone with write access and our code could
        row = {**_row(log, seq), "prev_hash": previous}
        if seq == 10:
            row["subject"] = "mallory"
        row["hash"] = _record_hash(row)
        _sql(
            log, "UPDATE audit_log SET subject = :subject, prev_hash = :prev_hash, hash = :hash WHERE seq = :seq", **row
        )
        previous = row["hash"]
    _sql(log, "UPDATE audit_head SET hash = :h", h=previous)
    assert second.seq == 12
    assert "rewritten" in _expect(log, TamperKind.REWRITTEN, 9, trusted_key=key.public_key())


def test_forged_checkpoints_are_refused(sqlite_url: str) -> None:
    log = _filled(sqlite_url, 4)
    ours, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    genuine = log.checkpoint(ours)
    assert genuine.verify_signature(ours.public_key())
    restored = Checkpoint.from_json(genuine.to_json())
    assert restored == genuine
    tampered = Checkpoint.from_json({**genuine.to_dict(), "seq": 3})
    _expect(log, TamperKind.BAD_CHECKPOINT, 3, checkpoints=[tampered])
    impostor = log.checkpoint(theirs)
    _expect(log, TamperKind.BAD_CHECKPOINT, 4, checkpoints=[impostor], trusted_key=ours.public_key())
    assert log.verify(checkpoints=[genuine], trusted_key=ours.public_key()).ok
    with pytest.raises(AuditError, match="malformed"):
        Checkpoint.from_json('{"seq": 1}')


def test_checkpoint_refuses_to_sign_a_damaged_head(sqlite_url: str) -> None:
    log = _filled(sqlite_url, 4)
    _sql(log, "DELETE FROM audit_log WHERE seq = 4")
    with pytest.raises(AuditTamperDetected, match="refusing to sign"):
        log.checkpoint(Ed25519PrivateKey.generate())


def test_checkpoint_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit.pem"
    first = ed25519_signing_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ed25519_signing_key(path).public_key() == first.public_key()


def test_concurrent_threads_keep_the_chain(store_url: str) -> None:
    log = AuditLog(store_url)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            own = AuditLog(store_url)
            for i in range(40):
                if i % 10 == 0:
                    own.append_many([_event(i, subject=f"w{worker}") for _ in range(3)])
                else:
                    own.append(_event(i, subject=f"w{worker}"))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    result = log.verify()
    assert result.ok, result.message
    assert result.records_checked == 4 * (36 + 4 * 3)


_WRITER = """
import sys
from governance.audit import AuditEvent, AuditLog
log = AuditLog(sys.argv[1])
for i in range(60):
    log.append(AuditEvent(subject="proc-" + sys.argv[2], operation="query", decision="allow", variables={"i": i}))
"""


def test_concurrent_processes_keep_the_chain(store_url: str) -> None:
    log = AuditLog(store_url)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(n)], cwd=REPO, env=env, stderr=subprocess.PIPE)
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    result = log.verify()
    assert result.ok, result.message
    assert result.records_checked == 180
    assert {r.subject for r in log.query(limit=200)} == {"proc-0", "proc-1", "proc-2"}
