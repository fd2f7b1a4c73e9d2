"""Issue 19 must-show: an employee synced from PostgreSQL, whose values went through history, the change feed,
lineage, the sync ledger and the identity match keys, is erased with `twin erase`. In every store, and in a backup
taken before the erasure (a pg_dump of the relational store, or a copy of the data directory holding the SQLite
store), the subject's personal values are absent or cannot be decrypted; every other subject still decrypts;
`twin audit verify` passes. The live graph keeps plaintext (README, 'Personal data at rest'): its own files are
the one part of the data directory outside this guarantee."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from api.cli.app import app
from api.runtime import Runtime
from api.settings import get_settings
from connectors.mapping import parse_mapping
from connectors.sql_source import SqlSource, dispose_source_engine
from connectors.sync import Connector
from connectors.sync_state import SyncState
from governance.lineage import LineageStore
from graph.embedded import stop_embedded
from graph.feed import ChangeFeed
from graph.history import HistoryStore
from graph.relational import relational_engine
from tests.conftest import POSTGRES_ADMIN

MAPPING = """
system: hr
entities:
  - name: employees
    class: Employee
    uid: "hr:employee:{employee_id}"
    key: employee_id
    watermark: updated_at
    properties:
      employeeId: employee_id
      name: {template: "{first_name} {last_name}"}
      email: {field: work_email, transform: [trim, lower]}
      phone: phone
      birthDate: birth_date
    identity:
      domain: person
      email: email
      exact: [employeeId]
