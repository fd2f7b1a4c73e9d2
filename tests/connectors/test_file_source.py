"""FileSource through pandas: CSV, Excel, Parquet, JSON and JSON lines; malformed files are refused naming the file;
bad rows of a good file are quarantined by the sync."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from connectors.file_source import FileSource
from connectors.mapping import parse_mapping
from connectors.quarantine import QuarantineStore
from connectors.source import Source, SourceError, Watermark
from connectors.sync import Connector
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, snapshot, twin  # noqa: F401

FRAME = pd.DataFrame(
    {
        "sku": ["P-1", "P-2", "P-3"],
        "name": ["Bracket", "Hinge", None],
        "price": [12.5, float("nan"), 3.0],
        "updated_at": pd.to_datetime(["2025-01-01 10:00", "2025-02-01 10:00", "2025-03-01 10:00"]),
    }
)


def write(path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        FRAME.to_csv(path, index=False)
    elif suffix == ".xlsx":
        FRAME.to_excel(path, index=False, sheet_name="Products")
    elif suffix == ".parquet":
        FRAME.to_parquet(path, index=False)
    elif suffix == ".json":
        FRAME.assign(updated_at=FRAME.updated_at.astype(str)).to_json(path, orient="records")
    else:
        FRAME.assign(updated_at=FRAME.updated_at.astype(str)).to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet", ".json", ".jsonl"])
def test_each_format_reads_as_plain_records(tmp_path: Path, suffix: str) -> None:
    source = FileSource(write(tmp_path / f"products{suffix}"), key="sku", watermark="updated_at", page_size=2)
    assert isinstance(source, Source)
    pages = list(source.read(None))
    assert [len(p) for p in pages] == [2, 1]
    records = {r.key: r for page in pages for r in page}
    assert set(records) == {"P-1", "P-2", "P-3"} == source.all_keys()
    assert records["P-1"].fields["name"] == "Bracket" and records["P-1"].fields["price"] == 12.5
    assert records["P-2"].fields["price"] is None and records["P-3"].fields["name"] is None
    assert records["P-2"].watermark == dt.datetime(2025, 2, 1, 10, tzinfo=dt.UTC)
    json.dumps([r.fields for r in records.values()])  # plain JSON values only
    later = [r.key for page in source.read(Watermark(dt.datetime(2025, 2, 1, 10, tzinfo=dt.UTC))) for r in page]
    assert later == ["P-2", "P-3"]


def test_the_file_is_parsed_once_while_it_stays_the_same_and_again_when_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path / "products.csv")
    source = FileSource(path, key="sku")
    assert source.count() == 3
    assert source.frame() is source.frame()  # counting for a progress bar, then reading: one parse
    FRAME.iloc[:2].to_csv(path, index=False)  # the file changes between two runs of the same source
    assert source.count() == 2
    assert sorted(r.key for page in source.read(None) for r in page) == ["P-1", "P-2"]
    path.unlink()
    with pytest.raises(SourceError, match="file not found"):
        source.count()


def test_malformed_and_incomplete_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet")
    with pytest.raises(SourceError, match="broken.parquet: cannot be read as parquet"):
        list(FileSource(broken, key="sku").read(None))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[{"sku": "P-1", ')
    with pytest.raises(SourceError, match="bad.json: cannot be read as json"):
        list(FileSource(bad_json, key="sku").read(None))
    with pytest.raises(SourceError, match=r"products.csv: missing column\(s\) code"):
        list(FileSource(write(tmp_path / "products.csv"), key="code").read(None))
    with pytest.raises(SourceError, match="file not found"):
        list(FileSource(tmp_path / "nowhere.csv", key="sku").read(None))
    with pytest.raises(SourceError, match="unknown file type '.txt'"):
        FileSource(tmp_path / "notes.txt", key="sku")


MAPPING = """\
system: catalogue
entities:
  - name: products
    class: Product
    uid: "catalogue:product:{sku}"
    key: sku
    watermark: updated_at
    properties:
      sku: sku
      name: name
      unitPrice: {field: price, cast: double}
"""


def test_file_sync_quarantines_bad_rows_and_a_malformed_file_changes_nothing(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    path.write_text(
        "sku,name,price,updated_at\n"
        "P-1,Bracket,12.5,2025-01-01\n"
        "P-2,Hinge,cheap,2025-01-01\n"  # wrong type
        ",Nameless,1,2025-01-01\n"  # missing key
        "P-1,Bracket again,13,2025-01-01\n"  # duplicate key
        "P-4,Bolt,0.2,2025-01-01\n"
    )
    mapping = parse_mapping(MAPPING, core, "catalogue.yaml")
    connector = Connector("catalogue", mapping, lambda e: FileSource(path, key="sku", watermark="updated_at"))
    report = twin.engine().run(connector, "full")
    assert report.counts["created"] == 2 and report.counts["quarantined"] == 3
    rules = {(q.record_key, q.rule) for q in QuarantineStore(twin.state_url).rows("catalogue")}
    assert rules == {("P-2", "cast:double"), ("products.csv:row4", "missing-key"), ("P-1", "duplicate-key")}
    before = snapshot(twin.store)
    path.write_text('sku,name,price,updated_at\nP-1,"unterminated,12.5,2025-01-01\n')
    with pytest.raises(SourceError, match="products.csv"):
        twin.engine().run(connector, "full")
    assert snapshot(twin.store) == before  # nothing deleted or damaged by the refused run
