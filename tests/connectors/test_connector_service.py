"""The connector-run service: the one way edges run a connector, with the policy decision and the audit inside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.service import run_connector
from connectors.source import SourceError
from connectors.sql_source import SqlSource
from connectors.sync import Connector
from governance.audit import AuditLog
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.policy import load_policy
from ontology.model import Ontology
from tests.connectors.test_sync_engine import plant, plant_connector
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

STEWARD = Subject(sub="stella", roles=frozenset({"data_steward"}))


def test_completed_failed_and_refused_runs_are_each_audited(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    url = plant(tmp_path, [("M1", "Press", "1", "down", None)])
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    policy = load_policy(core)
    engine = twin.engine()
    report = run_connector(engine, plant_connector(core, url), subject=STEWARD, policy=policy, audit=audit, mode="full")
    broken = Connector(
        "plant",
        plant_connector(core, url).mapping,
        lambda e: SqlSource(url, table="no_such_table", key="id", name=e.name),
    )
    with pytest.raises(SourceError):
        run_connector(engine, broken, subject=STEWARD, policy=policy, audit=audit)
    with pytest.raises(PolicyDenied, match="vic may not run connectors"):
        run_connector(
            engine,
            plant_connector(core, url),
            subject=Subject(sub="vic", roles=frozenset({"viewer"})),
            policy=policy,
            audit=audit,
        )
    done, failed, refused = audit.query(operation="connector.run", limit=10)
    assert (done.subject, list(done.roles), str(done.decision)) == ("stella", ["data_steward"], "allow")
    assert done.rows_returned == report.counts["read"] == 1
    assert json.loads(done.detail) == {"status": "completed", "run_id": report.run_id, "counts": report.counts}
    assert json.loads(failed.detail)["status"] == "failed" and "no_such_table" in json.loads(failed.detail)["error"]
    assert (refused.subject, str(refused.decision)) == ("vic", "deny")
    assert audit.verify().ok
