"""The relational stores' schema revisions: the revisions create exactly the stores' tables, a fresh store is created
at head, an older one is refused until `twin db upgrade`, and upgrading a store of the release before Alembic (built
with `create_all`, as that release did) keeps every row — on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import datetime as dt
import importlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    select,
    text,
)
from typer.testing import CliRunner

from api.cli.app import app
from api.settings import get_settings
from governance.audit import AuditLog
from graph.migrations import STORE_MODULES, store_metadata
from graph.relational import dispose_engines, relational_engine
from graph.store_schema import (
    BASELINE,
    BASELINE_TABLES,
    VERSION_TABLE,
    StoreOutdated,
    alembic_config,
    head_revision,
    schema_state,
    upgrade,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stores.db'}"
    else:
        yield str(request.getfixturevalue("postgres_url"))
    dispose_engines()


def _differences(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE})
        return list(compare_metadata(context, store_metadata()))


def test_the_revisions_create_exactly_the_tables_the_stores_define(url: str) -> None:
    engine = relational_engine(url)
    upgrade(engine)
    differences = _differences(engine)
    assert differences == [], (
        "the stores' tables differ from what the Alembic revisions create (a table or column added without a "
        "revision?): write one with `twin db revision MESSAGE` and review it (CONTRIBUTING.md, 'A relational "
        f"table'). Differences: {differences}"
    )


def test_every_module_that_opens_store_tables_is_named_for_the_revisions() -> None:
    openers = set()
    for package in ("graph", "governance", "connectors", "simulation", "api"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "create_tables" for n in ast.walk(tree)):
                openers.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert openers <= set(STORE_MODULES), (
        f"modules open store tables without being in STORE_MODULES (graph/migrations/__init__.py): "
        f"{sorted(openers - set(STORE_MODULES))}"
    )
    for name in STORE_MODULES:
        assert isinstance(importlib.import_module(name).metadata, MetaData)


def test_a_fresh_store_is_created_at_head_once_even_when_stores_open_it_at_once(url: str) -> None:
    from connectors.quarantine import QuarantineStore
    from connectors.sync_state import SyncState
    from graph.history import HistoryStore

    openers = [AuditLog, HistoryStore, SyncState, QuarantineStore]
    with ThreadPoolExecutor(len(openers)) as pool:
        list(pool.map(lambda opener: opener(url), openers))
    state = schema_state(relational_engine(url))
    assert state.current and state.revision == head_revision()
    assert set(inspect(relational_engine(url)).get_table_names()) >= set(store_metadata().tables)


def _value(table: Table, column: str, i: int) -> Any:
    """A deterministic value of `column` of row `i` (a foreign key gets the value of the column it refers to)."""
    col = table.c[column]
    for key in col.foreign_keys:
        target = key.column
        return _value(target.table, target.name, i)
    kind = col.type
    if isinstance(kind, Boolean):
        return i % 2 == 0
    if isinstance(kind, (Integer, BigInteger)):
        return 1000 * i + len(column)
    if isinstance(kind, Float):
        return i / 3
    if isinstance(kind, DateTime):
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
    if isinstance(kind, (String, Text)):
        value = f"{i}:{column}:{table.name} é ✓"
        return value[: kind.length] if kind.length else value
    raise AssertionError(f"no sample value for {table.name}.{column} ({kind})")


def _previous_release_store(url: str, rows: int = 3) -> None:
    """A store as the release before Alembic left it: the baseline revision's tables (what that release's
    `create_all` made, before columns added since), no version table, rows in each."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(engine, connection), BASELINE)
            connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        reflected = MetaData()
        reflected.reflect(engine, only=sorted(BASELINE_TABLES))
        with engine.begin() as connection:
            for table in reflected.sorted_tables:
                values = [{c.name: _value(table, c.name, i) for c in table.columns} for i in range(rows)]
                connection.execute(table.insert(), values)
    finally:
        engine.dispose()


def _snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    reflected = MetaData()
    reflected.reflect(engine, only=lambda name, _: name in BASELINE_TABLES)
    with engine.connect() as connection:
        return {
            name: [dict(row._mapping) for row in connection.execute(select(table).order_by(*table.primary_key.columns))]
            for name, table in reflected.tables.items()
        }


