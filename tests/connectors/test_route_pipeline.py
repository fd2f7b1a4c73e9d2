"""Pipelined delivery: several batches in flight on every endpoint kind, in order; a route's cursor never passes an
unacknowledged event; a broker killed between send and acknowledgement, or an endpoint that fails a batch, loses
nothing."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.runtime import Runtime
from api.settings import Settings
from connectors.events import EndpointError, EndpointOptions, from_cloudevent_json, open_endpoint
from connectors.route_delivery import RouteCursors
from graph.embedded import stop_embedded
from graph.model import Twin
from tests.connectors.test_event_endpoints import (  # noqa: F401 - fixtures
    HOST,
    SECRET,
    closed_port,
    drain_queue,
    jetstream_stream,
    kafka_protocol_broker,
    make_events,
    rabbit_queue,
    read_jetstream,
    redis_stream,
    service_missing,
    start_nats_server,
)

BATCHES, BATCH = 6, 150  # submitted back to back, none awaited before the last is submitted


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition` holds within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def submit_all(url: str, options: EndpointOptions | None = None) -> None:
    """Submit BATCHES batches without waiting, then wait for every Delivery (each must succeed)."""
    events = make_events(BATCHES * BATCH, uids=1)
    with open_endpoint(url, options or EndpointOptions(webhook_secret=SECRET)) as endpoint:
        deliveries = [endpoint.submit(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]
        assert not all(d.done() for d in deliveries[:-1]) or len(deliveries) == BATCHES
        for delivery in deliveries:
            assert delivery.result(30) is None


EXPECTED = [str(i) for i in range(1, BATCHES * BATCH + 1)]


# --- order of pipelined batches, per endpoint kind ----------------------------------------------------------------


def test_nats_batches_in_flight_arrive_in_order(jetstream_stream: tuple[str, str]) -> None:
    stream, prefix = jetstream_stream
    submit_all(f"nats://{HOST}:4222/{stream}/{prefix}")
    assert [m.headers["Nats-Msg-Id"] for m in read_jetstream(stream, f"{prefix}.>")] == EXPECTED


def test_rabbitmq_batches_in_flight_arrive_in_order(rabbit_queue: str) -> None:
    submit_all(f"amqp://guest:guest@{HOST}:5672/?routing_key={rabbit_queue}")
    assert [m.message_id for m in drain_queue(rabbit_queue)] == EXPECTED


def test_redis_batches_in_flight_arrive_in_order(redis_stream: str) -> None:
    import redis

    submit_all(f"redis://{HOST}:6379/0?stream={redis_stream}")
    entries = redis.Redis(host=HOST, port=6379).xrange(redis_stream)
    assert [fields[b"id"].decode() for _, fields in entries] == EXPECTED


def test_mqtt_batches_in_flight_arrive_in_order() -> None:
    reason = service_missing(1883)
    if reason:
        pytest.skip(f"Mosquitto: {reason}")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"twin-test/{uuid.uuid4().hex[:8]}"
    received: list[str] = []
    subscribed = threading.Event()
    subscriber = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.on_message = lambda client, userdata, message: received.append(from_cloudevent_json(message.payload).id)
    subscriber.on_connect = lambda client, *args: client.subscribe(f"{prefix}/#", qos=1)
    subscriber.connect(HOST, 1883)
    subscriber.loop_start()
    try:
        assert subscribed.wait(5)
        submit_all(f"mqtt://{HOST}:1883/{prefix}", EndpointOptions(max_in_flight=50))
        assert wait_for(lambda: len(received) >= len(EXPECTED), 15)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert received == EXPECTED


def test_kafka_batches_in_flight_keep_one_twins_order(kafka_protocol_broker: str) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"twin-pipeline-{uuid.uuid4().hex[:8]}"

    async def create_topic() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_protocol_broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()

    async def consume() -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_protocol_broker, enable_auto_commit=False)
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            ids: list[str] = []
            deadline = time.monotonic() + 20
            while len(ids) < len(EXPECTED) and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                ids += [from_cloudevent_json(r.value).id for rs in batch.values() for r in rs]
            return ids
        finally:
            await consumer.stop()

    asyncio.run(create_topic())
    submit_all(f"kafka://{kafka_protocol_broker}/{topic}")
    assert asyncio.run(consume()) == EXPECTED


class FlakyReceiver:
    """A webhook receiver that answers 500 to the events whose ids are in `fail` (each once) and records the ids it
    accepted, in arrival order; `check(id)` runs before each accepted event is recorded."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = set(fail)
        self.accepted: list[str] = []
        self.check: Callable[[str], None] | None = None
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                event_id = json.loads(body)["id"]
                if event_id in receiver.fail:
                    receiver.fail.discard(event_id)
                    self.send_response(500)
                else:
                    if receiver.check is not None:
                        receiver.check(event_id)
                    receiver.accepted.append(event_id)
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_batches_in_flight_arrive_in_order() -> None:
    receiver = FlakyReceiver(set())
    try:
        submit_all(receiver.url)
    finally:
        receiver.stop()
    assert receiver.accepted == EXPECTED


