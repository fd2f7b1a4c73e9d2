"""Benchmark: the governed GraphQL API over HTTP (uvicorn in a subprocess) on a sample-sized twin graph.

Usage: python tests/benchmarks/api.py [--twins 3000] [--requests 1500] [--concurrency 16] [--rounds 3]
       [--workers N] [--http auto|h11] [--loop auto|asyncio] [--driver streams|httpx]
       (workers default to TWIN_API_WORKERS)
Prints one JSON line per figure: p50/p99 latency and requests/s at concurrency 16 for a by-uid lookup, a 3-level
20-row query, an impact query and an aggregate; the 3-level query's latency against the same data fetched with
direct Cypher; and policy on (architect token) against an admin token.
Goals (issue 7): 3-level p99 <= 50 ms and >= 300 requests/s; policy overhead <= 10 %.
Also the p50 of a one-twin `upsertTwins` mutation, answered only once its audit record is stored (issue 23), sent one
at a time and at concurrency 16; `--only-mutation` measures just that figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402

from api.settings import Settings  # noqa: E402
from governance.tokens import LocalIssuer  # noqa: E402
from graph.embedded import stop_embedded  # noqa: E402
from graph.store import GraphStore  # noqa: E402
from ontology.core import load_core  # noqa: E402
from tests.benchmarks.synthetic_enterprise import batches, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
THREE_LEVELS = (
    "query ThreeLevels { employees(first: 20) { nodes { uid name "
    "worksIn { nodes { uid name partOf { nodes { uid name } } } } } } }"
)
DIRECT = (
    "MATCH (n:Employee) WITH n ORDER BY n.uid LIMIT 20 RETURN n.uid, n.name, "
    "[(n)-[:worksIn]->(u:Twin) | [u.uid, u.name, [(u)-[:partOf]->(p:Twin) | [p.uid, p.name]]]]"
)


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


async def _drive(
    url: str, token: str, bodies: list[dict[str, object]], requests: int, concurrency: int, driver: str = "streams"
) -> dict[str, float]:
    """Send `requests` POSTs (cycling through `bodies`) with `concurrency` in flight; latencies in ms.

    The default driver writes HTTP/1.1 on keep-alive asyncio streams, as load generators such as wrk do: on this
    2-core machine httpx's own CPU per request (it shares the cores with the server and FalkorDB) more than doubled
    the measured p99. `--driver httpx` measures through httpx instead.
    """
    send = _stream_sender if driver == "streams" else _httpx_sender
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    async with send(url, token, concurrency) as post:
        for i in range(concurrency):  # warm-up: parse/validation and plan caches, connections
            await post(bodies[i % len(bodies)])

        async def worker() -> None:
            nonlocal errors
            async with send(url, token, 1) as own:
                for i in counter:
                    started = time.perf_counter()
                    status, answer = await own(bodies[i % len(bodies)])
                    latencies.append((time.perf_counter() - started) * 1000)
                    if status != 200 or "errors" in answer:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "requests": len(latencies),
        "errors": errors,
    }


Post = Callable[[dict[str, object]], Awaitable[tuple[int, dict[str, Any]]]]


@contextlib.asynccontextmanager
async def _stream_sender(url: str, token: str, _connections: int) -> AsyncIterator[Post]:
    """POST /graphql over one keep-alive connection, written and read by hand (Content-Length responses)."""
    address = httpx.URL(url)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {address.host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
    )

    async def post(body: dict[str, object]) -> tuple[int, dict[str, Any]]:
        payload = json.dumps(body).encode()
        writer.write(f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        status_line, *headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), None)
        if length is None:
            raise SystemExit(f"the server answered without Content-Length: {status_line}")
        return int(status_line.split()[1]), json.loads(await reader.readexactly(length))

    try:
        yield post
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _httpx_sender(url: str, token: str, connections: int) -> AsyncIterator[Post]:
    """POST /graphql through an httpx.AsyncClient."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as client:

        async def post(body: dict[str, object]) -> tuple[int, dict[str, Any]]:
            response = await client.post("/graphql", json=body)
            return response.status_code, response.json()

        yield post


