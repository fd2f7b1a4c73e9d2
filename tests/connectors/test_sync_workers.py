"""Sync worker processes (connectors/sync/workers.py): a run whose large reads are read, screened and mapped by worker
processes leaves exactly what an in-process run leaves — graph, history, lineage, ledger and run report — and a worker
that dies or a record a worker cannot map stops the run with a clear error and nothing half-written."""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.errors import SyncError
from connectors.limits import SizeLimits
from connectors.mapping import EntityMapping
from connectors.registry import ConnectorRegistry
from connectors.sample.enterprise import generate_sample, mutate_sample
from connectors.source import SourceError, SourceRecord, Watermark
from connectors.sql_source import SqlSource
from connectors.sync import Connector, SyncEngine, SyncReport
from connectors.sync.workers import key_slices
from connectors.sync_state import sync_record_table
from graph.embedded import stop_embedded
from graph.store import GraphStore
from ontology.model import Ontology
from tests.connectors.twin_fixtures import core, snapshot  # noqa: F401

PAGE = 37  # records per page: the sample's larger tables split into many key ranges
LIMITS = SizeLimits(value_bytes=400)  # a 500-character value is quarantined (by the worker that reads it)
BAD_LINE = 5  # sales order line whose quantity no cast takes
LONG_ORDER = 3  # sales order whose status is too long


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """The sample enterprise's databases with small pages, one unmappable and one oversized record."""
    data = tmp_path / "data"
    generate_sample(data / "sample", 60, seed=7)
    (data / "connectors.yaml").write_text(
        "connectors:\n"
        "  sample-erp:\n"
        "    mapping: mappings/sample_erp.yaml\n"
        f'    source: {{kind: sql, url: "sqlite:///{{data_dir}}/sample/erp.sqlite", page_size: {PAGE}}}\n',
        encoding="utf-8",
    )
    with sqlite3.connect(data / "sample" / "erp.sqlite") as con:
        con.execute("UPDATE sales_order_lines SET quantity = 'a dozen or so' WHERE so_line_id = ?", (BAD_LINE,))
        con.execute("UPDATE sales_orders SET status = ? WHERE so_id = ?", ("x" * 500, LONG_ORDER))
    return data


def _open(path: Path, ontology: Ontology) -> GraphStore:
    return GraphStore.open(
        f"falkordb+embedded://{path / 'graph'}", ontology, fsync="no", history_url=f"sqlite:///{path / 'state.db'}"
    )


@pytest.fixture
def twins(tmp_path: Path, core: Ontology) -> Iterator[tuple[GraphStore, GraphStore]]:  # noqa: F811
    """Two twins with history: one synced in-process, one with worker processes."""
    stores: list[GraphStore] = []
    try:
        for name in ("inline", "workers"):
            (tmp_path / name).mkdir()
            stores.append(_open(tmp_path / name, core))
        yield stores[0], stores[1]
    finally:
        for store in stores:
            store.close()
        for name in ("inline", "workers"):
            stop_embedded(tmp_path / name / "graph")


def _engine(store: GraphStore, workers: int) -> SyncEngine:
    assert store.history is not None  # the sync state lives in the history's database
    return SyncEngine(store, store.history.url, workers=workers, parallel_min_rows=50, limits=LIMITS)


def _report(report: SyncReport) -> dict[str, Any]:
    """A run's report without what differs between any two runs (run id, timings)."""
    return {
        "status": report.status,
        "error": report.error,
        "entities": [{**asdict(e), "examples": {k: list(v) for k, v in e.examples.items()}} for e in report.entities],
        "quarantined": [asdict(row) for row in report.quarantined_rows],
    }


def _differences(one: dict[str, Any], other: dict[str, Any]) -> list[Any]:
    """Where two reports differ (entity by entity), for the failure message."""
    found: list[Any] = [(k, one[k], other[k]) for k in ("status", "error") if one[k] != other[k]]
    found += [(a, b) for a, b in zip(one["entities"], other["entities"], strict=False) if a != b]
    if one["quarantined"] != other["quarantined"]:
        found.append(("quarantined", one["quarantined"], other["quarantined"]))
    return found


