"""Source fixes: incremental SQL reads on an epoch-seconds watermark column, and file values kept as written."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Double, Integer, MetaData, Numeric, String, Table, create_engine, insert

from connectors.file_source import FileSource
from connectors.mapping import parse_mapping
from connectors.registry import RegistryError, _SourceFactory
from connectors.source import Watermark
from connectors.sql_source import SqlSource
from ontology.model import Ontology
from tests.connectors.test_sql_sources import database_url  # noqa: F401
from tests.connectors.twin_fixtures import core  # noqa: F401

JAN_1, JAN_2, JAN_3 = 1735689600, 1735776000, 1735862400  # 2025-01-01/02/03 00:00 UTC


@pytest.mark.parametrize("column_type", [Integer, Double, Numeric(12, 1)])
def test_incremental_read_on_an_epoch_seconds_watermark_returns_newer_rows(
    database_url: str,  # noqa: F811
    column_type: Any,
) -> None:
    items = Table(
        "items",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(10)),
        Column("changed_epoch", column_type),
    )
    engine = create_engine(database_url)
    try:
        items.create(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(items),
                [{"id": 1, "name": "a", "changed_epoch": JAN_1}, {"id": 2, "name": "b", "changed_epoch": JAN_2}],
            )
        source = SqlSource(database_url, table="items", key="id", watermark="changed_epoch")
        full = [r for page in source.read(None) for r in page]
        mark = Watermark(max(r.watermark for r in full if r.watermark is not None))
        assert mark.value == dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
        assert [r.key for page in source.read(mark) for r in page] == ["2"]  # inclusive at the watermark
        with engine.begin() as conn:
            conn.execute(insert(items), [{"id": 3, "name": "c", "changed_epoch": JAN_3}])
        newer = [r for page in source.read(mark) for r in page]
        assert [r.key for r in newer] == ["2", "3"] and source.count(mark) == 2
        assert newer[1].watermark == dt.datetime(2025, 1, 3, tzinfo=dt.UTC)
        later = Watermark(dt.datetime(2025, 1, 3, 0, 0, 0, 600_000, tzinfo=dt.UTC))  # minus the 1 s overlap
        assert [r.key for page in source.read(later) for r in page] == ["3"] and source.count(later) == 1
    finally:
        engine.dispose()


def test_a_timestamp_watermark_column_still_compares_as_a_timestamp(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stamps.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP)")
        conn.exec_driver_sql("INSERT INTO items VALUES (1, '2025-01-01 00:00:00'), (2, '2025-01-03 00:00:00')")
    engine.dispose()
    source = SqlSource(url, table="items", key="id", watermark="updated_at")
    since = Watermark(dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    assert [r.key for page in source.read(since) for r in page] == ["2"] and source.count(since) == 1


def test_csv_keys_keep_their_literal_text_while_other_columns_keep_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "countries.csv"
    path.write_text("code,name,population\nDE,Germany,83\nNA,Namibia,NA\nNULL,,NULL\nnan,x,\n")
    source = FileSource(path, key="code")
    records = {r.key: r.fields for page in source.read(None) for r in page}
    assert set(records) == {"DE", "NA", "NULL", "nan"} == source.all_keys()
    assert records["NA"] == {"code": "NA", "name": "Namibia", "population": None}
    assert records["NULL"] == {"code": "NULL", "name": None, "population": None}
    assert records["nan"]["population"] is None and records["DE"]["population"] == 83


def test_an_empty_csv_key_is_still_an_empty_key(tmp_path: Path) -> None:
    path = tmp_path / "countries.csv"
    path.write_text("code,name\n,Nowhere\n")
    (record,) = [r for page in FileSource(path, key="code").read(None) for r in page]
    assert record.key == "countries.csv:row2" and record.fields["__row__"] == 2


def test_csv_dtype_keeps_leading_zeros(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,zip,phone\n1,00123,+4912345\n2,0456,\n")
    records = {r.key: r.fields for page in FileSource(path, key="id", dtype={"zip": "string"}).read(None) for r in page}
    assert records["1"]["zip"] == "00123" and records["2"]["zip"] == "0456"
    assert records["1"]["phone"] == 4912345 and records["2"]["phone"] is None  # undeclared: inferred as before


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_values_keep_the_types_written(tmp_path: Path, suffix: str) -> None:
    rows = [
        '{"id": 1, "zip": "00123", "acct": "12345678901234567890123", "flag": "true", "qty": 3, "price": 2.5,'
        ' "updated_at": "2024-01-01"}',
        '{"id": 2, "zip": "0456", "acct": "1", "flag": false, "qty": null, "price": 1, "updated_at": "2024-01-02"}',
    ]
    path = tmp_path / f"p{suffix}"
    path.write_text("[" + ",".join(rows) + "]" if suffix == ".json" else "\n".join(rows) + "\n")
    source = FileSource(path, key="id", watermark="updated_at")
    records = {r.key: r for page in source.read(None) for r in page}
    assert set(records) == {"1", "2"} == source.all_keys()  # numeric keys as text
    first, second = records["1"].fields, records["2"].fields
    assert first == {
        "id": "1",
        "zip": "00123",
        "acct": "12345678901234567890123",
        "flag": "true",
        "qty": 3,
        "price": 2.5,
        "updated_at": "2024-01-01",
    }
    assert second["zip"] == "0456" and second["flag"] is False and second["qty"] is None and second["price"] == 1
    assert records["2"].watermark == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    typed = FileSource(path, key="id", dtype={"price": "float64"})
    assert {r.key: r.fields["price"] for page in typed.read(None) for r in page} == {"1": 2.5, "2": 1.0}


MAPPING = """\
system: geo
entities:
  - name: sites
    class: Site
    uid: "geo:site:{code}"
    key: code
    source: {path: sites.csv, dtype: {zip: string}}
    properties:
      name: name
"""


def test_the_registry_passes_a_file_entitys_dtype_to_the_file_source(core: Ontology, tmp_path: Path) -> None:
    (tmp_path / "sites.csv").write_text("code,name,zip\nNA,North,00123\n")
    entity = parse_mapping(MAPPING, core, "geo.yaml").entity("sites")
    source = _SourceFactory("file", {"directory": str(tmp_path)}, "geo")(entity)
    (record,) = [r for page in source.read(None) for r in page]
    assert record.key == "NA" and record.fields["zip"] == "00123"
    with pytest.raises(RegistryError, match=r"entity sites: source.dtype must map column names to type names"):
        _SourceFactory("file", {"directory": str(tmp_path)}, "geo")(replace(entity, source={"dtype": "string"}))
