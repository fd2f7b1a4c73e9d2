"""Right to erasure: personal data leaves the graph, history and lineage; digests and the audit chain stay."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from governance.audit import AuditLog
from governance.erasure import erase_personal_data
from governance.errors import PolicyDenied
from governance.identity import Subject
from governance.lineage import LineageStore, ProvenanceRecord
from governance.policy import load_policy
from graph.errors import TwinNotFound
from graph.model import Twin
from graph.store import GraphStore
from ontology.core import load_core

ADMIN = Subject("dpo", frozenset({"compliance"}))


@pytest.fixture
def twin_env(tmp_path: Path) -> Iterator[tuple[GraphStore, LineageStore, AuditLog, str]]:
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    store = GraphStore.open(f"falkordb+embedded://{tmp_path / 'graph'}", load_core(), history_url=db)
    lineage = LineageStore(db)
    audit = AuditLog(db)
    run = lineage.start_run("connector", "hr")
    store.upsert_twins(
        [
            Twin(
                "e-ann",
                "Employee",
                {
                    "name": "Ann Archer",
                    "employeeId": "E1",
                    "email": "ann@acme.test",
                    "phone": "+44 1",
                    "jobTitle": "Welder",
                },
            )
        ],
        run_id=run.run_id,
    )
    lineage.record(
        [
            ProvenanceRecord.of(
                "e-ann",
                "email",
                "ann@acme.test",
                source_system="hr",
                source_object="employees",
                record_key="E1",
                run_id=run.run_id,
                source_field="work_email",
            ),
            ProvenanceRecord.of(
                "e-ann",
                "jobTitle",
                "Welder",
                source_system="hr",
                source_object="employees",
                record_key="E1",
                run_id=run.run_id,
                source_field="title",
            ),
        ]
    )
    lineage.finish_run(run.run_id)
    yield store, lineage, audit, db
    store.close()


def test_erasure_removes_personal_data_everywhere_and_keeps_the_chain(twin_env) -> None:  # type: ignore[no-untyped-def]
    store, lineage, audit, _ = twin_env
    report = erase_personal_data(
        "e-ann", store=store, lineage=lineage, audit=audit, policy=load_policy(), subject=ADMIN
    )
    assert report.fields == ("email", "phone")
    ann = store.get("e-ann")
    assert ann is not None
    assert "email" not in ann.properties and "phone" not in ann.properties
    assert ann.properties["jobTitle"] == "Welder" and ann.properties["name"] == "Ann Archer"
    history_text = json.dumps([(e.before, e.after) for e in store.history_of("e-ann")])
    assert "ann@acme.test" not in history_text and "+44 1" not in history_text
    records = lineage.where_from("e-ann")
    assert records and all(r.value is None for r in records if r.erased)
    email = next(r for r in records if r.property == "email")
    assert email.matches("ann@acme.test")  # the digest still proves what the value was
    verification = audit.verify()
    assert verification.ok
    assert [r.operation for r in audit.query(operation="erase")] == ["erase"]


def test_erasure_reaches_personal_values_the_twin_no_longer_holds(twin_env) -> None:  # type: ignore[no-untyped-def]
    store, lineage, audit, _ = twin_env
    store.upsert_twins([Twin("e-ann", "Employee", {"phone": None})])  # cleared before the erasure request
    report = erase_personal_data(
        "e-ann", store=store, lineage=lineage, audit=audit, policy=load_policy(), subject=ADMIN
    )
    assert report.fields == ("email",)
    history_text = json.dumps([(e.before, e.after) for e in store.history_of("e-ann")])
    assert "+44 1" not in history_text and "ann@acme.test" not in history_text


def test_erasure_needs_the_permission_and_a_real_twin(twin_env) -> None:  # type: ignore[no-untyped-def]
    store, lineage, audit, _ = twin_env
    with pytest.raises(PolicyDenied):
        erase_personal_data(
            "e-ann",
            store=store,
            lineage=lineage,
            audit=audit,
            policy=load_policy(),
            subject=Subject("arch", frozenset({"architect"})),
        )
    assert store.get("e-ann").properties["email"] == "ann@acme.test"  # type: ignore[union-attr]
    with pytest.raises(TwinNotFound, match="nobody"):
        erase_personal_data("nobody", store=store, lineage=lineage, audit=audit, policy=load_policy(), subject=ADMIN)


def test_cli_token_audit_and_erase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.cli.app import app
    from api.settings import get_settings

    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        token = runner.invoke(app, ["token", "--role", "architect", "--sub", "alice"])
        assert token.exit_code == 0, token.output
        assert token.output.count(".") == 2  # a compact JWS
        bad = runner.invoke(app, ["token", "--role", "pilot"])
        assert bad.exit_code == 1 and "pilot" in bad.output
        verify = runner.invoke(app, ["audit", "verify", "--json"])
        assert verify.exit_code == 0 and json.loads(verify.output)["ok"] is True
        missing = runner.invoke(app, ["erase", "nobody"])
        assert missing.exit_code == 1 and "nobody" in missing.output
    finally:
        get_settings.cache_clear()
