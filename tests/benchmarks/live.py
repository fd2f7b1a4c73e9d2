"""Benchmark: the living twin end to end, against the real services running here. One JSON line per figure.

    .venv/bin/python -m tests.benchmarks.live [--samples 30] [--mqtt-idle-timeout S] [--changes 5000]
        [--rounds 3] [--batch 500] [--window 256] [--subscribers 100] [--fanout-changes 5]
        [--only mqtt|sql-push|sql|...]

- mqtt_to_event_p99_ms: a machine reading published to Mosquitto (127.0.0.1:1883) -> synced by the runtime (an MQTT
  connector on a `continuous` schedule with the default batch settings: a batch is synced once the flow is quiet for
  `batch_quiet` 0.02 s, at most `max_batch_delay` 0.25 s after its first message) -> the change's CloudEvent
  received from a NATS JetStream route (an ordered JetStream consumer). One reading at a time. Then
  mqtt_runtime_idle_cpu_percent: the process's CPU time over 10 s in which nothing is published (the runtime and the
  route idle), as a share of one core. `--mqtt-idle-timeout` sets the connector's idle_timeout (default 1 s).
- sql_change_to_event_p99_ms: a row committed in a PostgreSQL source (127.0.0.1:5432, db `test`) with push (the
  notify trigger `twin connect push-sql --install` installs; the schedule polls every 30 s, so every change is
  pushed) -> the event received from the same route, timed from the commit.
- sql_poll_change_to_event_p99_ms: the same without push, the runtime polling every 1 s.
- feed_to_nats_events_per_s, raw_nats_publish_per_s, feed_to_nats_ratio: N changes written to the graph in bulk,
  then a fresh RouteRuntime delivering all of them to NATS (lease, connection, feed read, policy gate, filter,
  CloudEvents, PubAcks, cursor), timed from its start until its cursor reaches the feed's head; against a plain
  nats-py JetStream publisher with the same in-flight window and batch, its bodies encoded before the clock starts
  (tests/benchmarks/event_endpoints.py), in the same round. Each round measures both, in the other order every
  second round; the rates are the medians of the rounds and the ratio the median of the rounds' ratios (per-round
  values and the 1-minute load average at each round are in the JSON lines: on a shared machine the load moves).
  The route keeps several pages in flight and publishes on JetStream's wire protocol with one reply inbox and its
  PubAcks counted per batch (connectors/events/nats_endpoint.py), so it is also measured against the fastest plain
  publisher nats-py offers: raw_nats_publish_async_per_s (`publish_async`, the same
  window, no batch barrier) and feed_to_nats_async_ratio, in the same rounds.
- subscription_fanout_p99_ms: 100 WebSocket subscribers (graphql-transport-ws, `websockets` client) on a real
  uvicorn server, one change committed -> p99 over subscribers and changes of the time from the start of the write
  until a subscriber received the change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's packages, not this folder's scripts

import nats
import psycopg
from nats.errors import TimeoutError as NatsTimeout

from api.runtime import Runtime
from api.settings import Settings
from connectors.message_batches import MAX_DELAY_SECONDS, QUIET_SECONDS
from connectors.route_delivery import RouteCursors
from graph.embedded import stop_embedded
from graph.model import Twin
from tests.benchmarks.event_endpoints import make_events, raw_publish, raw_publish_async

NATS_URL = "nats://127.0.0.1:4222"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
MQTT_MAPPING = """\
system: benchtelemetry
entities:
  - name: machine_telemetry
    class: Machine
    uid: "bench:machine:{{topic_2}}"
    update_only: true
    ledger: false
    source: {{topic: "{topic}/+", time_field: ts}}
    properties:
      status:
        field: state
        lookup: {{map: {{running: operational, idle: operational, down: down, maintenance: maintenance}}}}
"""
SQL_MAPPING = """\
system: benchplant
entities:
  - name: machines
    class: Machine
    uid: "benchsql:machine:{{code}}"
    key: code
    watermark: updated_at
    source: {{table: {table}}}
    properties:
      name: name
      status: status
