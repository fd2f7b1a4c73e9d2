"""A sync refuses what would wreck the twin: a run deleting more than its share of an entity's records (or all of
them after reading none) stops before deleting; oversized values, rows and files are refused with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connectors.file_source import FileSource
from connectors.limits import SizeLimits
from connectors.mapping import parse_mapping
from connectors.quarantine import QuarantineStore
from connectors.sync import Connector, MassDeletion, SyncError
from connectors.sync_state import SyncState
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, snapshot, twin  # noqa: F401

MAPPING = """\
system: catalogue
entities:
  - name: products
    class: Product
    uid: "catalogue:product:{sku}"
    key: sku
    properties:
      sku: sku
      name: name
"""
HEADER = "sku,name\n"


def products(path: Path, skus: range) -> Path:
    path.write_text(HEADER + "".join(f"P-{i},Part {i}\n" for i in skus))
    return path


def catalogue(core: Ontology, path: Path) -> Connector:
    return Connector("catalogue", parse_mapping(MAPPING, core, "catalogue.yaml"), lambda e: FileSource(path, key="sku"))


def twin_count(twin: TwinEnv) -> int:
    return twin.store.backend.read("MATCH (n:Product) RETURN count(n)")[0][0]


def test_a_header_only_50mb_file_deletes_nothing(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    path = products(tmp_path / "products.csv", range(10))
    connector = catalogue(core, path)
    twin.engine().run(connector, "full")
    before = snapshot(twin.store)
    with path.open("w") as out:  # a truncated export: the header, then 50 MB of nothing
        out.write(HEADER)
        out.write("\n" * (50 * 1024 * 1024))
    assert path.stat().st_size > 50 * 1024 * 1024
    with pytest.raises(SyncError, match="read 0 rows from a source that had 10 records.*nothing was deleted"):
        twin.engine().run(connector, "full")
    assert snapshot(twin.store) == before
    assert SyncState(twin.state_url).runs("catalogue", limit=1)[0].status == "blocked"

    path.write_text(HEADER)
    report = twin.engine().run(connector, "full", allow_deletions=1.0)  # the operator confirms
    assert report.counts["deleted"] == 10 and twin_count(twin) == 0


def test_a_run_deleting_more_than_its_share_stops_before_deleting(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    path = products(tmp_path / "products.csv", range(100))
    connector = catalogue(core, path)
    twin.engine().run(connector, "full")
    products(path, range(70))  # 30 of 100 gone: 30 % > 20 %
    with pytest.raises(MassDeletion, match=r"would delete 30 of its 100 records \(30%\).*--allow-deletions 30%"):
        twin.engine().run(connector, "full")
    assert twin_count(twin) == 100
    with pytest.raises(MassDeletion):  # a limit set lower than the share
        twin.engine(deletion_limit=0.25).run(connector, "full")
    assert twin.engine().run(connector, "full", allow_deletions=0.3).counts["deleted"] == 30
    products(path, range(56))  # 14 of 70: within the default share
    assert twin.engine().run(connector, "full").counts["deleted"] == 14
    products(path, range(50))  # 6 of 56 (11 %) with a share of 5 %: within the floor of 10 records
    assert twin.engine(deletion_limit=0.05).run(connector, "full").counts["deleted"] == 6
    assert twin_count(twin) == 50


def test_a_50mb_cell_is_quarantined_with_the_reason_and_the_rest_synced(
    core: Ontology, twin: TwinEnv, tmp_path: Path
) -> None:
    path = tmp_path / "products.csv"
    with path.open("w") as out:
        out.write(HEADER + "P-1,Bracket\nP-2,")
        out.write("x" * (50 * 1024 * 1024))
        out.write("\nP-3,Bolt\n")
    report = twin.engine().run(catalogue(core, path), "full")
    assert report.counts["created"] == 2 and report.counts["quarantined"] == 1
    (row,) = QuarantineStore(twin.state_url).rows("catalogue")
    assert (row.record_key, row.field, row.rule) == ("P-2", "name", "size")
    assert f"{50 * 1024 * 1024:,} bytes, more than the 1,000,000" in row.message
    assert len(row.message) < 300 and len(str(row.raw)) < 300  # quoted as a short prefix, not stored whole
    assert twin.store.get("catalogue:product:P-2") is None
    assert os.path.getsize(str(twin.state_url).removeprefix("sqlite:///")) < 5 * 1024 * 1024


def test_oversized_rows_and_files_are_refused_by_name(core: Ontology, twin: TwinEnv, tmp_path: Path) -> None:
    path = tmp_path / "products.csv"
    path.write_text(HEADER + "P-1,Bracket\nP-2," + "y" * 600 + "\n")
    report = twin.engine(limits=SizeLimits(value_bytes=1_000, row_bytes=500)).run(catalogue(core, path), "full")
    assert report.counts["created"] == 1
    (row,) = QuarantineStore(twin.state_url).rows("catalogue")
    assert row.rule == "size" and row.field is None and "the row is" in row.message
    with pytest.raises(SyncError, match=r"catalogue/products: the file products.csv is \d+ bytes, more than the 100"):
        twin.engine(limits=SizeLimits(file_bytes=100)).run(catalogue(core, path), "full")


def test_twin_connect_run_stops_a_mass_deletion_and_allow_deletions_lets_it_through(
    core: Ontology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli.app import app
    from api.settings import get_settings
    from graph.embedded import stop_embedded

    data = tmp_path / "data"
    data.mkdir()
    (data / "catalogue.yaml").write_text(MAPPING + "    source: {path: products.csv}\n")
    path = products(data / "products.csv", range(40))
    (data / "connectors.yaml").write_text(
        f'connectors:\n  catalogue:\n    mapping: catalogue.yaml\n    source: {{kind: file, directory: "{data}"}}\n'
    )
    monkeypatch.setenv("TWIN_DATA_DIR", str(data))
    monkeypatch.setenv("TWIN_GRAPH_FSYNC", "no")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(app, ["connect", "run", "catalogue", "--full", "--json"]).exit_code == 0
        products(path, range(20))
        blocked = runner.invoke(app, ["connect", "run", "catalogue", "--full", "--json"])
        assert blocked.exit_code == 1
        assert "would delete 20 of its 40 records (50%)" in " ".join(blocked.output.split())
        bad = runner.invoke(app, ["connect", "run", "catalogue", "--full", "--allow-deletions", "half"])
        assert bad.exit_code == 2 and "percentage" in bad.output
        allowed = runner.invoke(app, ["connect", "run", "catalogue", "--full", "--json", "--allow-deletions", "50%"])
        assert allowed.exit_code == 0, allowed.output
        assert '"deleted": 20' in allowed.output
    finally:
        get_settings.cache_clear()
        stop_embedded(data / "graph")
