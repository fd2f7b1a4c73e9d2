"""Benchmark: load a synthetic enterprise into the embedded twin graph; compare with a raw UNWIND...MERGE.

Usage: python tests/benchmarks/graph_load.py [--twins 100000] [--batch 20000] [--fsync always]
Prints one JSON line per figure: initial load items/s (a new graph in one bulk write, and the same data as batched
upserts), incremental upsert items/s, the raw-client baseline and our
ratio to it, the ceilings of plain Cypher (UNWIND ... CREATE) and of GRAPH.BULK (both without validation,
existence checks or history), and memory (server RSS, Python peak RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph.backends import FalkorBackend  # noqa: E402
from graph.bulk import EdgeGroup, NodeGroup, bulk_commands  # noqa: E402
from graph.cypher import labels_clause  # noqa: E402
from graph.embedded import embedded_status, stop_embedded  # noqa: E402
from graph.model import Link, Twin  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from tests.benchmarks.synthetic_enterprise import batches, build  # noqa: E402


def emit(**figures: object) -> None:
    """Print one JSON line."""
    print(json.dumps({"benchmark": "graph_load", **figures}), flush=True)


def load(store: GraphStore, twins: list[Twin], links: list[Link], batch: int) -> float:
    """Upsert everything through the GraphStore; returns seconds."""
    start = time.perf_counter()
    for chunk in batches(twins, batch):
        store.upsert_twins(chunk, actor="benchmark", source="synthetic")
    for chunk in batches(links, batch):
        store.upsert_links(chunk, actor="benchmark", source="synthetic")
    return time.perf_counter() - start


def raw_merge(graph, ontology, twins: list[Twin], links: list[Link], batch: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The baseline: plain UNWIND ... MERGE through the raw falkordb client; returns (node s, edge s)."""
    return _raw_load(
        graph,
        ontology,
        twins,
        links,
        batch,
        "UNWIND $rows AS r MERGE (n{labels} {{uid: r.uid}}) SET n += r",
        "UNWIND $rows AS r MATCH (a:Twin {{uid: r[0]}}), (b:Twin {{uid: r[1]}}) MERGE (a)-[:{rel}]->(b)",
    )


