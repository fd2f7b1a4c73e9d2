"""PostgreSQL push: a committed row wakes the runtime's incremental run of its entity (LISTEN/NOTIFY from the trigger
`twin connect push-sql --install` installs), the listener reconnects after its connection is killed, the schedule
keeps polling beside it, and a wrong push option is refused naming the file and connector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli.app import app
from api.runtime import Runtime
from api.settings import Settings, get_settings
from connectors.registry import ConnectorRegistry, RegistryError
from graph.embedded import stop_embedded
from ontology.core import load_core
from tests.connectors.test_sync_engine import MAPPING
from tests.waiting import wait_for


def _source(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE machines (id serial PRIMARY KEY, code text, name text, power text, state text, "
            "site text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute(
            "CREATE TABLE sites (id serial PRIMARY KEY, code text, name text, "
            "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute("INSERT INTO sites (code, name) VALUES ('S1', 'Hall 1')")


@pytest.fixture
def pushing(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Runtime, str]]:
    """A twin whose `plant` connector reads a fresh PostgreSQL database with push, polling only hourly."""
    _source(postgres_url)
    data = tmp_path / "twin"
    data.mkdir()
    (data / "plant.yaml").write_text(MAPPING)
    (data / "connectors.yaml").write_text(
        f"connectors:\n  plant:\n    mapping: plant.yaml\n    schedule: 1h\n"
        f"    source: {{kind: sql, url: '{postgres_url}', push: true}}\n"
    )
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    get_settings.cache_clear()
    runtime = Runtime(settings=Settings(data_dir=data, runtime_lease_seconds=3))
    try:
        yield runtime, postgres_url
    finally:
        runtime.close()
        stop_embedded(data / "graph")
        get_settings.cache_clear()


def _listener_pids(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            pid
            for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'twin-push:plant'")
        }


def test_a_committed_row_is_pushed_to_the_twin_and_the_listener_survives_a_killed_connection(
    pushing: tuple[Runtime, str],
) -> None:
    runtime, url = pushing
    printed = CliRunner().invoke(app, ["connect", "push-sql", "plant"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.count("CREATE TRIGGER") == 2 and "pg_notify" in printed.output
    assert "twin_notify_change('twin_plant')" in printed.output
    installed = CliRunner().invoke(app, ["connect", "push-sql", "plant", "--install"])
    assert installed.exit_code == 0 and "installed notify triggers on machines, sites" in installed.output
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'twin_push_plant_%'").fetchone() == (2,)
    assert [r.detail for r in runtime.audit.query(operation="connector.push.install")] == ["installed"]

    live = runtime.sync_runtime(["plant"])
    runs: list[list[str]] = []
    live.on_run = lambda status, report: runs.append([e.entity for e in report.entities] if report else [])
    live.start()
    source = psycopg.connect(url, autocommit=True)
    try:
        assert wait_for(
            lambda: live.status()[0].runs >= 1 and (live.status()[0].push or "").startswith("listening"), 30
        ), live.status()
        source.execute(
            "INSERT INTO machines (code, name, power, state, site) VALUES ('M1', 'Press', '3', 'operational', 'S1')"
        )
        # the next scheduled run is an hour away: only the notification can bring the row in
        assert wait_for(lambda: runtime.store.get("plant:machine:M1") is not None, 20), live.status()
        assert wait_for(lambda: live.status()[0].pushed_runs >= 1, 20), live.status()  # the pushed run has ended
        assert live.status()[0].failures == 0
        assert runs[0] == ["machines", "sites"] and ["machines"] in runs[1:]  # the pushed run: the notified entity

        killed = _listener_pids(url)
        assert len(killed) == 1
        source.execute("SELECT pg_terminate_backend(%s)", (next(iter(killed)),))
        assert wait_for(lambda: _listener_pids(url) - killed != set(), 20), live.status()
        source.execute("UPDATE machines SET name = 'Press 2', updated_at = clock_timestamp() WHERE code = 'M1'")
        assert wait_for(lambda: runtime.store.require("plant:machine:M1").properties["name"] == "Press 2", 20), (
            live.status()
        )
    finally:
        source.close()
        live.stop()
    assert _listener_pids(url) == set()  # stopped with the runtime


def test_the_schedule_keeps_polling_beside_push(tmp_path: Path, postgres_url: str) -> None:
    _source(postgres_url)
    data = tmp_path / "twin"
    data.mkdir()
    (data / "plant.yaml").write_text(MAPPING)
    (data / "connectors.yaml").write_text(
        f"connectors:\n  plant:\n    mapping: plant.yaml\n    schedule: 1s\n"
        f"    source: {{kind: sql, url: '{postgres_url}', push: {{channel: plant_changes}}}}\n"
    )
    runtime = Runtime(settings=Settings(data_dir=data, runtime_lease_seconds=3))
    live = runtime.sync_runtime(["plant"])
    live.start()
    try:  # no trigger is installed: nothing notifies, and the row still arrives by the schedule
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO machines (code, name, power, state, site) VALUES ('M7', 'Lathe', '1', 'down', 'S1')"
            )
        assert wait_for(lambda: runtime.store.get("plant:machine:M7") is not None, 20), live.status()
        assert live.status()[0].pushed_runs == 0 and live.status()[0].push == "listening on plant_changes"
    finally:
        live.stop()
        runtime.close()
        stop_embedded(data / "graph")


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{kind: sql, url: 'sqlite:///x.db', push: true}", "needs a postgresql:// source URL; this source is 'sqlite"),
        ("{kind: sql, url: 'postgresql://u:secret-pw@h/db', push: {channel: 'no spaces'}}", "push channel 'no spaces'"),
        ("{kind: sql, url: 'postgresql://u:secret-pw@h/db', push: {every: 1}}", "push must be true, false or"),
        ("{kind: mqtt, host: h, push: true}", "push is an option of PostgreSQL (sql) sources only"),
    ],
)
def test_a_wrong_push_option_names_file_and_connector(tmp_path: Path, source: str, says: str) -> None:
    (tmp_path / "plant.yaml").write_text(MAPPING)
    (tmp_path / "connectors.yaml").write_text(f"connectors:\n  plant:\n    mapping: plant.yaml\n    source: {source}\n")
    with pytest.raises(RegistryError) as refused:
        ConnectorRegistry.load(load_core(), data_dir=tmp_path)
    assert says in str(refused.value) and "connectors.yaml: connector 'plant'" in str(refused.value)
    assert "secret-pw" not in str(refused.value)
