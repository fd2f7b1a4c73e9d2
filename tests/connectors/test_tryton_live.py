"""The living twin end to end with a real Tryton: the runtime's scheduled incremental sync takes a change made in
Tryton into the twin, and the change leaves as one CloudEvent with the feed's sequence id on every route — NATS
JetStream, the Kafka-protocol broker, MQTT, RabbitMQ, Redis Streams and a signed webhook."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.runtime import Runtime
from api.settings import Settings
from connectors.events import from_cloudevent_json
from connectors.tryton import TrytonClient
from graph.embedded import stop_embedded
from tests.connectors.test_event_endpoints import (  # noqa: F401 - fixtures
    HOST,
    SECRET,
    WebhookReceiver,
    drain_queue,
    jetstream_stream,
    kafka_protocol_broker,
    rabbit_queue,
    read_jetstream,
    redis_stream,
    service_missing,
    webhook_receiver,
)
from tests.connectors.test_tryton_incremental import MAPPING, build_enterprise
from tests.connectors.tryton_server import TrytonServer, missing_tryton, running_server, template_database
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def tryton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TrytonServer, TrytonClient, dict[str, Any]]]:
    """A trytond of this module's own with a small company (a chief and three employees)."""
    reason = missing_tryton()
    if reason is not None:
        pytest.skip(reason)
    with running_server(tmp_path_factory.mktemp("tryton-live"), template_database()) as server:
        client = TrytonClient(server.url, server.database, server.username, server.password)
        client.login()
        made = build_enterprise(client)
        yield server, client, made
        client.close()


@pytest.fixture
def mqtt_events() -> Iterator[tuple[str, list[Any]]]:
    """A subscriber to a private MQTT topic prefix: (prefix, the messages received)."""
    reason = service_missing(1883)
    if reason:
        pytest.skip(f"Mosquitto: {reason}")
    import paho.mqtt.client as mqtt

    prefix = f"twin-test/{uuid.uuid4().hex[:8]}"
    received: list[Any] = []
    subscribed = threading.Event()
    subscriber = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.on_message = lambda client, userdata, message: received.append(message)
    subscriber.on_connect = lambda client, *args: client.subscribe(f"{prefix}/#", qos=1)
    subscriber.connect(HOST, 1883)
    subscriber.loop_start()
    assert subscribed.wait(10)
    yield prefix, received
    subscriber.disconnect()
    subscriber.loop_stop()


def _kafka_topic(broker: str) -> str:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"twin-live-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())
    return topic


def _kafka_events(broker: str, topic: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def consume() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])  # partitions assigned directly: the broker's consumer groups start slowly
            await consumer.seek_to_beginning(partition)
            batch = await consumer.getmany(timeout_ms=1500)
            return [from_cloudevent_json(r.value) for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()

    return asyncio.run(consume())


def test_a_tryton_change_reaches_the_twin_and_every_route_with_one_sequence_id(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tryton: tuple[TrytonServer, TrytonClient, dict[str, Any]],
    jetstream_stream: tuple[str, str],
    kafka_protocol_broker: str,
    rabbit_queue: str,  # noqa: F811
    redis_stream: str,
    webhook_receiver: WebhookReceiver,
    mqtt_events: tuple[str, list[Any]],
) -> None:  # noqa: F811
    import redis

    server, client, made = tryton
    stream, subjects = jetstream_stream
    topic = _kafka_topic(kafka_protocol_broker)
    prefix, mqtt_received = mqtt_events
    monkeypatch.setenv("TRYTON_PW", server.password)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    data = tmp_path / "twin"
    data.mkdir()
    (data / "tryton_people.yaml").write_text(MAPPING)
    (data / "connectors.yaml").write_text(
        f"connectors:\n  erp:\n    mapping: tryton_people.yaml\n    schedule: 1s\n"
        f"    source: {{kind: tryton, url: '{server.url}', database: {server.database}, username: {server.username}, "
        "password: '${TRYTON_PW}'}\n"
    )
    endpoints = {
        "nats": f"nats://{HOST}:4222/{stream}/{subjects}",
        "kafka": f"kafka://{kafka_protocol_broker}/{topic}",
        "mqtt": f"mqtt://{HOST}:1883/{prefix}",
        "amqp": f"amqp://guest:guest@{HOST}:5672/?routing_key={rabbit_queue}",
        "redis": f"redis://{HOST}:6379/0?stream={redis_stream}",
        "webhook": webhook_receiver.url,
    }
    (data / "routes.yaml").write_text(
        "routes:\n"
        + "".join(
            f"  {name}:\n    endpoint: '{url}'\n    role: architect\n    filter: {{classes: [Employee]}}\n"
            + ("    secret: ${HOOK_SECRET}\n" if name == "webhook" else "")
            for name, url in endpoints.items()
        )
    )
    runtime = Runtime(settings=Settings(data_dir=data, runtime_lease_seconds=3))
    live = runtime.sync_runtime(["erp"])
    routes = runtime.route_runtime(holder=live.holder)
    uid = f"tryton:employee:{made['welder']}"
    try:
        live.start()
        routes.start()
        assert wait_for(lambda: runtime.store.get(uid) is not None, 60), live.status()
        assert wait_for(lambda: all(r.cursor >= runtime.store.feed.head() for r in routes.status()), 60), (
            routes.status()
        )
        client.write("party.party", [made["people"][2]], {"name": "Gina Welder-Smith"})  # a related record renamed
        assert wait_for(lambda: runtime.store.require(uid).properties["name"] == "Gina Welder-Smith", 60), live.status()
        changes = [
            c
            for c in runtime.store.feed.read(0, 10_000)
            if c.uid == uid and c.op == "update" and (c.after or {}).get("name") == "Gina Welder-Smith"
        ]
        assert len(changes) == 1 and changes[0].source == "erp" and changes[0].actor == "twin runtime"
        seq = changes[0].seq
        assert wait_for(lambda: all(r.cursor >= seq for r in routes.status()), 60), routes.status()
    finally:
        live.stop()
        routes.stop()
        runtime.close()
        stop_embedded(data / "graph")

    def renamed(events: list[Any]) -> list[Any]:
        return [
            e
            for e in events
            if e.subject == uid
            and e.type == "twin.updated"
            and {"op": "replace", "path": "/name", "value": "Gina Welder-Smith"} in e.data["patch"]
        ]

    delivered = {
        "nats": renamed([from_cloudevent_json(m.data) for m in read_jetstream(stream, f"{subjects}.>")]),
        "kafka": renamed(_kafka_events(kafka_protocol_broker, topic)),
        "amqp": renamed([from_cloudevent_json(m.body) for m in drain_queue(rabbit_queue)]),
        "redis": renamed(
            [from_cloudevent_json(f[b"event"]) for _, f in redis.Redis(host=HOST, port=6379).xrange(redis_stream)]
        ),
        "webhook": renamed(webhook_receiver.accepted),
    }
    deadline = time.monotonic() + 10  # MQTT messages are pushed to the subscriber: give them a moment
    while not renamed([from_cloudevent_json(m.payload) for m in mqtt_received]) and time.monotonic() < deadline:
        time.sleep(0.05)
    delivered["mqtt"] = renamed([from_cloudevent_json(m.payload) for m in mqtt_received])
    assert {name: [e.id for e in events] for name, events in delivered.items()} == {
        name: [str(seq)] for name in endpoints
    }, json.dumps({n: len(e) for n, e in delivered.items()})
