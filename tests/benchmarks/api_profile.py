"""Profile: where one request of the 3-level 20-row query spends its time inside the API process.

Usage: python tests/benchmarks/api_profile.py [--twins 3000] [--requests 500] [--html profile.html] [--role admin]
       [--query '{ __typename }']
The app is called in-process through ASGI (no client, no sockets on the HTTP side) on a synthetic graph, after a
warm-up, so every compiled plan, parsed document and remembered token is in place as on a serving process. Prints
the CPU per request and its p50 wall time as JSON lines, and with pyinstrument installed (`pip install pyinstrument`)
its call tree of those requests (text, or HTML with --html).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    """Load the graph, build the app, profile the requests."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--role", default="admin")
    parser.add_argument("--query", default=None, help="another query than the 3-level one")
    parser.add_argument("--html", type=Path, default=None, help="write pyinstrument's HTML report here")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="twin-api-profile-"))
    os.environ.update(
        TWIN_DATA_DIR=str(data_dir),
        TWIN_GRAPH_URL=f"falkordb+embedded://{data_dir / 'graph'}",
        TWIN_DATABASE_URL=f"sqlite:///{data_dir / 'twin.db'}",
        TWIN_GRAPH_FSYNC="no",
        TWIN_RUNTIME_ENABLED="false",
    )
    from api.http.app import create_app
    from api.runtime import Runtime
    from api.settings import Settings
    from governance.tokens import LocalIssuer
    from graph.embedded import stop_embedded
    from tests.benchmarks.api import THREE_LEVELS
    from tests.benchmarks.synthetic_enterprise import batches, build

    runtime = Runtime(Settings())
    try:
        enterprise = build(runtime.ontology, args.twins)
        for chunk in batches(enterprise.twins, 2000):
            runtime.store.upsert_twins(chunk)
        for chunk in batches(enterprise.links, 5000):
            runtime.store.upsert_links(chunk)
        app = create_app(runtime)
        token = LocalIssuer(data_dir).issue_token(args.role, sub="profile")
        body = json.dumps({"query": args.query or THREE_LEVELS}).encode()
        asyncio.run(_profile(app, token, body, args))
    finally:
        runtime.close()
        stop_embedded(data_dir / "graph")
        shutil.rmtree(data_dir, ignore_errors=True)


async def _profile(app: Any, token: str, body: bytes, args: argparse.Namespace) -> None:
    headers = [
        (b"host", b"profile"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def call() -> bytes:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "state": {},
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise SystemExit(f"the request failed: {sent[0]['status']} {sent[1].get('body', b'')[:300]!r}")
        return bytes(sent[1]["body"])

    async with app.router.lifespan_context(app):
        for _ in range(50):  # warm-up: documents, plans, tokens, connections
            answer = await call()
        if b'"errors"' in answer:
            raise SystemExit(f"the query failed: {answer[:300]!r}")
        try:
            from pyinstrument import Profiler
        except ImportError:
            profiler = None
            print("pyinstrument is not installed (pip install pyinstrument): timing only", file=sys.stderr)
        else:
            profiler = Profiler(interval=0.0002, async_mode="enabled")
            profiler.start()
        times = []
        cpu = time.process_time()
        for _ in range(args.requests):
            started = time.perf_counter()
            await call()
            times.append((time.perf_counter() - started) * 1000)
        cpu_ms = (time.process_time() - cpu) / args.requests * 1000
        if profiler is not None:
            profiler.stop()
            if args.html is not None:
                args.html.write_text(profiler.output_html(), encoding="utf-8")
            else:
                print(profiler.output_text(unicode=True, color=False), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "api_profile",
                "figure": "in_process_request",
                "cpu_ms_per_request": round(cpu_ms, 3),
                "p50_ms": round(statistics.median(times), 3),
                "requests": args.requests,
                "profiled": profiler is not None,
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