def test_a_failed_batch_fails_the_batches_queued_behind_it_without_sending_them() -> None:
    receiver = FlakyReceiver({"8"})
    events = make_events(15)
    try:
        with open_endpoint(receiver.url, EndpointOptions(webhook_secret=SECRET)) as endpoint:
            first, failing, behind = (endpoint.submit(events[i : i + 5]) for i in (0, 5, 10))
            assert first.result(10) is None
            with pytest.raises(EndpointError, match="event 8 answered HTTP 500"):
                failing.result(10)
            with pytest.raises(EndpointError, match="not sent"):
                behind.result(10)
            assert receiver.accepted == ["1", "2", "3", "4", "5", "6", "7"]  # nothing after the failed event
            endpoint.publish(events[7:])  # the caller resends from its first unacknowledged event
    finally:
        receiver.stop()
    assert receiver.accepted == [str(i) for i in range(1, 16)]


# --- the route's cursor ---------------------------------------------------------------------------------------------


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(settings=Settings(data_dir=tmp_path / "twin", runtime_lease_seconds=3))
    try:
        yield runtime
    finally:
        runtime.close()
        stop_embedded(tmp_path / "twin" / "graph")


def _burst(runtime: Runtime, changes: int, routes: str) -> None:
    runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (runtime.settings.data_dir / "routes.yaml").write_text(routes)
    for start in range(0, changes, 1_000):
        runtime.store.upsert_twins(
            [Twin(f"m{i}", "Machine", {"name": f"Machine {i}"}) for i in range(start, min(changes, start + 1_000))]
        )
    assert runtime.store.feed.head() == changes


