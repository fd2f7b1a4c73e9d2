"""The sync package's seams: no Cypher outside graph/, one error base for the connector layer, MappedLink in the
ledger's format, and stores wired once per URL (on SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import event

from connectors.errors import ConnectorError
from connectors.identity import IdentityError
from connectors.mapping import MappingError, parse_mapping
from connectors.registry import RegistryError
from connectors.sample.enterprise import SampleEnterpriseError
from connectors.schedule import ScheduleError
from connectors.source import SourceError, SourceObjectMissing, SourceRecord, UnknownSourceField
from connectors.sync import Connector, EntityReport, MappedLink, MassDeletion, SyncEngine, SyncError, SyncReport
from connectors.sync.mapper import RecordMapper
from connectors.transforms import TransformError
from graph.relational import relational_engine
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401


def test_connector_errors_share_one_base_and_keep_their_own() -> None:
    for error, also in [
        (SyncError, RuntimeError),
        (MassDeletion, SyncError),
        (SourceError, Exception),
        (SourceObjectMissing, SourceError),
        (UnknownSourceField, SourceError),
        (MappingError, ValueError),
        (RegistryError, ValueError),
        (IdentityError, ValueError),
        (ScheduleError, ValueError),
        (TransformError, ValueError),
        (SampleEnterpriseError, ValueError),
    ]:
        assert issubclass(error, ConnectorError), error
        assert issubclass(error, also), (error, also)
    assert str(SourceError("no such table", model="orders", method="read")) == "orders.read: no such table"
    assert str(SyncError("erp/orders: cannot open the source")) == "erp/orders: cannot open the source"
    assert {Connector, EntityReport, SyncReport, SyncEngine}  # the package's public names still import


def test_mapped_links_keep_the_ledger_format(core: Ontology, tmp_path: Path) -> None:  # noqa: F811
    text = """
system: erp
entities:
  - name: orders
    class: PurchaseOrder
    uid: "erp:po:{number}"
    key: id
    source: {table: orders}
    properties:
      name: number
    links:
      - type: placedWith
        target: "erp:supplier:{supplier}"
        target_class: Supplier
"""
    mapping = parse_mapping(text, core, str(tmp_path / "m.yaml"))
    item = RecordMapper(mapping.entities[0], "erp").map(SourceRecord("1", {"id": 1, "number": "P1", "supplier": "S"}))
    assert all(isinstance(link, MappedLink) for link in item.links)
    assert [link.key for link in item.links] == [("placedWith", "erp:po:P1", "erp:supplier:S")]
    # the ledger payload lists links as [type, source, target, properties], as ledgers written before the split do
    assert item.payload()["l"] == [["placedWith", "erp:po:P1", "erp:supplier:S", {}]]


def _statements_while(url: str, build: object) -> list[str]:
    statements: list[str] = []
    engine = relational_engine(url)

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        build()  # type: ignore[operator]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return statements


def _wired_once(env: TwinEnv, url: str) -> None:
    first = SyncEngine(env.store, url)
    stores = first.stores
    assert (
        len(
            {id(s.engine) for s in (stores.state, stores.quarantine, stores.identity, stores.telemetry, stores.lineage)}
        )
        == 1
    ), "the stores at one URL share one engine"
    # a second engine at the same URL (the runtime builds one per run) inspects and creates nothing again
    assert _statements_while(url, lambda: SyncEngine(env.store, url)) == []
    assert SyncEngine(env.store, url, stores=stores).state is stores.state


def test_stores_are_wired_once_on_sqlite(twin: TwinEnv) -> None:  # noqa: F811
    _wired_once(twin, twin.state_url)


def test_stores_are_wired_once_on_postgres(twin: TwinEnv, postgres_url: str) -> None:  # noqa: F811
    _wired_once(twin, postgres_url)


PARTS = """\
system: stock
entities:
  - name: parts
    class: Product
    uid: "stock:part:{id}"
    key: id
    watermark: updated_at
    source: {table: parts}
    properties:
      sku: code
      name: code
"""


def test_listing_every_key_and_comparing_key_ranges_find_the_same_deletions(
    core: Ontology,
    twin: TwinEnv,
    tmp_path: Path,  # noqa: F811
) -> None:
    """An incremental deletion check lists every key of a small source and compares key ranges of a large one;
    both find exactly the records deleted (and not those inserted since)."""
    from connectors.sql_source import SqlSource
    from connectors.sync.context import RunContext

    database = tmp_path / "stock.sqlite"
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE parts (id INTEGER PRIMARY KEY, code TEXT, updated_at TEXT)")
        con.executemany(
            "INSERT INTO parts VALUES (?, ?, '2025-01-01 00:00:00')", [(i, f"P{i}") for i in range(1, 2001)]
        )
    url = f"sqlite:///{database}"
    mapping = parse_mapping(PARTS, core, "stock.yaml")
    entity = mapping.entities[0]
    connector = Connector("stock", mapping, lambda e: SqlSource(url, table="parts", key="id", watermark="updated_at"))
    engine = SyncEngine(twin.store, twin.state_url)
    engine.run(connector, "full")
    with sqlite3.connect(database) as con:  # 25 deleted across the key space, 5 inserted after the last key
        con.executemany("DELETE FROM parts WHERE id = ?", [(i,) for i in range(7, 2000, 80)])
        con.executemany(
            "INSERT INTO parts VALUES (?, ?, '2025-01-02 00:00:00')", [(i, f"P{i}") for i in range(2001, 2006)]
        )
    deleted = sorted(str(i) for i in range(7, 2000, 80))

    def missing(list_up_to: int) -> list[str]:
        ctx = RunContext(
            connector, "incremental", True, "check", SyncReport("check", "stock", "incremental", True), None, False, {}
        )
        ctx.ledger_counts = engine.state.ledger_entity_counts("stock")
        engine.deletions.list_keys_up_to = list_up_to
        engine.deletions.list_table_keys_up_to = list_up_to
        return engine.deletions.missing_keys(ctx, entity, connector.open_source(entity), set())

    assert missing(50_000) == deleted  # 2,000 ledger keys: every key listed
    assert missing(0) == deleted  # compared by key ranges first
