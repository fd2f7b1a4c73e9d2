"""An entity's new watermark commits in the same transaction as its last page (one transaction less per entity and
run): it advances with that page, and a page whose commit fails leaves it where it was, so the next run reads the
page's records again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connectors.mapping import parse_mapping
from connectors.sql_source import SqlSource
from connectors.sync import Connector, SyncEngine
from connectors.sync_state import SyncState
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

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


def _state_file(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_the_watermark_advances_with_the_last_page_and_not_when_its_commit_fails(
    core: Ontology,
    twin: TwinEnv,
    tmp_path: Path,  # noqa: F811
) -> None:
    if not twin.state_url.startswith("sqlite:///"):
        pytest.skip("the refusing trigger is SQLite's")
    database = tmp_path / "stock.sqlite"
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE parts (id INTEGER PRIMARY KEY, code TEXT, updated_at TEXT)")
        con.executemany("INSERT INTO parts VALUES (?, ?, '2025-01-01 00:00:00')", [(i, f"P{i}") for i in range(1, 21)])
    url = f"sqlite:///{database}"
    connector = Connector(
        "stock",
        parse_mapping(PARTS, core, "stock.yaml"),
        lambda e: SqlSource(url, table="parts", key="id", watermark="updated_at", page_size=8),
    )
    engine = SyncEngine(twin.store, twin.state_url)
    state = SyncState(twin.state_url)
    engine.run(connector, "full")
    first = state.watermark("stock", "parts")
    assert first is not None and first.value.isoformat().startswith("2025-01-01T00:00:00")

    with sqlite3.connect(database) as con:  # two pages of changes: the watermark goes with the second
        con.execute("UPDATE parts SET code = code || 'x', updated_at = '2025-01-02 00:00:00' WHERE id <= 12")
    run = engine.run(connector, "incremental")
    second = state.watermark("stock", "parts")
    assert second is not None and second.value.isoformat().startswith("2025-01-02T00:00:00")
    assert run.counts["updated"] == 12 and twin.store.require("stock:part:12").properties["name"] == "P12x"

    with sqlite3.connect(database) as con:
        con.execute("UPDATE parts SET code = code || 'y', updated_at = '2025-01-03 00:00:00' WHERE id = 7")
    with sqlite3.connect(_state_file(twin.state_url)) as con:  # the ledger refuses record 7: its page's commit fails
        con.execute(
            "CREATE TRIGGER refuse_seven BEFORE UPDATE ON sync_record WHEN NEW.record_key = '7' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(Exception, match="refused"):
        engine.run(connector, "incremental")
    kept = state.watermark("stock", "parts")
    assert kept is not None and kept.value == second.value  # not advanced past the page that was not committed

    with sqlite3.connect(_state_file(twin.state_url)) as con:
        con.execute("DROP TRIGGER refuse_seven")
    assert state.ledger("stock", "parts", ["7"])["7"].payload["p"]["name"] == "P7x"  # the failed page's ledger
    again = engine.run(connector, "incremental")  # reads record 7 again, from the watermark that stayed
    assert again.counts["read"] == 12  # the records changed at or after the watermark that stayed, 7 among them
    assert state.ledger("stock", "parts", ["7"])["7"].payload["p"]["name"] == "P7xy"
    third = state.watermark("stock", "parts")
    assert third is not None and third.value.isoformat().startswith("2025-01-03T00:00:00")
    assert twin.store.require("stock:part:7").properties["name"] == "P7xy"