def _history(store: GraphStore) -> Counter[tuple[Any, ...]]:
    assert store.history is not None
    rows = store.history.rows_between(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    canonical = lambda text: None if text is None else json.dumps(json.loads(text), sort_keys=True)  # noqa: E731
    return Counter(
        (r.kind, r.op, r.uid, r.cls, r.link_type, r.target, canonical(r.before), canonical(r.after)) for r in rows
    )


def _lineage(engine: SyncEngine, run_id: str) -> Counter[tuple[Any, ...]]:
    return Counter(
        (
            r.twin_uid,
            r.property,
            r.value_digest,
            r.source_system,
            r.source_object,
            r.record_key,
            r.source_field,
            r.mapping_rule,
            r.transform,
            json.dumps(r.value, sort_keys=True),
        )
        for r in engine.lineage.records_of_run(run_id)
    )


def _ledger(engine: SyncEngine) -> set[tuple[str, ...]]:
    t = sync_record_table
    with engine.state.engine.connect() as conn:
        return {tuple(row) for row in conn.execute(select(t.c.connector, t.c.entity, t.c.record_key, t.c.digest))}


def test_a_run_with_worker_processes_leaves_what_an_in_process_run_leaves(
    sample: Path,
    twins: tuple[GraphStore, GraphStore],
    core: Ontology,  # noqa: F811
) -> None:
    registry = ConnectorRegistry.load(core, data_dir=sample)
    inline, workers = _engine(twins[0], 0), _engine(twins[1], 2)
    for mode, fraction in (("full", None), ("incremental", 0.3)):
        if fraction is not None:  # enough changed records that incremental reads go to the workers too
            with sqlite3.connect(sample / "sample" / "erp.sqlite") as con:  # (the mutation scales quantities)
                con.execute("UPDATE sales_order_lines SET quantity = 1 WHERE so_line_id = ?", (BAD_LINE,))
            mutate_sample(sample / "sample", fraction=fraction, seed=5)
            with sqlite3.connect(sample / "sample" / "erp.sqlite") as con:
                con.execute(
                    "UPDATE sales_order_lines SET quantity = 'a dozen or so', updated_at = '2030-01-01 00:00:00' "
                    "WHERE so_line_id = ?",
                    (BAD_LINE,),
                )
        for name in ("sample-hr", "sample-crm", "sample-erp"):
            one = inline.run(registry.connector(name), mode)  # type: ignore[arg-type]
            other = workers.run(registry.connector(name), mode)  # type: ignore[arg-type]
            assert _report(one) == _report(other), (name, mode, _differences(_report(one), _report(other)))
            assert _lineage(inline, one.run_id) == _lineage(workers, other.run_id), (name, mode)
            if (name, mode) == ("sample-erp", "full"):
                full_erp = other
        assert snapshot(twins[0]) == snapshot(twins[1]), mode
        assert _history(twins[0]) == _history(twins[1]), mode
        assert _ledger(inline) == _ledger(workers), mode
    # the bad records a worker met are quarantined as the run's own process quarantines them (compared above)
    refused = {(row.entity, row.record_key, row.rule) for row in full_erp.quarantined_rows}
    assert ("sales_orders", str(LONG_ORDER), "size") in refused
    assert any(entity == "sales_order_lines" and key == str(BAD_LINE) for entity, key, _ in refused)


class _DyingSource(SqlSource):
    """A SQL source whose worker process dies (as if killed) when it reads the key range holding `fatal`."""

    fatal = 600

    def read_slice(self, since: Watermark | None, low: int | None, high: int | None) -> Iterator[list[SourceRecord]]:
        if (low is None or low <= self.fatal) and (high is None or self.fatal < high):
            os._exit(9)
        return super().read_slice(since, low, high)


def _dying_connector(registry: ConnectorRegistry, sample: Path, kind: type[SqlSource] | None = None) -> Connector:
    mapping = registry.mapping("sample-erp")
    made = kind or _DyingSource

    def open_source(entity: EntityMapping) -> SqlSource:
        opts = dict(entity.source)
        return made(
            f"sqlite:///{sample / 'sample' / 'erp.sqlite'}",
            table=opts.get("table", None if "query" in opts else entity.name),
            query=opts.get("query"),
            key=entity.key,
            watermark=entity.watermark,
            related_watermarks=opts.get("related_watermarks") or (),
            key_table=opts.get("key_table"),
            page_size=PAGE,
            name=f"sample-erp:{entity.name}",
        )

    return Connector("sample-erp", mapping, open_source)


def test_a_worker_that_dies_stops_the_run_with_nothing_of_its_range_written(
    sample: Path,
    twins: tuple[GraphStore, GraphStore],
    core: Ontology,  # noqa: F811
) -> None:
    registry = ConnectorRegistry.load(core, data_dir=sample)
    engine = _engine(twins[1], 2)
    engine.run(registry.connector("sample-erp"), "full", entities=["products", "customers", "sales_orders"])
    with pytest.raises(SyncError, match=r"sample-erp/sales_order_lines: a sync worker process ended abruptly") as e:
        engine.run(_dying_connector(registry, sample), "full", entities=["sales_order_lines"])
    assert "the watermark was not advanced" in str(e.value)
    # what was written is whole: every ledger entry's link is in the graph, nothing at or after the dead range is
    links = {(t, s, d) for t, s, d, _ in snapshot(twins[1])[1]}
    kept = engine.state.ledger_keys("sample-erp", "sales_order_lines")
    assert kept and all(int(key) < _DyingSource.fatal for key in kept)
    waiting = {(p.type, p.source, p.target) for p in engine.state.pending()}  # an endpoint was quarantined
    entries = engine.state.ledger("sample-erp", "sales_order_lines", sorted(kept))
    for entry in entries.values():
        for t, s, d, _ in entry.payload["l"]:
            assert (t, s, d) in links or (t, s, d) in waiting
    assert "sales_order_lines" not in engine.state.watermarks("sample-erp")
    # the next run (a new pool of workers) reads the rest, as an in-process run does
    done = engine.run(registry.connector("sample-erp"), "full", entities=["sales_order_lines"])
    assert done.status == "completed"
    reference = _engine(twins[0], 0)
    reference.run(registry.connector("sample-erp"), "full", entities=["products", "customers", "sales_orders"])
    reference.run(registry.connector("sample-erp"), "full", entities=["sales_order_lines"])
    assert snapshot(twins[0]) == snapshot(twins[1])
    assert _ledger(reference) == _ledger(engine)


def test_key_ranges_cover_every_key_once() -> None:
    for first, last, rows, per in ((1, 10, 10, 3), (5, 1_000, 400, 37), (7, 7, 1, 5), (1, 100, 10, 1_000)):
        slices = key_slices(first, last, rows, per)
        assert slices[0][0] is None and slices[-1][1] is None  # keys added below or above meanwhile are read too
        assert len(slices) <= max(1, -(-rows // per))  # about `per` records a range
        for key in range(first - 3, last + 4):  # every key, also one outside the span, in exactly one range
            holders = [
                (low, high) for low, high in slices if (low is None or low <= key) and (high is None or key < high)
            ]
            assert len(holders) == 1, (first, last, key, slices)
    started = key_slices(50, 100, 20, 5, open_start=False)
    assert started[0][0] == 50 and started[-1][1] is None


class _UnsplittableInWorkers(SqlSource):
    """A SQL source whose reads by key range fail: a run that used the workers would fail."""

    def read_slice(self, since: Watermark | None, low: int | None, high: int | None) -> Iterator[list[SourceRecord]]:
        raise SourceError("read by key ranges", model=self.name)


def test_small_reads_stay_in_the_runs_process_and_large_ones_go_to_the_workers(
    sample: Path,
    twins: tuple[GraphStore, GraphStore],
    core: Ontology,  # noqa: F811
) -> None:
    registry = ConnectorRegistry.load(core, data_dir=sample)
    engine = _engine(twins[1], 2)
    engine.run(registry.connector("sample-erp"), "full", entities=["products", "customers", "sales_orders"])
    connector = _dying_connector(registry, sample, _UnsplittableInWorkers)
    with pytest.raises(SourceError, match="read by key ranges"):  # the worker's error comes back as raised
        engine.run(connector, "full", entities=["sales_order_lines"])
    engine.run(registry.connector("sample-erp"), "full", entities=["sales_order_lines"])
    with sqlite3.connect(sample / "sample" / "erp.sqlite") as con:  # fewer changes than a page: no worker
        con.execute(
            "UPDATE sales_order_lines SET quantity = 7, updated_at = '2031-01-01 00:00:00' WHERE so_line_id < 9"
        )
    report = engine.run(connector, "incremental", entities=["sales_order_lines"])
    assert report.status == "completed" and report.entity("sales_order_lines").read >= 8
