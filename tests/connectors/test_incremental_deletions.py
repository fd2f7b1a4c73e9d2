"""Incremental runs find deleted source records by key ranges: a deletion inside one range among hundreds is found
while only that range's keys are listed, and a deletion beside an insertion that keeps the source's count (and the
range's count) the same is found too; a small source lists every key and finds the same."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from connectors.mapping import parse_mapping
from connectors.sql_source import SqlSource
from connectors.sync import Connector, SyncEngine
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

ROWS = 5_000  # more ledger keys than a deletion check lists whole: compared by key ranges


class ListingSource(SqlSource):
    """A SqlSource that notes which keys a deletion check listed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.listed: list[str] = []
        self.listed_all = False

    def keys_in_buckets(self, low: int, width: int, buckets: Sequence[int]) -> set[str]:
        found = super().keys_in_buckets(low, width, buckets)
        self.listed += sorted(found)
        return found

    def all_keys(self) -> set[str]:
        self.listed_all = True
        return super().all_keys()


class Stock:
    """A parts table synced into the twin, with the sources each run opened."""

    def __init__(self, core: Ontology, twin: TwinEnv, tmp_path: Path, rows: int) -> None:  # noqa: F811
        self.database = tmp_path / "stock.sqlite"
        with sqlite3.connect(self.database) as con:
            con.execute("CREATE TABLE parts (id INTEGER PRIMARY KEY, code TEXT, updated_at TEXT)")
            con.executemany(  # every tenth key is left out: room to insert inside a range
                "INSERT INTO parts VALUES (?, ?, '2025-01-01 00:00:00')",
                [(i, f"P{i}") for i in range(1, rows + 1) if i % 10],
            )
        url = f"sqlite:///{self.database}"
        self.opened: list[ListingSource] = []

        def open_source(_entity: object) -> ListingSource:
            source = ListingSource(url, table="parts", key="id", watermark="updated_at")
            self.opened.append(source)
            return source

        self.connector = Connector("stock", parse_mapping(PARTS, core, "stock.yaml"), open_source)
        self.engine = SyncEngine(twin.store, twin.state_url)
        self.store = twin.store
        self.engine.run(self.connector, "full")

    def change(self, deleted: Sequence[int] = (), inserted: Sequence[int] = ()) -> None:
        with sqlite3.connect(self.database) as con:
            con.executemany("DELETE FROM parts WHERE id = ?", [(i,) for i in deleted])
            con.executemany("INSERT INTO parts VALUES (?, ?, '2025-01-02 00:00:00')", [(i, f"P{i}") for i in inserted])

    def incremental(self) -> tuple[int, ListingSource]:
        report = self.engine.run(self.connector, "incremental")
        return report.counts["deleted"], self.opened[-1]

    def has(self, key: int) -> bool:
        return self.store.get(f"stock:part:{key}") is not None


@pytest.fixture
def stock(core: Ontology, twin: TwinEnv, tmp_path: Path) -> Stock:  # noqa: F811
    return Stock(core, twin, tmp_path, ROWS)


def test_a_deletion_inside_one_range_among_many_is_found_listing_only_its_range(stock: Stock) -> None:
    stock.change(deleted=[2_503])
    deleted, source = stock.incremental()
    assert deleted == 1 and not stock.has(2_503)
    assert stock.has(2_502) and stock.has(2_504)
    assert not source.listed_all, "a large table-keyed source is compared by key ranges, not listed whole"
    assert "2503" not in source.listed and 0 < len(source.listed) <= 64, source.listed  # its neighbours only
    assert stock.incremental()[0] == 0  # nothing more to delete


def test_a_deletion_beside_an_insertion_in_the_same_range_is_found(stock: Stock) -> None:
    """The source's count and the range's count stay as they were: the new key marks its range for listing."""
    stock.change(deleted=[2_503], inserted=[2_500])  # 2,500 was never there (every tenth key is left out)
    deleted, source = stock.incremental()
    assert deleted == 1 and not stock.has(2_503) and stock.has(2_500)
    assert not source.listed_all and "2500" in source.listed


def test_deletions_and_insertions_far_apart_with_an_equal_count_are_found(stock: Stock) -> None:
    stock.change(deleted=[11, 3_333, 4_999], inserted=[5_001, 5_002, 5_003])
    deleted, _ = stock.incremental()
    assert deleted == 3
    assert [stock.has(k) for k in (11, 3_333, 4_999)] == [False, False, False]
    assert [stock.has(k) for k in (5_001, 5_002, 5_003)] == [True, True, True]


def test_a_small_source_lists_every_key_and_finds_a_deletion_beside_an_insertion(
    core: Ontology,
    twin: TwinEnv,
    tmp_path: Path,  # noqa: F811
) -> None:
    small = Stock(core, twin, tmp_path, 300)
    small.change(deleted=[151], inserted=[160])
    deleted, source = small.incremental()
    assert deleted == 1 and not small.has(151) and small.has(160)
    assert source.listed_all


def test_an_incremental_run_without_deletions_lists_no_key(stock: Stock) -> None:
    stock.change(inserted=[5_001])
    deleted, source = stock.incremental()
    assert deleted == 0 and stock.has(5_001)
    assert not source.listed_all and source.listed == []  # the count shows that nothing can be missing
