"""Issue 22 items 2 and 3: the audit log stores exactly what it hashed whatever the text holds (lone surrogates,
NUL, backslashes), in an escaped form that round-trips; verification names every broken place, not only the first."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from api.http.audit_hook import AuditTrail
from governance.audit import AuditEvent, AuditLog, Decision, TamperKind, original_text
from governance.errors import AuditError
from governance.identity import Subject

AWKWARD = ["x\ud800y", "x\x00y", "back\\slash", "\\u0000", "\udfff\x00\\", "plain é ✓", "\x01\x1f\x7f"]


def test_awkward_text_is_stored_as_hashed_and_round_trips(store_url: str) -> None:
    log = AuditLog(store_url)
    events = [
        AuditEvent(
            subject=f"s{word}",
            operation=f"graphql.query:{word}",
            decision=Decision.ALLOW,
            roles=(word,),
            variables={"v": word, word: 1},
            policy_version=f"p{word}",
            detail=word,
        )
        for word in AWKWARD
    ]
    stored = log.append_many(events)
    assert log.verify().ok
    read_back = log.query(limit=100)
    assert [r.hash for r in read_back] == [r.hash for r in stored]
    for word, record in zip(AWKWARD, read_back, strict=True):
        assert original_text(record.operation) == f"graphql.query:{word}"
        assert original_text(record.subject) == f"s{word}"
        assert original_text(record.detail) == word
        assert original_text(record.policy_version) == f"p{word}"
    # distinct texts stay distinct (the escape is one-to-one): a literal "\u0000" is not the NUL character
    assert len({r.operation for r in read_back}) == len(AWKWARD)
    # the stored text is plain UTF-8 without NUL, so every database and an export keep it byte for byte
    for record in read_back:
        record.operation.encode("utf-8")
        assert "\x00" not in record.operation + record.subject + record.detail


def test_query_by_subject_finds_awkward_subjects(sqlite_url: str) -> None:
    log = AuditLog(sqlite_url)
    log.append(AuditEvent(subject="a\ud800\\b", operation="op", decision=Decision.ALLOW))
    log.append(AuditEvent(subject="other", operation="op", decision=Decision.ALLOW))
    assert [original_text(r.subject) for r in log.query(subject="a\ud800\\b")] == ["a\ud800\\b"]


def test_a_record_with_bad_bytes_does_not_take_its_batch_down(sqlite_url: str) -> None:
    """The writer batches queued events; one holding a lone surrogate used to make the whole batch fail."""
    log = AuditLog(sqlite_url)
    log.append(AuditEvent(subject="setup", operation="op", decision=Decision.ALLOW))
    trail = AuditTrail(log, retries=2)
    blocker = log.engine.raw_connection()
    try:
        blocker.driver_connection.isolation_level = None
        blocker.driver_connection.execute("BEGIN IMMEDIATE")  # the writer's first append waits: the rest queue up
        trail.record(
            Subject("alice", frozenset({"viewer"})), "query first", decision=Decision.ALLOW, policy_version="v1"
        )
        trail.record(
            Subject("mallory", frozenset({"viewer"})),
            "query evil",
            decision=Decision.ALLOW,
            policy_version="v1",
            variables={"u": "\ud800"},
        )
        trail.record(Subject("bob", frozenset({"viewer"})), "query after", decision=Decision.ALLOW, policy_version="v1")
        blocker.driver_connection.execute("ROLLBACK")
    finally:
        blocker.close()
    trail.flush()
    trail.close()
    assert [original_text(r.subject) for r in log.query()] == ["setup", "alice", "mallory", "bob"]
    assert trail.failed == 0
    assert log.verify().ok


def test_an_event_that_cannot_be_recorded_is_refused_when_queued(sqlite_url: str) -> None:
    """Fail closed: the trail checks an event before the request is served, not later in the writer thread."""
    trail = AuditTrail(AuditLog(sqlite_url))
    with pytest.raises(AuditError, match="decision"):
        trail.record(None, "query x", decision="maybe", policy_version="v1")  # type: ignore[arg-type]
    trail.close()


def test_verify_reports_every_broken_place(sqlite_url: str) -> None:
    log = AuditLog(sqlite_url)
    log.append_many([AuditEvent(subject=f"u{i}", operation="op", decision=Decision.ALLOW) for i in range(10)])
    with log.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET subject = 'forged' WHERE seq IN (2, 7)"))
    result = log.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.tampering) == (2, TamperKind.ALTERED)
    assert [(p.seq, p.kind) for p in result.problems] == [(2, TamperKind.ALTERED), (7, TamperKind.ALTERED)]
    assert "record 7" in result.message


def test_cli_verify_names_every_broken_place(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'twin.db'}"
    log = AuditLog(url)
    log.append_many([AuditEvent(subject=f"u{i}", operation="op", decision=Decision.ALLOW) for i in range(6)])
    with log.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = 'x' WHERE seq IN (1, 5)"))
    env = {
        **os.environ,
        "TWIN_DATA_DIR": str(tmp_path),
        "TWIN_DATABASE_URL": url,
        "TWIN_GRAPH_URL": "falkordb://127.0.0.1:1",
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "twin"), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 1
    assert "record 1" in done.stdout and "record 5" in done.stdout, done.stdout + done.stderr
