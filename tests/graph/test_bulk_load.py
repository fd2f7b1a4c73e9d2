"""Loading a new graph in one bulk write: the same checks, history and answers as upserts, all or nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from graph import bulk
from graph.embedded import embedded_status
from graph.errors import BatchRejected, QueryError
from graph.model import Link, OrderBy, Twin
from graph.store import GraphStore
from tests.graph.contract_ontology import contract_ontology


def enterprise(size: int = 60) -> tuple[list[Twin], list[Link]]:
    """Units, employees with reporting lines, machines in a dependency chain, suppliers with lead times."""
    twins = [Twin("u-root", "Unit", {"name": "Root"}), Twin("u-a", "Unit", {"name": "A"})]
    links = [Link("partOf", "u-a", "u-root")]
    for i in range(size):
        twins.append(
            Twin(
                f"e{i}",
                "Employee",
                {
                    "name": f"Person {i}",
                    "employeeId": f"E{i}",
                    "age": 20 + i % 40,
                    "salary": 1000.5 * i,
                    "email": None if i % 3 else f"p{i}@x.test",
                },
            )
        )
        links.append(Link("worksIn", f"e{i}", "u-a" if i % 2 else "u-root"))
        if i:
            links.append(Link("reportsTo", f"e{i}", f"e{(i - 1) // 3}"))
        twins.append(
            Twin(
                f"m{i}",
                "Machine",
                {
                    "name": f"Machine {i}",
                    "status": "up" if i % 4 else "down",
                    "capacity": float(i),
                    "description": 'cell ünit "7"',
                },
            )
        )
        if i:
            links.append(Link("dependsOn", f"m{i}", f"m{i - 1}"))
        links.append(Link("operates", f"e{i}", f"m{i}"))
    twins.append(Twin("s-1", "Supplier", {"name": "Acme"}))
    twins.append(Twin("mat-1", "Material", {"name": "Steel"}))
    links.append(Link("supplies", "s-1", "mat-1", {"leadTimeDays": 12}))
    return twins, links


def test_a_bulk_load_answers_as_upserts_do(graph_data_dir: Path, tmp_path: Path) -> None:
    twins, links = enterprise()
    url = f"falkordb+embedded://{graph_data_dir}"
    loaded, summary = GraphStore.load(
        url, contract_ontology(), twins, links, graph_name="bulk", history_url=f"sqlite:///{tmp_path / 'bulk.db'}"
    )
    upserted = GraphStore.open(
        url, contract_ontology(), graph_name="upserted", history_url=f"sqlite:///{tmp_path / 'upserted.db'}"
    )
    try:
        assert summary.created == len(twins) + len(links)
        upserted.upsert_twins(twins)
        upserted.upsert_links(links)
        assert loaded.stats() == upserted.stats()
        for uid in ("e7", "e0", "m3", "u-a", "s-1", "mat-1"):
            assert loaded.get(uid) == upserted.get(uid) is not None
        page = [(t.uid, t.properties) for t in loaded.find("Employee", order_by=[OrderBy("salary")], limit=500).items]
        assert page == [
            (t.uid, t.properties) for t in upserted.find("Employee", order_by=[OrderBy("salary")], limit=500).items
        ]
        assert [(h.twin.uid, h.depth) for h in loaded.impact("m0", 5)] == [
            (h.twin.uid, h.depth) for h in upserted.impact("m0", 5)
        ]
        assert loaded.query("MATCH (:Twin {uid: 's-1'})-[e:supplies]->() RETURN e.leadTimeDays") == [[12]]
        assert [(h.op, h.after) for h in loaded.history_of("m3") if h.kind == "twin"] == [
            ("create", {"name": "Machine 3", "status": "up", "capacity": 3.0, "description": 'cell ünit "7"'})
        ]
        with pytest.raises(QueryError):  # the uid constraint holds over what the bulk write created
            loaded.backend.write("CREATE (:Twin:Unit {uid: 'u-a', _class: 'Unit'})")
        loaded.upsert_links([Link("operates", "e1", "m2")])  # and the store goes on as any other
        assert {n.uid for n in loaded.neighbours("e1", ["operates"], direction="out").nodes} == {"e1", "m1", "m2"}
    finally:
        loaded.close()
        upserted.close()


def test_a_rejected_load_writes_nothing(graph_data_dir: Path) -> None:
    twins, links = enterprise(10)
    url = f"falkordb+embedded://{graph_data_dir}"
    bad = [*links, Link("worksIn", "m1", "u-a"), Link("operates", "e1", "nobody")]
    with pytest.raises(BatchRejected) as caught:
        GraphStore.load(url, contract_ontology(), [*twins, Twin("x", "Employee", {"name": "No id"})], bad)
    assert {v.rule for v in caught.value.violations} == {"domain", "missing-endpoint", "required"}
    with GraphStore.open(url, contract_ontology()) as store:
        assert store.stats().twins == 0


def test_an_existing_graph_is_upserted_not_bulk_loaded(graph_data_dir: Path) -> None:
    twins, links = enterprise(10)
    url = f"falkordb+embedded://{graph_data_dir}"
    with GraphStore.open(url, contract_ontology()) as store:
        store.upsert_twins(twins[:5])
    store, summary = GraphStore.load(url, contract_ontology(), twins, links)
    try:
        assert (summary.created, summary.unchanged) == (len(twins) - 5 + len(links), 5)
        again = GraphStore.load(url, contract_ontology(), twins, links)
        again[0].close()
        assert again[1].unchanged == len(twins) + len(links)
        assert store.stats().twins == len(twins)
    finally:
        store.close()


def test_a_load_cut_into_many_commands_keeps_every_edge_on_its_nodes(
    graph_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "TOKEN_BYTES", 200)  # a few rows per token
    monkeypatch.setattr(bulk, "COMMAND_BYTES", 1000)  # a few tokens per command
    twins, links = enterprise(40)
    store, _ = GraphStore.load(f"falkordb+embedded://{graph_data_dir}", contract_ontology(), twins, links)
    try:
        got = sorted(tuple(row) for row in store.query("MATCH (a:Twin)-[e]->(b:Twin) RETURN type(e), a.uid, b.uid"))
        assert got == sorted((link.type, link.source, link.target) for link in links)
    finally:
        store.close()


def test_a_bulk_load_survives_a_killed_server(graph_data_dir: Path) -> None:
    twins, links = enterprise(30)
    url = f"falkordb+embedded://{graph_data_dir}"
    store, _ = GraphStore.load(url, contract_ontology(), twins, links)
    before = store.stats()
    status = embedded_status(graph_data_dir)
    assert status is not None
    os.kill(status.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while embedded_status(graph_data_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    store.close()
    with GraphStore.open(url, contract_ontology()) as reopened:
        assert reopened.stats() == before


def test_the_bulk_format_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(QueryError, match="NUL"):
        bulk.bulk_commands("g", [bulk.NodeGroup(("Twin",), ("uid",), [["a\x00"]])], [])
    with pytest.raises(QueryError, match="64-bit"):
        bulk.bulk_commands("g", [bulk.NodeGroup(("Twin",), ("n",), [[2**70]])], [])
    with pytest.raises(QueryError, match="colon"):
        bulk.bulk_commands("g", [bulk.NodeGroup(("Twin", "a:b"), ("uid",), [["u"]])], [])
    with pytest.raises(QueryError, match="dict"):
        bulk.bulk_commands("g", [bulk.NodeGroup(("Twin",), ("n",), [[{"a": 1}]])], [])
    (command,) = bulk.bulk_commands(
        "g", [bulk.NodeGroup(("Twin", "Unit"), ("uid",), [["u"], ["v"]])], [bulk.EdgeGroup("partOf", (), [[0, 1]])]
    )
    assert command[:7] == ["GRAPH.BULK", "g", "BEGIN", 2, 1, 1, 1]