"""


def emit(figure: str, value: float, **extra: object) -> None:
    """One JSON line per figure, with the load average."""
    load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    print(
        json.dumps({"benchmark": "live", "figure": figure, "value": round(value, 3), **extra, "load_average": load}),
        flush=True,
    )


def p99(samples: list[float]) -> float:
    """The 99th percentile (nearest rank) of `samples`."""
    ordered = sorted(samples)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until `condition` holds; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


async def manage_stream(stream: str, prefix: str, create: bool) -> None:
    """Create (or delete) a JetStream stream capturing PREFIX.>."""
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        if create:
            await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
        else:
            await js.delete_stream(stream)
    finally:
        await nc.close()


class Bench:
    """A fresh data directory, its runtime and the NATS streams of one benchmark run."""

    def __init__(self, root: Path) -> None:
        self.data = root / "twin"
        self.data.mkdir()
        self.runtime = Runtime(settings=Settings(data_dir=self.data, runtime_lease_seconds=3))
        tag = uuid.uuid4().hex[:8]
        self.stream, self.prefix = f"LIVE_{tag.upper()}", f"live-{tag}"
        self.raw_stream, self.raw_prefix = f"LIVERAW_{tag.upper()}", f"live-raw-{tag}"

    def routes(self, name: str, batch: int = 200) -> None:
        """routes.yaml with one route `name` to this run's stream."""
        (self.data / "routes.yaml").write_text(
            f"routes:\n  {name}:\n    endpoint: {NATS_URL}/{self.stream}/{self.prefix}\n    role: architect\n"
            f"    batch: {batch}\n"
        )

    def close(self) -> None:
        """Close the runtime and stop its embedded graph."""
        self.runtime.close()
        stop_embedded(self.data / "graph")


async def await_event(sub, subject: str, status: str, timeout: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    """perf_counter() when the event setting `subject`'s status to `status` arrives (other events are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await sub.next_msg(timeout=max(0.01, deadline - time.monotonic()))
        event = json.loads(msg.data)
        if (
            event["subject"] == subject
            and {"op": "replace" if event["type"] == "twin.updated" else "add", "path": "/status", "value": status}
            in event["data"]["patch"]
        ):
            return time.perf_counter()


async def connector_latencies(
    bench: Bench, connector: str, samples: int, change: Callable[[int], tuple[str, str]], idle_seconds: float = 0.0
) -> list[float]:
    """Run `connector` and the route; `change(i)` makes one source change and returns the uid it must change and
    the status it must give the twin. With `idle_seconds`, the process's CPU share over that long with no change is
    appended after the latencies."""
    live = bench.runtime.sync_runtime([connector])
    routes = bench.runtime.route_runtime(holder=live.holder)
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    sub = await js.subscribe(
        f"{bench.prefix}.>", stream=bench.stream, ordered_consumer=True, deliver_policy=nats.js.api.DeliverPolicy.NEW
    )
    live.start()
    routes.start()
    wait_for(lambda: routes.status()[0].cursor >= bench.runtime.store.feed.head(), 60, "the route to catch up")
    latencies: list[float] = []
    try:
        for i in range(samples + 3):  # three to warm up
            await asyncio.sleep(0.1 + (i % 5) * 0.05)  # readings at uneven moments against the poll and the runs
            start = time.perf_counter()
            uid, status = await asyncio.to_thread(change, i)
            committed = time.perf_counter() if connector.startswith("bench-sql") else start
            try:
                received = await await_event(sub, uid, status, timeout=3.0 if i < 3 else 10.0)
            except NatsTimeout:
                if i < 3:  # a warm-up reading sent before the connector subscribed is lost; the next one counts
                    continue
                raise RuntimeError(
                    f"no event for {uid} within 10 s; connector status {live.status()}, routes {routes.status()}"
                ) from None
            if i >= 3:
                latencies.append((received - committed) * 1000)
        if idle_seconds:
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.sleep(idle_seconds)
            latencies.append((time.process_time() - cpu) / (time.perf_counter() - wall) * 100)
    finally:
        live.stop()
        routes.stop()
        await nc.close()
    return latencies


def mqtt_figure(bench: Bench, samples: int, idle: float | None) -> None:
    """mqtt_to_event_p99_ms with the connector's default batch settings, and mqtt_runtime_idle_cpu_percent."""
    import paho.mqtt.client as mqtt

    topic = f"bench/{uuid.uuid4().hex[:8]}"
    (bench.data / "bench_telemetry.yaml").write_text(MQTT_MAPPING.format(topic=topic))
    (bench.data / "connectors.yaml").write_text(
        "connectors:\n  bench-mqtt:\n    mapping: bench_telemetry.yaml\n    schedule: continuous\n"
        f"    source: {{kind: mqtt, host: 127.0.0.1, port: 1883, client_id: 'bench-{uuid.uuid4().hex[:8]}'"
        f"{'' if idle is None else f', idle_timeout: {idle}'}}}\n"
    )
    bench.runtime.store.upsert_twins([Twin("bench:machine:M1", "Machine", {"name": "Press", "status": "down"})])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="")
    client.connect("127.0.0.1", 1883, keepalive=30)
    client.loop_start()

    def reading(i: int) -> tuple[str, str]:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{i % 1000:03d}Z",
            "state": "running" if i % 2 == 0 else "down",
            "temperature_c": 40 + i % 7,
        }
        client.publish(f"{topic}/M1", json.dumps(body).encode(), qos=1).wait_for_publish(5)
        return "bench:machine:M1", "operational" if i % 2 == 0 else "down"

    try:
        measured = asyncio.run(connector_latencies(bench, "bench-mqtt", samples, reading, idle_seconds=10.0))
    finally:
        client.loop_stop()
        client.disconnect()
    latencies, idle_cpu = measured[:-1], measured[-1]
    settings = {
        "mqtt_idle_timeout_s": 1.0 if idle is None else idle,
        "batch_quiet_s": QUIET_SECONDS,
        "max_batch_delay_s": MAX_DELAY_SECONDS,
        "settings": "default" if idle is None else "idle_timeout set",
    }
    emit(
        "mqtt_to_event_p99_ms",
        p99(latencies),
        goal_ms=250,
        samples=len(latencies),
        median_ms=round(statistics.median(latencies), 1),
        schedule="continuous",
        **settings,
    )
    emit("mqtt_runtime_idle_cpu_percent", idle_cpu, seconds=10, **settings)