def raw_create(graph, ontology, twins: list[Twin], links: list[Link], batch: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The ceiling of plain Cypher: UNWIND ... CREATE of nodes, then of edges between nodes found by uid (no
    validation, no existence check, no history); returns (node s, edge s)."""
    return _raw_load(
        graph,
        ontology,
        twins,
        links,
        batch,
        "UNWIND $rows AS r CREATE (n{labels}) SET n = r",
        "UNWIND $rows AS r MATCH (a:Twin {{uid: r[0]}}) MATCH (b:Twin {{uid: r[1]}}) CREATE (a)-[:{rel}]->(b)",
    )


def raw_bulk(client, ontology, twins: list[Twin], links: list[Link]) -> float:  # type: ignore[no-untyped-def]
    """The ceiling of GRAPH.BULK: the same data into a new graph, no validation and no history; returns seconds."""
    start = time.perf_counter()
    by_class: dict[str, list[Twin]] = {}
    for t in twins:
        by_class.setdefault(t.cls, []).append(t)
    ids: dict[str, int] = {}
    nodes = []
    for cls, members in by_class.items():
        columns = tuple(dict.fromkeys(key for t in members for key in t.properties))
        for t in members:
            ids[t.uid] = len(ids)
        nodes.append(
            NodeGroup(
                ("Twin", *ontology.labels(cls)),
                ("uid", *columns),
                [[t.uid, *(t.properties.get(key) for key in columns)] for t in members],
            )
        )
    by_type: dict[str, list[list[int]]] = {}
    for link in links:
        by_type.setdefault(link.type, []).append([ids[link.source], ids[link.target]])
    edges = [EdgeGroup(rel, (), rows) for rel, rows in by_type.items()]
    with client.connection.pipeline(transaction=True) as pipe:
        for command in bulk_commands("raw_bulk_ceiling", nodes, edges):
            pipe.execute_command(*command)
        pipe.execute()
    return time.perf_counter() - start


def _raw_load(
    graph,
    ontology,
    twins: list[Twin],
    links: list[Link],
    batch: int,  # type: ignore[no-untyped-def]
    node_query: str,
    edge_query: str,
) -> tuple[float, float]:
    """Nodes by class, then edges by type, through the raw client with `node_query` / `edge_query` (templates
    with {labels} / {rel}); returns (node s, edge s)."""
    graph.query("CREATE INDEX FOR (n:Twin) ON (n.uid)")
    by_class: dict[str, list[dict[str, object]]] = {}
    for t in twins:
        by_class.setdefault(t.cls, []).append({"uid": t.uid, **t.properties})
    start = time.perf_counter()
    for cls, rows in by_class.items():
        query = node_query.format(labels=labels_clause(ontology.labels(cls)))
        for chunk in batches(rows, batch):
            graph.query(query, {"rows": chunk})
    nodes_s = time.perf_counter() - start
    by_type: dict[str, list[list[str]]] = {}
    for link in links:
        by_type.setdefault(link.type, []).append([link.source, link.target])
    start = time.perf_counter()
    for rel, rows in by_type.items():
        query = edge_query.format(rel=rel)
        for chunk in batches(rows, batch):
            graph.query(query, {"rows": chunk})
    return nodes_s, time.perf_counter() - start


def main() -> None:
    """Run the load benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--fsync", default="always", choices=["always", "everysec", "no"])
    parser.add_argument("--skip-raw", action="store_true", help="skip the raw MERGE baseline")
    args = parser.parse_args()

    ontology = load_core()
    data = build(ontology, args.twins)
    items = len(data.twins) + len(data.links)
    work = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    url = f"falkordb+embedded://{work / 'graph'}"
    start = time.perf_counter()  # a graph that does not exist yet: one validated bulk write, with history
    loaded, _ = GraphStore.load(
        url,
        ontology,
        data.twins,
        data.links,
        graph_name="bulk",
        history_url=f"sqlite:///{work / 'bulk-history.db'}",
        fsync=args.fsync,
    )
    bulk_seconds = time.perf_counter() - start
    loaded.close()
    emit(
        figure="initial_load_bulk",
        twins=len(data.twins),
        links=len(data.links),
        seconds=round(bulk_seconds, 2),
        items_per_s=round(items / bulk_seconds),
        fsync=args.fsync,
    )
    store = GraphStore.open(url, ontology, history_url=f"sqlite:///{work / 'history.db'}", fsync=args.fsync)
    try:
        seconds = load(store, data.twins, data.links, args.batch)
        emit(
            figure="initial_load_upserts",
            twins=len(data.twins),
            links=len(data.links),
            seconds=round(seconds, 2),
            items_per_s=round(items / seconds),
            batch=args.batch,
            fsync=args.fsync,
        )

        changed = [Twin(t.uid, t.cls, {**t.properties, "name": t.properties["name"] + " v2"}) for t in data.twins[::10]]
        start = time.perf_counter()
        for chunk in batches(changed, args.batch):
            store.upsert_twins(chunk, actor="benchmark")
        for chunk in batches(data.links, args.batch):
            store.upsert_links(chunk, actor="benchmark")
        inc = time.perf_counter() - start
        emit(
            figure="incremental_upsert",
            changed_twins=len(changed),
            unchanged_links=len(data.links),
            seconds=round(inc, 2),
            items_per_s=round((len(changed) + len(data.links)) / inc),
        )

        backend = store.backend
        assert isinstance(backend, FalkorBackend)
        status = embedded_status(work / "graph")
        assert status is not None
        server = psutil.Process(status.pid)
        emit(
            figure="memory",
            server_rss_mb=round(server.memory_info().rss / 2**20),
            python_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        )
        if not args.skip_raw:
            raw = backend._client.select_graph("raw_baseline")  # same server, separate graph
            nodes_s, edges_s = raw_merge(raw, ontology, data.twins, data.links, args.batch)
            raw_items_s = items / (nodes_s + edges_s)
            emit(
                figure="raw_merge_baseline",
                nodes_per_s=round(len(data.twins) / nodes_s),
                edges_per_s=round(len(data.links) / edges_s),
                items_per_s=round(raw_items_s),
            )
            emit(
                figure="ratio_to_raw_merge",
                bulk=round((items / bulk_seconds) / raw_items_s, 2),
                upserts=round((items / seconds) / raw_items_s, 2),
            )
            ceiling = backend._client.select_graph("raw_create_ceiling")
            nodes_s, edges_s = raw_create(ceiling, ontology, data.twins, data.links, args.batch)
            ceiling_items_s = items / (nodes_s + edges_s)
            emit(
                figure="raw_create_ceiling",
                nodes_per_s=round(len(data.twins) / nodes_s),
                edges_per_s=round(len(data.links) / edges_s),
                items_per_s=round(ceiling_items_s),
                bulk_ratio=round((items / bulk_seconds) / ceiling_items_s, 2),
                upserts_ratio=round((items / seconds) / ceiling_items_s, 2),
            )
            bulk_ceiling_s = raw_bulk(backend._client, ontology, data.twins, data.links)
            emit(
                figure="raw_bulk_ceiling",
                items_per_s=round(items / bulk_ceiling_s),
                bulk_ratio=round((items / bulk_seconds) / (items / bulk_ceiling_s), 2),
            )
    finally:
        store.close()
        stop_embedded(work / "graph")


if __name__ == "__main__":
    main()