"""
ANN, BOB = "hr:employee:E1", "hr:employee:E2"
ANN_SECRETS = ("ann.secret@acme.test", "+44 20 7946 0001", "+44 20 7946 0999", "1980-02-29")
BOB_EMAIL = "bob.other@acme.test"
BASE = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def source_url() -> Iterator[str]:
    """A PostgreSQL database of its own holding the HR system's employees."""
    name = f"twin_src_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE employees (employee_id text PRIMARY KEY, first_name text, last_name text, "
                "work_email text, phone text, birth_date date, updated_at timestamptz)"
            )
        )
        conn.execute(
            text("INSERT INTO employees VALUES (:i, :f, :l, :e, :p, :b, :u)"),
            [
                {"i": "E1", "f": "Ann", "l": "Archer", "e": " Ann.Secret@acme.test", "p": ANN_SECRETS[1]}
                | {"b": dt.date(1980, 2, 29), "u": BASE},
                {"i": "E2", "f": "Bob", "l": "Baker", "e": BOB_EMAIL, "p": "+44 20 7946 0002"}
                | {"b": dt.date(1975, 6, 1), "u": BASE},
                {"i": "E3", "f": "Cid", "l": "Cole", "e": "cid@acme.test", "p": None, "b": None, "u": BASE},
            ],
        )
    engine.dispose()
    try:
        yield url
    finally:
        dispose_source_engine(url)
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["postgresql", "sqlite"])
def twin_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """TWIN_* settings for a data directory with its relational store in PostgreSQL (None: SQLite inside the data
    directory) and its key directory outside the data directory, as README tells for backups."""
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TWIN_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("TWIN_GRAPH_FSYNC", "no")
    if database_url:
        monkeypatch.setenv("TWIN_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        yield database_url
    finally:
        get_settings.cache_clear()
        stop_embedded(tmp_path / "data" / "graph")


def _connector(runtime: Runtime, source_url: str) -> Connector:
    return Connector(
        "hr",
        parse_mapping(MAPPING, runtime.ontology, "hr.yaml"),
        lambda e: SqlSource(source_url, table="employees", key=list(e.key), watermark=e.watermark),
    )


def _holds_any(data: bytes, secrets: tuple[str, ...]) -> list[str]:
    return [s for s in secrets if s.encode() in data]


def _copy_data_dir(data_dir: Path, target: Path) -> None:
    shutil.copytree(data_dir, target, ignore=lambda d, names: [n for n in names if (Path(d) / n).is_socket()])


def _readers(url: str, runtime: Runtime) -> tuple[HistoryStore, LineageStore, SyncState]:
    seal = runtime.personal_seal
    return HistoryStore(url, seal), LineageStore(url, runtime.digest_key, seal), SyncState(url, seal)


def _personal_seen(url: str, runtime: Runtime, uid: str) -> dict[str, set[object]]:
    """Every personal value of twin `uid` the stores at `url` give back, by store."""
    history, lineage, state = _readers(url, runtime)
    personal = ("email", "phone", "birthDate")
    seen: dict[str, set[object]] = {"history": set(), "feed": set(), "lineage": set(), "ledger": set()}
    for entry in history.history(uid):
        for st in (entry.before or {}, entry.after or {}):
            seen["history"].update(v for k, v in st.items() if k in personal and v is not None)
    for change in ChangeFeed(history).read():
        if change.uid == uid:
            for st in (change.before or {}, change.after or {}):
                seen["feed"].update(v for k, v in st.items() if k in personal and v is not None)
    seen["lineage"].update(r.value for r in lineage.where_from(uid) if r.property in personal and r.value is not None)
    for entry in state.entries_for_uids([uid]).get(uid, []):
        props = entry.payload.get("p", {})
        seen["ledger"].update(v for k, v in props.items() if k in personal and v is not None)
    return seen


def test_erasing_an_employee_makes_every_copy_and_backup_unreadable(
    twin_env: str | None, source_url: str, tmp_path: Path
) -> None:
    runtime = Runtime()
    try:
        engine = runtime.sync_engine("test")
        connector = _connector(runtime, source_url)
        assert engine.run(connector, "full").counts["created"] == 3
        source = create_engine(source_url)
        with source.begin() as conn:  # Ann's phone changes: history and the feed get a before and an after
            conn.execute(
                text("UPDATE employees SET phone = :p, updated_at = :u WHERE employee_id = 'E1'"),
                {"p": ANN_SECRETS[2], "u": BASE + dt.timedelta(days=1)},
            )
        source.dispose()
        assert engine.run(connector, "full").counts["updated"] == 1
        url = runtime.settings.resolved_database_url
        data_dir = runtime.settings.data_dir

        # readers decrypt transparently: every store gives Ann's values back
        seen = _personal_seen(url, runtime, ANN)
        assert seen["history"] >= set(ANN_SECRETS) and seen["feed"] >= set(ANN_SECRETS)
        assert {ANN_SECRETS[0], ANN_SECRETS[2], ANN_SECRETS[3]} <= seen["lineage"]
        assert seen["ledger"] == {ANN_SECRETS[0], ANN_SECRETS[2], ANN_SECRETS[3]}
        assert runtime.store.require(ANN).properties["email"] == ANN_SECRETS[0]  # the live graph: plaintext

        # backups taken before the erasure
        _copy_data_dir(data_dir, tmp_path / "data-copy")
        dump = tmp_path / "before.sql"
        if twin_env is not None:
            subprocess.run(["pg_dump", "--no-owner", "-f", str(dump), twin_env], check=True)
            stored = dump.read_bytes()
        else:
            stored = b"".join(p.read_bytes() for p in (tmp_path / "data-copy").glob("twin.db*"))  # with its WAL
        assert _holds_any(stored, ANN_SECRETS) == [] and BOB_EMAIL.encode() not in stored  # sealed at rest
        assert b"tw1:" in stored
    finally:
        runtime.close()

    erased = CliRunner().invoke(app, ["erase", ANN])
    assert erased.exit_code == 0, erased.output
    assert "data key was destroyed" in erased.output

    runtime = Runtime()  # a process started after the erasure
    try:
        assert not runtime.subject_keys.has_key(ANN) and runtime.subject_keys.has_key(BOB)
        # the live stores
        live = _personal_seen(url, runtime, ANN)
        assert live == {"history": set(), "feed": set(), "lineage": set(), "ledger": set()}
        assert _personal_seen(url, runtime, BOB)["history"] >= {BOB_EMAIL}
        assert runtime.store.require(ANN).properties.get("email") is None
        # the backup taken before, restored, read with the key ring as it is now
        if twin_env is not None:
            restored = f"twin_restored_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{restored}"')
            restored_url = f"postgresql://postgres@127.0.0.1:5432/{restored}"
            subprocess.run(
                ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), restored_url],
                check=True,
                capture_output=True,
            )
        else:
            restored_url = f"sqlite:///{tmp_path / 'data-copy' / 'twin.db'}"
        try:
            from_backup = _personal_seen(restored_url, runtime, ANN)
            assert from_backup == {"history": set(), "feed": set(), "lineage": set(), "ledger": set()}
            bob = _personal_seen(restored_url, runtime, BOB)
            assert all(BOB_EMAIL in values for values in bob.values()), bob  # every other subject still decrypts
        finally:
            relational_engine(restored_url).dispose()
            if twin_env is not None:
                with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        # the copy of the data directory: no file but the live graph's own holds Ann's values in clear
        leaking = [
            str(p.relative_to(tmp_path / "data-copy"))
            for p in (tmp_path / "data-copy").rglob("*")
            if p.is_file()
            and "graph" not in p.relative_to(tmp_path / "data-copy").parts
            and _holds_any(p.read_bytes(), ANN_SECRETS)
        ]
        assert leaking == []
    finally:
        runtime.close()
    verified = CliRunner().invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