def sql_figure(bench: Bench, samples: int, push: bool) -> None:
    """sql_change_to_event_p99_ms (push) or sql_poll_change_to_event_p99_ms (polling every 1 s)."""
    from connectors.sql_push import SqlPush, install_triggers

    table = f"bench_machines_{uuid.uuid4().hex[:8]}"
    name = "bench-sql-push" if push else "bench-sql"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id serial PRIMARY KEY, code text, name text, status text, "
            "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
    if push:
        install_triggers(SqlPush(name, POSTGRES_URL, f"twin_{name}"), [(None, table)])
    (bench.data / "bench_sql.yaml").write_text(SQL_MAPPING.format(table=table))
    (bench.data / "connectors.yaml").write_text(
        f"connectors:\n  {name}:\n    mapping: bench_sql.yaml\n    schedule: {'30s' if push else '1s'}\n"
        f"    source: {{kind: sql, url: '{POSTGRES_URL}', push: {'true' if push else 'false'}}}\n"
    )
    source = psycopg.connect(POSTGRES_URL, autocommit=True)

    def row(i: int) -> tuple[str, str]:
        code = f"{'P' if push else 'S'}{i}"  # new twins in each figure
        source.execute(
            f"INSERT INTO {table} (code, name, status) VALUES (%s, %s, %s)", (code, f"Saw {i}", "maintenance")
        )
        return f"benchsql:machine:{code}", "maintenance"

    try:
        latencies = asyncio.run(connector_latencies(bench, name, samples, row))
    finally:
        source.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    if push:
        emit(
            "sql_change_to_event_p99_ms",
            p99(latencies),
            goal_ms=500,
            samples=len(latencies),
            median_ms=round(statistics.median(latencies), 1),
            push="LISTEN/NOTIFY",
            poll_interval_s=30,
        )
    else:
        emit(
            "sql_poll_change_to_event_p99_ms",
            p99(latencies),
            goal_ms=1500,
            samples=len(latencies),
            median_ms=round(statistics.median(latencies), 1),
            poll_interval_s=1,
        )


