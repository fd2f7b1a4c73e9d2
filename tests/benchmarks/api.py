"""Benchmark: the governed GraphQL API over HTTP (uvicorn in a subprocess) on a sample-sized twin graph.

Usage: python tests/benchmarks/api.py [--twins 3000] [--requests 1500] [--concurrency 16]
Prints one JSON line per figure: p50/p99 latency and requests/s at concurrency 16 for a by-uid lookup, a 3-level
20-row query, an impact query and an aggregate; the 3-level query's latency against the same data fetched with
direct Cypher; and policy on (architect token) against an admin token.
Goals (issue 7): 3-level p99 <= 50 ms and >= 300 requests/s; policy overhead <= 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from governance.tokens import LocalIssuer  # noqa: E402
from graph.embedded import stop_embedded  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from tests.benchmarks.synthetic_enterprise import batches, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
THREE_LEVELS = ("query ThreeLevels { employees(first: 20) { nodes { uid name "
                "worksIn { nodes { uid name partOf { nodes { uid name } } } } } } }")
DIRECT = ("MATCH (n:Employee) WITH n ORDER BY n.uid LIMIT 20 RETURN n.uid, n.name, "
          "[(n)-[:worksIn]->(u:Twin) | [u.uid, u.name, [(u)-[:partOf]->(p:Twin) | [p.uid, p.name]]]]")


def emit(**figures: object) -> None:
    """Print one JSON line."""
    print(json.dumps({"benchmark": "api", **figures}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(url: str, token: str, bodies: list[dict[str, object]], requests: int, concurrency: int) -> dict[str, float]:
    """Send `requests` POSTs (cycling through `bodies`) with `concurrency` in flight; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        for body in bodies[:concurrency]:  # warm-up: parse/validation caches, connections
            await client.post("/graphql", json=body)

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                started = time.perf_counter()
                response = await client.post("/graphql", json=bodies[i % len(bodies)])
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200 or "errors" in response.json():
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"p50_ms": round(statistics.median(latencies), 2), "p99_ms": round(_percentile(latencies, 0.99), 2),
            "requests_per_s": round(len(latencies) / wall, 1), "requests": len(latencies), "errors": errors}


def main() -> None:
    """Load the graph, start the server, measure, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="twin-api-bench-"))
    graph_dir = data_dir / "graph"
    ontology = load_core()
    store = GraphStore.open(f"falkordb+embedded://{graph_dir}", ontology, fsync="no")
    server: subprocess.Popen[bytes] | None = None
    try:
        enterprise = build(ontology, args.twins)
        for chunk in batches(enterprise.twins, 2000):
            store.upsert_twins(chunk)
        for chunk in batches(enterprise.links, 5000):
            store.upsert_links(chunk)
        emit(figure="graph", twins=len(enterprise.twins), links=len(enterprise.links))
        port = _free_port()
        env = {**os.environ, "TWIN_DATA_DIR": str(data_dir), "TWIN_GRAPH_URL": f"falkordb+embedded://{graph_dir}",
               "TWIN_DATABASE_URL": f"sqlite:///{data_dir / 'twin.db'}", "TWIN_GRAPH_FSYNC": "no",
               "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise SystemExit("the API server did not become ready")
        issuer = LocalIssuer(data_dir)
        admin, architect = issuer.issue_token("admin", sub="bench-admin"), issuer.issue_token("architect", sub="bench-arch")
        emps, machines = enterprise.uids["Employee"], enterprise.uids["Machine"]
        workloads = {
            "by_uid": [{"query": "query ByUid($u: ID!) { twin(uid: $u) { uid className ... on Employee { name "
                                 "employeeId } } }", "variables": {"u": u}} for u in emps[:200]],
            "three_level_20_rows": [{"query": THREE_LEVELS}],
            "impact": [{"query": "query Impact($u: ID!) { impact(uid: $u, maxDepth: 3) { depth twin { uid } } }",
                        "variables": {"u": m}} for m in machines[:50]],
            "aggregate": [{"query": "query Agg { aggregate(className: Employee, metrics: [{fn: COUNT}]) "
                                    "{ group metrics { name value } } }"}],
        }
        results: dict[str, dict[str, float]] = {}
        for name, bodies in workloads.items():
            results[name] = asyncio.run(_drive(url, admin, bodies, args.requests, args.concurrency))
            emit(figure=name, token="admin", concurrency=args.concurrency, **results[name])
        governed = asyncio.run(_drive(url, architect, workloads["three_level_20_rows"], args.requests, args.concurrency))
        emit(figure="three_level_20_rows", token="architect", concurrency=args.concurrency, **governed)
        base = results["three_level_20_rows"]
        emit(figure="policy_overhead_ratio", architect_over_admin_p50=round(governed["p50_ms"] / base["p50_ms"], 3),
             architect_over_admin_throughput=round(base["requests_per_s"] / governed["requests_per_s"], 3), goal=1.10)
        direct = []
        for _ in range(300):
            started = time.perf_counter()
            store.backend.read(DIRECT)
            direct.append((time.perf_counter() - started) * 1000)
        direct_p50 = statistics.median(direct)
        emit(figure="direct_cypher_three_level", p50_ms=round(direct_p50, 3),
             api_over_direct_p50=round(base["p50_ms"] / direct_p50, 1),
             api_single_request_p50_ms=_single(url, admin))
        emit(figure="goals", three_level_p99_ms=base["p99_ms"], three_level_requests_per_s=base["requests_per_s"],
             p99_goal_ms=50, throughput_goal=300)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        store.close()
        stop_embedded(graph_dir)


def _single(url: str, token: str) -> float:
    """p50 of the 3-level query sent one at a time (no queueing): the API's own cost per request."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        times = []
        for _ in range(200):
            started = time.perf_counter()
            client.post("/graphql", json={"query": THREE_LEVELS})
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


if __name__ == "__main__":
    main()
