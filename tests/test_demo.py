"""The main job: `twin demo --no-serve` builds a living twin, re-runs without duplicating, and its example queries
answer through the real API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from governance.audit import AuditLog


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "twin"))
    get_settings.cache_clear()
    yield tmp_path / "twin"
    get_settings.cache_clear()


def _demo() -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, ["demo", "--no-serve", "--size", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_demo_builds_the_twin_and_a_rerun_duplicates_nothing(data_dir: Path) -> None:
    first = _demo()
    after_first = json.loads(CliRunner().invoke(app, ["graph", "stats", "--json"]).output)
    assert first["sample"]["generated"] is True
    assert set(first["syncs"]) == {"sample-hr", "sample-crm", "sample-erp"}
    assert all(
        s["status"] == "completed" and s["created"] > 0 and s["quarantined"] == 0 for s in first["syncs"].values()
    )
    assert first["roles"] == sorted(
        ["admin", "architect", "executive", "analyst", "compliance", "hr", "data_steward", "viewer"]
    )
    second = _demo()
    assert second["sample"]["generated"] is False
    assert all(s["created"] == 0 and s["updated"] == 0 for s in second["syncs"].values())
    after_second = json.loads(CliRunner().invoke(app, ["graph", "stats", "--json"]).output)
    assert after_second == after_first  # same twins and links, per class and type
    assert after_first["by_class"]["Employee"] == 50
    connect = CliRunner().invoke(app, ["connect", "run", "sample-hr", "--json"])
    assert connect.exit_code == 0, connect.output
    run_id = json.loads(connect.output.strip().splitlines()[-1])["run_id"]
    runs = AuditLog(f"sqlite:///{data_dir / 'twin.db'}").query(operation="connector.run", limit=100)
    assert len(runs) == 7  # three connectors per demo, then `twin connect run`
    assert runs[-1].subject.startswith("cli:") and json.loads(runs[-1].detail)["run_id"] == run_id
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0


def test_the_printed_example_queries_answer_through_the_api(data_dir: Path) -> None:
    from api.http.app import create_app
    from api.runtime import Runtime
    from governance.tokens import issue_token

    summary = _demo()
    examples = summary["examples"]
    runtime = Runtime()
    try:
        with TestClient(create_app(runtime)) as client:

            def ask(role: str, query: str) -> dict:  # type: ignore[type-arg]
                token = issue_token(data_dir, role, sub=f"test-{role}")
                response = client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 200, response.text
                return response.json()

            impact = ask(
                "architect",
                '{ impact(uid: "%s", maxDepth: 3) { depth twin { uid __typename } } }' % examples["supplier"],
            )
            hits = impact["data"]["impact"]
            assert hits and {h["twin"]["__typename"] for h in hits} >= {"Material", "Product"}
            lineage = ask(
                "compliance",
                '{ lineage(uid: "%s", property: "email") { sourceSystem sourceField value } }' % examples["employee"],
            )
            record = lineage["data"]["lineage"][0]
            assert record["sourceSystem"] == "hr" and record["sourceField"] == "work_email"
            assert record["value"].startswith("sha256:")  # compliance sees personal values only as hashes
    finally:
        runtime.close()


def test_the_served_demo_moves_its_sample_and_syncs_it_often(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from api.cli.demo_run import living_sample
    from api.runtime import Runtime
    from connectors.sample.demo import SAMPLE_CONNECTORS

    _demo()
    monkeypatch.setenv("TWIN_DEMO_ACTIVITY_SECONDS", "0.2")
    monkeypatch.setenv("TWIN_DEMO_SYNC_SECONDS", "2")
    get_settings.cache_clear()
    runtime = Runtime()
    try:
        with sqlite3.connect(data_dir / "sample" / "erp.sqlite") as con:
            (orders,) = con.execute("SELECT COUNT(*) FROM sales_orders").fetchone()
        activity = living_sample(runtime)
        try:
            deadline = time.monotonic() + 20
            while len(activity.changes) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            activity.stop()
        assert [c.kind for c in activity.changes[:3]] == ["sales order", "hire", "purchase order"]
        with sqlite3.connect(data_dir / "sample" / "erp.sqlite") as con:
            assert con.execute("SELECT COUNT(*) FROM sales_orders").fetchone()[0] == orders + 1
        live = runtime.sync_runtime()
        assert {name: live.schedules[name].describe() for name in SAMPLE_CONNECTORS} == dict.fromkeys(
            SAMPLE_CONNECTORS, "every 2 s"
        )
    finally:
        runtime.close()