def throughput_figures(bench: Bench, changes: int, rounds: int, batch: int, window: int) -> None:
    """feed_to_nats_events_per_s, raw_nats_publish_per_s and feed_to_nats_ratio."""
    if window != 256:
        raise SystemExit("--window: the route endpoint's in-flight window is 256 (EndpointOptions.max_in_flight)")
    bench.routes("bulk", batch)
    cursors = RouteCursors(bench.runtime.settings.resolved_database_url)
    feed_rates, raw_rates, ratios, loads = [], [], [], []
    async_rates, async_ratios = [], []
    for round_no in range(rounds):
        before, head = write_burst(bench, round_no, changes)
        events = make_events(changes, round_no * changes + 1)
        async_events = make_events(changes, (rounds + round_no) * changes + 1)
        loads.append(round(os.getloadavg()[0], 2))
        if round_no % 2:  # the other order every second round, so a load that drifts favours neither
            raw = raw_rate(events, bench.raw_prefix, window, batch)
            raw_async = raw_async_rate(async_events, bench.raw_prefix, window)
            feed = route_rate(bench, cursors, before, head)
        else:
            feed = route_rate(bench, cursors, before, head)
            raw_async = raw_async_rate(async_events, bench.raw_prefix, window)
            raw = raw_rate(events, bench.raw_prefix, window, batch)
        feed_rates.append(feed)
        raw_rates.append(raw)
        ratios.append(feed / raw)
        async_rates.append(raw_async)
        async_ratios.append(feed / raw_async)
    common = {"changes": changes, "batch": batch, "window": window, "rounds": rounds}
    emit(
        "feed_to_nats_events_per_s",
        statistics.median(feed_rates),
        **common,
        per_round=[round(r) for r in feed_rates],
        load_average_1m_per_round=loads,
    )
    emit("raw_nats_publish_per_s", statistics.median(raw_rates), **common, per_round=[round(r) for r in raw_rates])
    emit(
        "feed_to_nats_ratio",
        statistics.median(ratios),
        goal=0.75,
        **common,
        per_round=[round(r, 3) for r in ratios],
        note="median of the rounds' ratios (each round measures both)",
    )
    emit(
        "raw_nats_publish_async_per_s",
        statistics.median(async_rates),
        **common,
        per_round=[round(r) for r in async_rates],
    )
    emit(
        "feed_to_nats_async_ratio",
        statistics.median(async_ratios),
        **common,
        per_round=[round(r, 3) for r in async_ratios],
        note="against nats-py publish_async with the same window and no batch barrier",
    )


def write_burst(bench: Bench, round_no: int, changes: int) -> tuple[int, int]:
    """Write `changes` new twins in bulk writes of 1,000; the feed's head before and after."""
    before = bench.runtime.store.feed.head()
    for start in range(0, changes, 1_000):
        bench.runtime.store.upsert_twins(
            [
                Twin(f"bulk:{round_no}:{i}", "Machine", {"name": f"Machine {i}", "status": "operational"})
                for i in range(start, min(changes, start + 1_000))
            ]
        )
    return before, bench.runtime.store.feed.head()


def raw_rate(events: list, prefix: str, window: int, batch: int) -> float:  # type: ignore[type-arg]
    """Events per second of the plain JetStream publisher (the garbage of what ran before collected first)."""
    gc.collect()
    return len(events) / asyncio.run(raw_publish(events, prefix, window, batch))


def raw_async_rate(events: list, prefix: str, window: int) -> float:  # type: ignore[type-arg]
    """Events per second of the plain `publish_async` publisher (the garbage of what ran before collected first)."""
    gc.collect()
    return len(events) / asyncio.run(raw_publish_async(events, prefix, window))


