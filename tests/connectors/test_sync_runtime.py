"""The runtime that syncs connectors by itself: schedules, leases across processes, back-off, audit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from api.runtime import Runtime
from api.settings import Settings
from connectors.leases import LeaseStore
from connectors.registry import ConnectorRegistry, RegistryError
from connectors.schedule import Schedule, ScheduleError, parse_schedule
from connectors.sync_runtime import FIRST_BACKOFF_SECONDS, SyncRuntime
from graph.embedded import stop_embedded
from tests.connectors.test_sync_engine import MAPPING, plant
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ schedules
def test_schedules_parse_every_form_and_refuse_bad_ones_by_connector() -> None:
    t = datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert parse_schedule("5m", "sql", "c").next_run(t) == datetime(2026, 1, 1, 0, 8, tzinfo=UTC)
    assert parse_schedule({"every": 90}, "sql", "c").seconds == 90
    assert parse_schedule({"cron": "*/15 * * * *"}, "sql", "c").next_run(t) == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    assert parse_schedule(None, "sql", "c") == Schedule("every", 30.0)
    assert parse_schedule(None, "mqtt", "c").kind == "continuous"
    assert parse_schedule(False, "sql", "c").next_run(t) is None  # YAML reads `off` as false
    for bad, problem in (
        ("0.2s", "shorter than 1 s"),
        ("soon", "not an interval"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"every": 5, "cron": "* * * * *"}, "one key"),
        (True, "must be an interval"),
    ):
        with pytest.raises(ScheduleError, match=problem) as refused:
            parse_schedule(bad, "sql", "connectors.yaml: connector 'plant'")
        assert "connector 'plant'" in str(refused.value)


def test_a_bad_schedule_in_connectors_yaml_names_file_and_connector(tmp_path: Path) -> None:
    from ontology.core import load_core

    (tmp_path / "plant.yaml").write_text(MAPPING)
    (tmp_path / "connectors.yaml").write_text(
        "connectors:\n  plant:\n    mapping: plant.yaml\n    schedule: every now and then\n"
        "    source: {kind: sql, url: 'sqlite:///x.db'}\n"
    )
    with pytest.raises(RegistryError, match=r"connectors.yaml: connector 'plant': schedule 'every now and then'"):
        ConnectorRegistry.load(load_core(), data_dir=tmp_path)


# --------------------------------------------------------------------------------------------------- leases
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_lease_has_one_holder_until_it_expires_or_is_released(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'leases.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    leases = LeaseStore(url)
    assert leases.acquire("hr", "a", 10, now=100.0)
    assert not leases.acquire("hr", "b", 10, now=105.0)  # a holds it
    assert leases.acquire("hr", "a", 10, now=108.0)  # a renews: now until 118
    assert not leases.acquire("hr", "b", 10, now=115.0)
    assert leases.acquire("hr", "b", 10, now=118.5)  # expired: b takes it over
    assert not leases.release("hr", "a") and [(lease.holder, lease.acquired_at) for lease in leases.leases()] == [
        ("b", 118.5)
    ]
    assert leases.release("hr", "b") and leases.acquire("hr", "a", 10, now=119.0)


# ---------------------------------------------------------------------------------------------- the runtime
@pytest.fixture
def plant_twin(tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    """A data directory with a `plant` SQL connector synced every second, and its source database URL."""
    data = tmp_path / "twin"
    data.mkdir()
    url = plant(tmp_path, [("M1", "Press", "1", "down", "S1")], [("S1", "Hall 1")])
    (data / "plant.yaml").write_text(MAPPING)
    (data / "connectors.yaml").write_text(
        "connectors:\n"
        f"  plant:\n    mapping: plant.yaml\n    schedule: 1s\n    source: {{kind: sql, url: '{url}'}}\n"
        f"  broken:\n    mapping: plant.yaml\n    schedule: 1s\n"
        f"    source: {{kind: sql, url: 'sqlite:///{tmp_path / 'missing' / 'nothing.db'}'}}\n"
    )
    runtime = Runtime(settings=Settings(data_dir=data, runtime_lease_seconds=3))
    try:
        yield runtime, url
    finally:
        runtime.close()
        stop_embedded(data / "graph")


def _machine_name(runtime: Runtime) -> str | None:
    twin = runtime.store.get("plant:machine:M1")
    return None if twin is None else twin.properties.get("name")


def test_a_source_change_reaches_the_twin_by_itself_and_a_failing_connector_backs_off_alone(
    plant_twin: tuple[Runtime, str],
) -> None:
    runtime, url = plant_twin
    live = runtime.sync_runtime(["plant", "broken"])
    live.start()
    try:
        assert wait_for(lambda: _machine_name(runtime) == "Press", 20)
        source = create_engine(url)
        with source.begin() as conn:
            conn.execute(text("UPDATE machines SET name = 'Press 2', updated_at = '2025-06-01 00:00:00'"))
        source.dispose()
        assert wait_for(lambda: _machine_name(runtime) == "Press 2", 20)
        assert wait_for(lambda: {s.connector: s for s in live.status()}["broken"].failures >= 2, 20)
    finally:
        live.stop()
    status = {s.connector: s for s in live.status()}
    plant_status, broken = status["plant"], status["broken"]
    assert plant_status.failures == 0 and plant_status.runs >= 2 and plant_status.last_success is not None
    assert broken.last_success is None and "broken:machines: cannot read machines" in (broken.last_error or "")
    backoff = FIRST_BACKOFF_SECONDS * 2 ** (broken.failures - 1)  # 2 s, 4 s, 8 s ... although scheduled every 1 s
    assert (broken.next_run - broken.last_started).total_seconds() >= backoff >= 4
    assert LeaseStore(runtime.settings.resolved_database_url).leases() == []  # released on stop
    records = runtime.audit.query(operation="connector.run", limit=1000)
    assert {r.subject for r in records} == {f"runtime:{live.holder}"}
    assert {tuple(r.roles) for r in records} == {("data_steward",)}


def test_two_runtimes_share_connectors_and_a_killed_one_is_taken_over_within_a_lease(
    plant_twin: tuple[Runtime, str],
) -> None:
    runtime, _ = plant_twin
    env = {**os.environ, "TWIN_DATA_DIR": str(runtime.settings.data_dir), "TWIN_RUNTIME_LEASE_SECONDS": "3"}
    first = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "run", "--only", "plant", "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    leases = LeaseStore(runtime.settings.resolved_database_url)
    second: SyncRuntime | None = None
    try:
        assert wait_for(lambda: [lease.connector for lease in leases.leases()] == ["plant"], 60), (
            first.stderr.read().decode() if first.poll() is not None else "no lease taken"
        )
        holder = leases.leases()[0].holder
        second = runtime.sync_runtime(["plant"])
        second.start()
        time.sleep(1.5)
        assert not second.status()[0].held and second.status()[0].runs == 0  # the first runtime has it
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.monotonic()
        assert wait_for(lambda: second.status()[0].runs >= 1, 15)
        taken_after = time.monotonic() - killed_at
        assert taken_after < 3 + 1 + 2  # one lease period, one keeper interval, one second of slack for the run
        assert leases.leases()[0].holder == second.holder != holder
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            second.stop()


def test_a_served_api_runs_the_schedules_and_reports_each_connector(plant_twin: tuple[Runtime, str]) -> None:
    from fastapi.testclient import TestClient

    from api.http.app import create_app

    runtime, _ = plant_twin
    with TestClient(create_app(runtime, live=True)) as client:
        assert wait_for(lambda: client.get("/ready").json()["connectors"]["plant"]["runs"] >= 1, 30)
        ready = client.get("/ready").json()
        assert ready["status"] == "ready"  # a failing source is reported, not a reason to be unready
        assert ready["connectors"]["plant"]["failures"] == 0 and ready["connectors"]["plant"]["leaseHeld"]
        assert wait_for(lambda: client.get("/ready").json()["connectors"]["broken"]["failures"] >= 1, 30)
        assert "cannot read machines" in client.get("/ready").json()["connectors"]["broken"]["lastError"]
        metrics = client.get("/metrics").text
        assert 'twin_connector_failures{connector="plant"} 0.0' in metrics
        assert 'twin_connector_lease_held{connector="broken"} 1.0' in metrics
        assert 'twin_connector_lag_seconds{connector="plant"}' in metrics
        assert 'twin_connector_last_success_timestamp_seconds{connector="broken"}' not in metrics
    assert LeaseStore(runtime.settings.resolved_database_url).leases() == []  # the app's stop released them
    assert _machine_name(runtime) == "Press"
