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

The API against its real limits (issue 25; `--only-overhead` measures just these), on the same data in one run:
- single_over_floor_plus_direct: the 3-level query's single-request p50 (one request at a time, httpx, admin token)
  over the HTTP floor's p50 (tests/benchmarks/api_floor.py: a bare Starlette endpoint returning the same bytes, the
  same uvicorn settings, the same client) plus the direct-Cypher p50 of the same data; the three are measured in
  alternating batches of 20 (both servers up), so that other load on the machine weighs on all alike. Goal <= 1.1.
- saturation_rps: the 3-level query with a compiled load generator (`wrk`, 16 connections, 2 threads) against one
  worker and against TWIN_API_WORKERS=2 (one line each).
- p99_at_half_saturation_ms: p99 at a constant arrival rate of half the one-worker saturation. No wrk2 here: `hey`
  with `-q` (a per-worker rate limit): 8 hey processes of one worker each at 1/8 of the rate, started 1/rate apart,
  so that their requests interleave evenly (one hey with 16 workers sends bursts of 16: its workers tick together).
  Goal <= 25 ms.
Each figure is skipped with a message when `wrk` or `hey` is not installed (Debian packages `wrk`, `hey`).
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
    parser.add_argument("--only-overhead", action="store_true", help="measure only the issue-25 figures")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each wrk/hey run")
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
        env = {
            **os.environ,
            "TWIN_DATA_DIR": str(data_dir),
            "TWIN_GRAPH_URL": f"falkordb+embedded://{graph_dir}",
            "TWIN_DATABASE_URL": f"sqlite:///{data_dir / 'twin.db'}",
            "TWIN_GRAPH_FSYNC": "no",
            "PYTHONPATH": str(ROOT),
        }
        issuer = LocalIssuer(data_dir)
        admin, architect = (
            issuer.issue_token("admin", sub="bench-admin"),
            issuer.issue_token("architect", sub="bench-arch"),
        )
        if args.only_overhead:
            _overhead_figures(env, data_dir, store, admin, architect, args)
            return
        server, url = _serve("api.http.app:create_app", env, workers, args)
        # The driver holds the ontology and the generated enterprise: keep them out of its full GC passes, whose
        # pauses would otherwise be counted as server latency.
        gc.freeze()
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
        server.terminate()
        server.wait(timeout=30)
        server = None
        _overhead_figures(env, data_dir, store, admin, architect, args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        store.close()
        stop_embedded(graph_dir)


def _serve(
    target: str, env: dict[str, str], workers: int, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn serving `target` (an app factory) with the benchmark's settings, once /ready answers and every worker
    has started (a worker still building its schema would take the cores from the measurement): (process, URL)."""
    import threading

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info",
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
        stderr=subprocess.PIPE,
    )
    started = threading.Semaphore(0)

    def watch() -> None:  # uvicorn logs one line per worker whose app has started; other lines pass through
        assert server.stderr is not None
        for line in server.stderr:
            if b"Application startup complete" in line:
                started.release()
            elif b"INFO" not in line:
                sys.stderr.buffer.write(line)
                sys.stderr.flush()

    threading.Thread(target=watch, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    for _ in range(workers):
        if not started.acquire(timeout=max(deadline - time.time(), 0)):
            server.terminate()
            raise SystemExit(f"{target} did not start its {workers} worker(s)")
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.terminate()
    raise SystemExit(f"{target} did not become ready")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop a server started by `_serve`."""
    server.terminate()
    server.wait(timeout=30)


def _single_p50(url: str, token: str, requests: int = 400) -> tuple[float, bytes]:
    """p50 (ms) of the 3-level query sent one at a time, and the bytes of the last answer."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        times, body = [], b""
        for _ in range(20):  # warm-up: connection, caches
            client.post("/graphql", json={"query": THREE_LEVELS})
        for _ in range(requests):
            started = time.perf_counter()
            response = client.post("/graphql", json={"query": THREE_LEVELS})
            times.append((time.perf_counter() - started) * 1000)
            body = response.content
    if b'"errors"' in body:
        raise SystemExit(f"the 3-level query failed: {body[:300]!r}")
    return statistics.median(times), body


def _interleaved_p50s(
    url: str,
    floor_url: str,
    admin: str,
    architect: str,
    store: GraphStore,
    body: bytes,
    rounds: int = 20,
    batch: int = 20,
) -> tuple[float, float, float, float]:
    """p50s (ms) of the 3-level query sent one at a time to the API (admin, architect), of the floor's same bytes, and
    of the direct Cypher, measured in alternating batches so that other load on the machine weighs on all alike."""
    clients = {
        name: httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        for name, base, token in (("admin", url, admin), ("architect", url, architect), ("floor", floor_url, admin))
    }
    times: dict[str, list[float]] = {name: [] for name in (*clients, "direct")}
    payload = {"query": THREE_LEVELS}
    try:
        for client in clients.values():
            for _ in range(20):  # warm-up: connection, caches
                client.post("/graphql", json=payload)
        if clients["floor"].post("/graphql", json=payload).content != body:
            raise SystemExit("the floor does not answer the API's bytes")
        for _ in range(rounds):
            for name, client in clients.items():
                for _ in range(batch):
                    started = time.perf_counter()
                    answer = client.post("/graphql", json=payload)
                    times[name].append((time.perf_counter() - started) * 1000)
                    if answer.status_code != 200 or b'"errors"' in answer.content:
                        raise SystemExit(f"the 3-level query failed: {answer.content[:300]!r}")
            for _ in range(batch):
                started = time.perf_counter()
                store.backend.read(DIRECT)
                times["direct"].append((time.perf_counter() - started) * 1000)
    finally:
        for client in clients.values():
            client.close()
    admin_p50, architect_p50, floor_p50, direct_p50 = (
        statistics.median(times[name]) for name in ("admin", "architect", "floor", "direct")
    )
    return admin_p50, architect_p50, floor_p50, direct_p50


def _overhead_figures(
    env: dict[str, str], data_dir: Path, store: GraphStore, admin: str, architect: str, args: argparse.Namespace
) -> None:
    """single_over_floor_plus_direct, saturation_rps (one and two workers) and p99_at_half_saturation_ms."""
    import shutil

    load = [round(x, 2) for x in os.getloadavg()]
    server, url = _serve("api.http.app:create_app", env, 1, args)
    try:
        _, body = _single_p50(url, admin, requests=20)
        body_file = data_dir / "floor-body.json"
        body_file.write_bytes(body)
        floor_server, floor_url = _serve(
            "tests.benchmarks.api_floor:create_app", {**env, "TWIN_BENCH_FLOOR_BODY": str(body_file)}, 1, args
        )
        try:
            single_admin, single_architect, floor_p50, direct_p50 = _interleaved_p50s(
                url, floor_url, admin, architect, store, body
            )
        finally:
            _stop(floor_server)
        emit(
            figure="single_over_floor_plus_direct",
            value=round(single_admin / (floor_p50 + direct_p50), 3),
            single_p50_ms=round(single_admin, 3),
            single_architect_p50_ms=round(single_architect, 3),
            architect_over_floor_plus_direct=round(single_architect / (floor_p50 + direct_p50), 3),
            floor_p50_ms=round(floor_p50, 3),
            direct_cypher_p50_ms=round(direct_p50, 3),
            response_bytes=len(body),
            goal=1.1,
            load_average=load,
        )
        wrk, hey = shutil.which("wrk"), shutil.which("hey")
        if wrk is None:
            emit(figure="saturation_rps", skipped="wrk is not installed (apt-get install wrk)")
            emit(figure="p99_at_half_saturation_ms", skipped="needs wrk for the saturation rate")
            return
        one_worker = _wrk_rps(wrk, url, admin, args.seconds)
    finally:
        _stop(server)
    emit(figure="saturation_rps", value=one_worker, workers=1, tool="wrk -t2 -c16", load_average=_load())
    server, url = _serve("api.http.app:create_app", env, 2, args)
    try:
        two_workers = _wrk_rps(wrk, url, admin, args.seconds)
    finally:
        _stop(server)
    emit(
        figure="saturation_rps",
        value=two_workers,
        workers=2,
        over_one_worker=round(two_workers / one_worker, 2),
        tool="wrk -t2 -c16",
        load_average=_load(),
    )
    if hey is None:
        emit(figure="p99_at_half_saturation_ms", skipped="hey is not installed (apt-get install hey)")
        return
    server, url = _serve("api.http.app:create_app", env, 1, args)
    try:
        rate = one_worker / 2
        p99, p50, sent = _hey_at_rate(hey, url, admin, rate, args.seconds)
    finally:
        _stop(server)
    emit(
        figure="p99_at_half_saturation_ms",
        value=p99,
        p50_ms=p50,
        rate_per_s=round(rate, 1),
        requests=sent,
        workers=1,
        tool=f"{HEY_SENDERS} hey processes, -c 1 -q RATE/{HEY_SENDERS} each, started 1/RATE apart (no wrk2 here)",
        goal=25,
        load_average=_load(),
    )


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _wrk_rps(wrk: str, url: str, token: str, seconds: float) -> float:
    """Requests/s wrk reaches on the 3-level query (16 connections, 2 threads); every answer must be 2xx."""
    import re

    body = json.dumps({"query": THREE_LEVELS})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = [==[{body}]==]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    try:
        subprocess.run([wrk, "-t2", "-c16", "-d2s", "-s", script.name, f"{url}/graphql"], capture_output=True)
        out = subprocess.run(
            [wrk, "-t2", "-c16", f"-d{seconds:g}s", "-s", script.name, f"{url}/graphql"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{out}")
    return round(float(match.group(1)), 1)


HEY_SENDERS = 8


def _hey_at_rate(hey: str, url: str, token: str, rate: float, seconds: float) -> tuple[float, float, int]:
    """(p99 ms, p50 ms, requests) of the 3-level query arriving at a constant `rate` per second.

    hey's `-q` limits each of its workers to a rate, but the workers of one hey tick together, so `-c 16 -q rate/16`
    sends bursts of 16 at once. Here HEY_SENDERS hey processes, one worker each at rate/HEY_SENDERS, are started
    1/rate apart: their requests interleave into one even stream at `rate` (each sender's interval stays far above a
    request's latency, so none falls behind); every request's latency is read from hey's CSV output.
    """
    import csv
    import io

    command = [
        hey,
        "-z",
        f"{seconds:g}s",
        "-c",
        "1",
        "-q",
        f"{rate / HEY_SENDERS:.4f}",
        "-o",
        "csv",
        "-m",
        "POST",
        "-T",
        "application/json",
        "-H",
        f"Authorization: Bearer {token}",
        "-d",
        json.dumps({"query": THREE_LEVELS}),
        f"{url}/graphql",
    ]
    senders = []
    for _ in range(HEY_SENDERS):
        senders.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        time.sleep(1 / rate)
    latencies: list[float] = []
    for sender in senders:
        out, _ = sender.communicate(timeout=seconds + 60)
        if sender.returncode != 0:
            raise SystemExit(f"hey failed ({sender.returncode})")
        for row in csv.DictReader(io.StringIO(out)):
            if row["status-code"] != "200":
                raise SystemExit(f"hey saw a failed request: status {row['status-code']}")
            latencies.append(float(row["response-time"]) * 1000)
    if not latencies:
        raise SystemExit("hey sent no requests")
    return round(_percentile(latencies, 0.99), 2), round(statistics.median(latencies), 2), len(latencies)


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