def route_rate(bench: Bench, cursors: RouteCursors, before: int, head: int) -> float:
    """Changes per second a fresh route runtime delivers from `before` to `head` (start, lease and connection
    included), timed until its cursor reaches the head (the garbage of the burst's writes collected first)."""
    cursors.rewind("bulk", before)
    routes = bench.runtime.route_runtime()
    gc.collect()
    started = time.perf_counter()
    routes.start()
    try:
        wait_for(lambda: routes.status()[0].cursor >= head, 600, "the route to reach the feed's head")
        elapsed = time.perf_counter() - started
    finally:
        routes.stop()
    if routes.status()[0].failures:
        raise RuntimeError(f"the route failed: {routes.status()[0].last_error}")
    return (head - before) / elapsed


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fanout_figure(bench: Bench, subscribers: int, changes: int) -> None:
    """subscription_fanout_p99_ms."""
    import uvicorn

    from api.http.app import create_app
    from governance.tokens import LocalIssuer

    (bench.data / "routes.yaml").unlink(missing_ok=True)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(bench.runtime, live=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="websockets-sansio",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60, "uvicorn to start")
    issuer = LocalIssuer(bench.data)
    tokens = [issuer.issue_token("architect", sub=f"bench-subscriber-{i}") for i in range(subscribers)]
    try:
        latencies = asyncio.run(_fanout(bench, port, tokens, changes))
    finally:
        server.should_exit = True
        thread.join(30)
    emit(
        "subscription_fanout_p99_ms",
        p99(latencies),
        goal_ms=250,
        subscribers=subscribers,
        changes=changes,
        samples=len(latencies),
        median_ms=round(statistics.median(latencies), 1),
    )


async def _fanout(bench: Bench, port: int, tokens: list[str], changes: int) -> list[float]:
    import websockets

    query = "subscription($a: Int) { changes(after: $a) { seq uid op } }"
    head = bench.runtime.store.feed.head()
    sockets = []
    try:
        for token in tokens:
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"], max_queue=None
            )
            sockets.append(ws)
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
            ack = json.loads(await ws.recv())
            if ack != {"type": "connection_ack"}:
                raise RuntimeError(f"subscriber refused: {ack}")
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"a": head}}})
            )
        await asyncio.sleep(1.0)  # every subscription is registered before the first change
        latencies: list[float] = []
        for i in range(changes):
            uid = f"fanout:{i}"

            async def receive(ws, uid: str = uid) -> float:  # type: ignore[no-untyped-def]
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("type") != "next":
                        raise RuntimeError(f"subscriber got {message}")
                    if message["payload"]["data"]["changes"]["uid"] == uid:
                        return time.perf_counter()

            waiting = [asyncio.create_task(receive(ws)) for ws in sockets]
            await asyncio.sleep(0.05)
            start = time.perf_counter()
            await asyncio.to_thread(
                bench.runtime.store.upsert_twins, [Twin(uid, "Machine", {"name": f"Fan {i}", "status": "operational"})]
            )
            received = await asyncio.wait_for(asyncio.gather(*waiting), 30)
            latencies += [(t - start) * 1000 for t in received]
            await asyncio.sleep(0.3)
        return latencies
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="readings / rows timed per connector figure")
    parser.add_argument(
        "--mqtt-idle-timeout",
        type=float,
        default=None,
        help="the MQTT connector's idle_timeout (default: the connector's default, 1 s)",
    )
    parser.add_argument("--changes", type=int, default=5_000, help="changes per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="route batch and raw publisher batch")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--fanout-changes", type=int, default=5)
    parser.add_argument("--only", choices=["mqtt", "sql", "sql-push", "throughput", "fanout"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["mqtt", "sql", "sql-push", "throughput", "fanout"])
    with tempfile.TemporaryDirectory(prefix="twin-live-bench-") as tmp:
        bench = Bench(Path(tmp))
        asyncio.run(manage_stream(bench.stream, bench.prefix, True))
        asyncio.run(manage_stream(bench.raw_stream, bench.raw_prefix, True))
        try:
            if "mqtt" in only:
                bench.routes("live")
                mqtt_figure(bench, args.samples, args.mqtt_idle_timeout)
            if "sql-push" in only:
                bench.routes("live")
                sql_figure(bench, args.samples, push=True)
            if "sql" in only:
                bench.routes("live")
                sql_figure(bench, args.samples, push=False)
            if "throughput" in only:
                throughput_figures(bench, args.changes, args.rounds, args.batch, args.window)
            if "fanout" in only:
                fanout_figure(bench, args.subscribers, args.fanout_changes)
        finally:
            asyncio.run(manage_stream(bench.stream, bench.prefix, False))
            asyncio.run(manage_stream(bench.raw_stream, bench.raw_prefix, False))
            bench.close()
    os._exit(0)  # daemon threads of the stopped runtimes need not be waited for


if __name__ == "__main__":
    main()