@pytest.mark.timeout(240)
def test_a_broker_killed_between_send_and_pubacks_loses_nothing_the_cursor_passed(
    twin: Runtime, tmp_path: Path
) -> None:
    """The broker is frozen (SIGSTOP) while pages are in flight, the route stopped, the broker killed (SIGKILL:
    what it had not acknowledged is gone) and restarted: every event up to the route's stored cursor is in the
    stream, and a restarted route delivers the rest (every id once, no gap)."""
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    import nats

    changes, port, store = 6_000, closed_port(), str(tmp_path / "js")
    server = start_nats_server(port, store)
    url = f"nats://{HOST}:{port}"

    async def create_stream() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name="PIPE", subjects=["pipe.>"])
        await nc.close()

    def stored_ids() -> list[int]:
        async def read() -> list[int]:
            nc = await nats.connect(url)
            try:
                sub = await nc.jetstream().subscribe("pipe.>", stream="PIPE", ordered_consumer=True)
                ids: list[int] = []
                while True:
                    try:
                        ids.append(int((await sub.next_msg(timeout=1)).headers["Nats-Msg-Id"]))
                    except nats.errors.TimeoutError:
                        return ids
            finally:
                await nc.close()

        return asyncio.run(read())

    try:
        asyncio.run(create_stream())
        _burst(twin, changes, f"routes:\n  bus:\n    endpoint: {url}/PIPE/pipe\n    role: architect\n    batch: 100\n")
        cursors = RouteCursors(twin.settings.resolved_database_url)
        routes = twin.route_runtime()
        routes.start()
        try:
            assert wait_for(lambda: routes.status()[0].cursor >= 500, 60), routes.status()
            os.kill(server.pid, signal.SIGSTOP)  # pages keep leaving; no PubAck comes back
            time.sleep(1.0)
            in_status = routes.status()[0].cursor
        finally:
            routes.stop(timeout=30)
        cursor, _ = cursors.get("bus")
        assert cursor == in_status, "stopping writes the acknowledged prefix"
        assert 0 < cursor < changes, f"the freeze must land in the middle of the burst (cursor {cursor})"
        server.kill()  # SIGKILL: what the frozen broker had not stored is lost
        server.wait(10)
        server = start_nats_server(port, store)
        before = set(stored_ids())
        assert set(range(1, cursor + 1)) <= before, "the cursor passed an event the stream does not hold"
        routes = twin.route_runtime()
        routes.start()
        try:
            assert wait_for(lambda: routes.status()[0].cursor == changes, 120), routes.status()
        finally:
            routes.stop(timeout=30)
        ids = stored_ids()
        assert sorted(ids) == list(range(1, changes + 1))  # no gap; redeliveries deduped by Nats-Msg-Id
        assert ids[: len(before)] == sorted(before)  # what was stored before the kill, in order
        assert ids[len(before) :] == sorted(ids[len(before) :])  # the redelivered rest, in order
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGCONT)
            server.terminate()
            server.wait(10)


@pytest.mark.timeout(120)
def test_a_failing_endpoint_loses_nothing_and_the_cursor_only_passes_accepted_events(
    twin: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = FlakyReceiver({"130", "131", "420"})  # two failures in the burst: each page is resent
    changes, violations = 600, []
    twin.settings.data_dir.mkdir(parents=True, exist_ok=True)
    cursors = RouteCursors(twin.settings.resolved_database_url)

    def cursor_never_ahead(event_id: str) -> None:
        accepted = {int(i) for i in receiver.accepted}
        cursor = cursors.get("hook")[0]
        if not set(range(1, cursor + 1)) <= accepted:
            violations.append((event_id, cursor))

    receiver.check = cursor_never_ahead
    monkeypatch.setenv("PIPE_SECRET", SECRET)
    try:
        _burst(
            twin,
            changes,
            f"routes:\n  hook:\n    endpoint: {receiver.url}\n    role: architect\n    secret: ${{PIPE_SECRET}}\n"
            "    batch: 50\n",
        )
        routes = twin.route_runtime()
        routes.start()
        try:
            assert wait_for(lambda: routes.status()[0].cursor == changes, 90), routes.status()
            assert routes.status()[0].failures == 0  # recovered
        finally:
            routes.stop(timeout=30)
    finally:
        receiver.stop()
    assert not violations
    assert {int(i) for i in receiver.accepted} == set(range(1, changes + 1))
    assert cursors.get("hook")[0] == changes


@pytest.mark.timeout(120)
def test_changes_trickling_in_one_by_one_are_each_delivered_at_once(
    twin: Runtime, jetstream_stream: tuple[str, str]
) -> None:
    stream, prefix = jetstream_stream
    _burst(twin, 0, f"routes:\n  bus:\n    endpoint: nats://{HOST}:4222/{stream}/{prefix}\n    role: architect\n")
    routes = twin.route_runtime()
    routes.start()
    try:
        for i in range(1, 6):  # the route idles at the feed's head between changes
            twin.store.upsert_twins([Twin(f"m{i}", "Machine", {"name": f"Machine {i}"})])
            assert wait_for(lambda i=i: routes.status()[0].cursor == i, 20), routes.status()
    finally:
        routes.stop(timeout=30)
    assert [m.headers["Nats-Msg-Id"] for m in read_jetstream(stream, f"{prefix}.>")] == ["1", "2", "3", "4", "5"]