def main() -> None:
    """Load the graph, start the server, measure, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating admin/architect rounds of the 3-level query")
    parser.add_argument("--workers", type=int, default=None, help="uvicorn workers (default: TWIN_API_WORKERS)")
    parser.add_argument("--http", default="auto", help="uvicorn HTTP protocol: auto (httptools when installed), h11")
    parser.add_argument("--loop", default="auto", help="uvicorn event loop: auto (uvloop when installed), asyncio")
    parser.add_argument("--only-mutation", action="store_true", help="measure only the mutation figure")
    parser.add_argument(
        "--driver",
        default="streams",
        choices=["streams", "httpx"],
        help="load driver: hand-written HTTP/1.1 on asyncio streams (lean), or httpx",
    )
    args = parser.parse_args()
    workers = args.workers or Settings().api_workers
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
        emit(
            figure="server",
            workers=workers,
            driver=args.driver,
            http=_resolved(args.http, "httptools", "h11"),
            loop=_resolved(args.loop, "uvloop", "asyncio"),
            load_average=[round(x, 2) for x in os.getloadavg()],
        )
        port = _free_port()
        env = {
            **os.environ,
            "TWIN_DATA_DIR": str(data_dir),
            "TWIN_GRAPH_URL": f"falkordb+embedded://{graph_dir}",
            "TWIN_DATABASE_URL": f"sqlite:///{data_dir / 'twin.db'}",
            "TWIN_GRAPH_FSYNC": "no",
            "PYTHONPATH": str(ROOT),
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.http.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--workers",
                str(workers),
                "--http",
                args.http,
                "--loop",
                args.loop,
            ],
            cwd=ROOT,
            env=env,
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
        # The driver holds the ontology and the generated enterprise: keep them out of its full GC passes, whose
        # pauses would otherwise be counted as server latency.
        gc.freeze()
        issuer = LocalIssuer(data_dir)
        admin, architect = (
            issuer.issue_token("admin", sub="bench-admin"),
            issuer.issue_token("architect", sub="bench-arch"),
        )
        emps, machines = enterprise.uids["Employee"], enterprise.uids["Machine"]
        _mutation_figures(url, admin, machines, args)
        if args.only_mutation:
            return
        workloads = {
            "by_uid": [
                {
                    "query": "query ByUid($u: ID!) { twin(uid: $u) { uid className ... on Employee { name "
                    "employeeId } } }",
                    "variables": {"u": u},
                }
                for u in emps[:200]
            ],
            "three_level_20_rows": [{"query": THREE_LEVELS}],
            "impact": [
                {
                    "query": "query Impact($u: ID!) { impact(uid: $u, maxDepth: 3) { depth twin { uid } } }",
                    "variables": {"u": m},
                }
                for m in machines[:50]
            ],
            "aggregate": [
                {
                    "query": "query Agg { aggregate(className: Employee, metrics: [{fn: COUNT}]) "
                    "{ group metrics { name value } } }"
                }
            ],
        }
        results: dict[str, dict[str, float]] = {}
        for name, bodies in workloads.items():
            results[name] = asyncio.run(_drive(url, admin, bodies, args.requests, args.concurrency, args.driver))
            emit(figure=name, token="admin", concurrency=args.concurrency, **results[name])
        # Policy on vs off: admin and architect runs alternate, so that the load other processes put on the machine
        # weighs on both alike; the ratio is taken between the medians of the rounds.
        paired: dict[str, list[dict[str, float]]] = {"admin": [], "architect": []}
        for _ in range(args.rounds):
            for token_name, token in (("admin", admin), ("architect", architect)):
                paired[token_name].append(
                    asyncio.run(
                        _drive(
                            url, token, workloads["three_level_20_rows"], args.requests, args.concurrency, args.driver
                        )
                    )
                )
        medians = {
            name: {k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "requests_per_s")}
            for name, runs in paired.items()
        }
        emit(
            figure="three_level_20_rows",
            token="architect",
            concurrency=args.concurrency,
            rounds=args.rounds,
            **medians["architect"],
        )
        emit(
            figure="three_level_20_rows_paired_admin",
            token="admin",
            concurrency=args.concurrency,
            rounds=args.rounds,
            **medians["admin"],
        )
        single_admin, single_architect = _single_pair(url, admin, architect)
        emit(
            figure="policy_overhead_ratio",
            architect_over_admin_p50=round(medians["architect"]["p50_ms"] / medians["admin"]["p50_ms"], 3),
            architect_over_admin_throughput=round(
                medians["admin"]["requests_per_s"] / medians["architect"]["requests_per_s"], 3
            ),
            single_request_architect_over_admin_p50=round(single_architect / single_admin, 3),
            goal=1.10,
        )
        base = results["three_level_20_rows"]
        direct = []
        for _ in range(300):
            started = time.perf_counter()
            store.backend.read(DIRECT)
            direct.append((time.perf_counter() - started) * 1000)
        direct_p50 = statistics.median(direct)
        emit(
            figure="direct_cypher_three_level",
            p50_ms=round(direct_p50, 3),
            api_over_direct_p50=round(base["p50_ms"] / direct_p50, 1),
            api_single_request_p50_ms=_single(url, admin),
        )
        emit(
            figure="goals",
            load_average=[round(x, 2) for x in os.getloadavg()],
            three_level_p99_ms_first_run=base["p99_ms"],
            three_level_requests_per_s_first_run=base["requests_per_s"],
            three_level_p99_ms_median_of_rounds=medians["admin"]["p99_ms"],
            three_level_requests_per_s_median_of_rounds=medians["admin"]["requests_per_s"],
            p99_goal_ms=50,
            throughput_goal=300,
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        store.close()
        stop_embedded(graph_dir)


MUTATION = "mutation Rename($t: [TwinInput!]!) { upsertTwins(twins: $t) { created updated unchanged } }"


def _mutation_figures(url: str, token: str, machines: list[str], args: argparse.Namespace) -> None:
    """p50 of a one-twin upsert (a real change each time), one at a time and at the benchmark's concurrency."""
    bodies = [
        {
            "query": MUTATION,
            "variables": {"t": [{"uid": m, "className": "Machine", "properties": {"name": f"bench {m} {i}"}}]},
        }
        for i in range(4)
        for m in machines[:100]
    ]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        times = []
        for body in bodies[:300]:
            started = time.perf_counter()
            answer = client.post("/graphql", json=body).json()
            times.append((time.perf_counter() - started) * 1000)
            if "errors" in answer:
                raise SystemExit(f"the mutation failed: {answer['errors'][0]['message'][:200]}")
    emit(
        figure="mutation_upsert_one_twin_single",
        p50_ms=round(statistics.median(times), 2),
        p99_ms=round(_percentile(times, 0.99), 2),
        requests=len(times),
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    result = asyncio.run(_drive(url, token, bodies, min(args.requests, 800), args.concurrency, args.driver))
    emit(
        figure="mutation_upsert_one_twin",
        token="admin",
        concurrency=args.concurrency,
        **result,
        load_average=[round(x, 2) for x in os.getloadavg()],
    )


def _resolved(choice: str, fast: str, fallback: str) -> str:
    """What uvicorn's `auto` picks: the fast implementation when it is installed."""
    if choice != "auto":
        return choice
    return fast if importlib.util.find_spec(fast) is not None else fallback


def _single_pair(url: str, first: str, second: str, requests: int = 300) -> tuple[float, float]:
    """p50 of the 3-level query sent one at a time with two tokens in turn (the policy's own cost, no queueing)."""
    times: dict[str, list[float]] = {first: [], second: []}
    clients = {token: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) for token in times}
    try:
        for _ in range(requests):
            for token, client in clients.items():
                started = time.perf_counter()
                client.post("/graphql", json={"query": THREE_LEVELS})
                times[token].append((time.perf_counter() - started) * 1000)
    finally:
        for client in clients.values():
            client.close()
    return statistics.median(times[first]), statistics.median(times[second])


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
