"""The API's audit trail: events reach the chained log in order; events the log cannot take are counted, logged and
exported as a metric (an alert can fire), never silently dropped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.http.audit_hook import AuditTrail
from api.http.metrics import ApiMetrics
from governance.audit import AuditLog, Decision
from graph.relational import relational_engine


def test_lost_audit_events_are_counted_logged_and_exported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log = AuditLog(url)
    trail = AuditTrail(log, retries=2)
    metrics = ApiMetrics()
    metrics.watch_audit(lambda: trail.failed)
    try:
        for n in range(3):
            trail.record(None, f"query {n}", decision=Decision.ALLOW, policy_version="v1")
        trail.flush()
        assert [r.operation for r in log.query()] == ["query 0", "query 1", "query 2"]
        assert "twin_audit_events_lost 0.0" in metrics.exposition().decode()

        with relational_engine(url).begin() as conn:  # the store loses its table under the running trail
            conn.exec_driver_sql("DROP TABLE audit_log")
        with caplog.at_level(logging.ERROR, logger="api.http.audit_hook"):
            trail.record(None, "query lost", decision=Decision.DENY, policy_version="v1")
            trail.flush()
        assert trail.failed == 1
        assert "twin_audit_events_lost 1.0" in metrics.exposition().decode()
        assert "could not append 1 audit record(s)" in caplog.text
    finally:
        trail.close()