def _lineage_values(engine: Engine) -> list[dict[str, Any]]:
    """Every lineage value with its provenance, in the order stored: the rows of `lineage_record` (one per property
    value) or the property maps of `lineage_source_record` expanded (one row per twin, source record and run)."""
    with engine.connect() as connection:
        if "lineage_record" in inspect(connection).get_table_names():
            rows = connection.execute(text("SELECT * FROM lineage_record ORDER BY id")).mappings().all()
            return [{k: v for k, v in row.items() if k != "id"} for row in rows]
        expanded = []
        for row in connection.execute(text("SELECT * FROM lineage_source_record ORDER BY id")).mappings():
            shared = {k: v for k, v in row.items() if k not in ("id", "properties")}
            for entry in json.loads(row["properties"]):
                names = ("property", "source_field", "mapping_rule", "transform", "value_digest", "value")
                expanded.append({**shared, **dict(zip(names, entry, strict=True))})
        return expanded


def test_a_store_of_the_release_before_alembic_upgrades_and_keeps_every_row(url: str) -> None:
    _previous_release_store(url)
    engine = relational_engine(url)
    before = _snapshot(engine)
    assert set(before) == BASELINE_TABLES and all(len(rows) == 3 for rows in before.values())
    with pytest.raises(StoreOutdated, match="twin db upgrade"):
        AuditLog(url)  # the stores refuse it until it is upgraded
    lineage = _lineage_values(engine)
    assert upgrade(engine) == (None, head_revision())
    del before["lineage_record"]  # its rows now live in lineage_source_record, one per twin, source record and run
    after = _snapshot(engine)
    assert {name: [{c: row[c] for c in before[name][0]} for row in rows] for name, rows in after.items()} == before
    added = [
        (name, c, v) for name, rows in after.items() for row in rows for c, v in row.items() if c not in before[name][0]
    ]
    assert all(value is None for _, _, value in added)  # columns added since the baseline are empty in old rows
    assert _lineage_values(engine) == lineage
    assert schema_state(engine).current
    assert _differences(engine) == []
    AuditLog(url)  # opens now
    assert upgrade(engine) == (head_revision(), head_revision())  # a second upgrade changes nothing


def test_a_store_newer_than_the_code_is_refused_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    AuditLog(url)
    engine = relational_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    dispose_engines()
    with pytest.raises(StoreOutdated, match="'9999', which this code does not know"):
        AuditLog(url)
    with pytest.raises(StoreOutdated, match="newer release"):
        upgrade(relational_engine(url))
    dispose_engines()


def test_the_cli_refuses_an_outdated_store_and_twin_db_upgrade_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "twin"
    data_dir.mkdir(mode=0o700)
    monkeypatch.setenv("TWIN_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        url = get_settings().resolved_database_url
        _previous_release_store(url, rows=1)
        runner = CliRunner()
        refused = runner.invoke(app, ["audit", "verify"])
        assert refused.exit_code == 1
        assert "twin db upgrade" in refused.output and "created before Alembic" in refused.output
        current = runner.invoke(app, ["db", "current", "--json"])
        assert current.exit_code == 1 and '"revision": null' in current.output
        upgraded = runner.invoke(app, ["db", "upgrade"])
        assert upgraded.exit_code == 0, upgraded.output
        assert f"upgraded from unversioned to {head_revision()}" in upgraded.output
        current = runner.invoke(app, ["db", "current"])
        assert current.exit_code == 0 and "(head)" in current.output
    finally:
        get_settings.cache_clear()
        dispose_engines()


def test_the_api_refuses_to_start_on_an_outdated_store(tmp_path: Path) -> None:
    from api.http.app import create_app
    from api.runtime import Runtime
    from api.settings import Settings
    from graph.embedded import stop_embedded

    data_dir = tmp_path / "twin"
    data_dir.mkdir(mode=0o700)
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'twin.db'}")
    _previous_release_store(settings.resolved_database_url, rows=1)
    runtime = Runtime(settings=settings)
    try:
        with pytest.raises(StoreOutdated, match="run `twin db upgrade`"):
            create_app(runtime)
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")
        dispose_engines()
