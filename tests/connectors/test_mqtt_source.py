"""MQTT telemetry through the running Mosquitto: real messages update machine status on the twin and append to the
telemetry time series; bad messages are quarantined; acknowledged messages are not read again."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from connectors.mapping import parse_mapping
from connectors.mqtt_source import MqttSource, publish
from connectors.quarantine import QuarantineStore
from connectors.source import SourceError
from connectors.sync import Connector
from connectors.telemetry import TelemetryStore
from governance.lineage import LineageStore
from graph.model import Twin
from ontology.model import Ontology
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401

HOST, PORT = "127.0.0.1", 1883


@pytest.fixture
def topic_root() -> Iterator[tuple[str, str]]:
    """A private topic tree and client id; the broker's persistent session is removed afterwards."""
    with socket.socket() as probe:
        if probe.connect_ex((HOST, PORT)) != 0:
            pytest.skip(f"no MQTT broker at {HOST}:{PORT}")
    token = uuid.uuid4().hex[:8]
    client_id = f"twin-test-{token}"
    yield f"twin-test-{token}", client_id
    cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    cleaner.connect(HOST, PORT)
    cleaner.disconnect()


MAPPING = """\
system: telemetry
entities:
  - name: machine_telemetry
    class: Machine
    uid: "erp:machine:{topic_2}"
    update_only: true
    ledger: false
    properties:
      status:
        field: state
        lookup: {map: {running: operational, idle: operational, down: down}}
    telemetry:
      time: ts
      metrics: {temperature_c: temperature, power_kw: power}
"""


def test_telemetry_messages_update_the_twin_and_the_time_series(
    core: Ontology, twin: TwinEnv, topic_root: tuple[str, str]
) -> None:
    root, client_id = topic_root
    twin.store.upsert_twins(
        [
            Twin("erp:machine:MC-1", "Machine", {"name": "Lathe", "status": "operational"}),
            Twin("erp:machine:MC-2", "Machine", {"name": "Mill", "status": "operational"}),
        ]
    )
    mapping = parse_mapping(MAPPING, core, "telemetry.yaml")
    connector = Connector(
        "telemetry",
        mapping,
        lambda e: MqttSource(
            HOST, PORT, topic=f"{root}/telemetry/+", client_id=client_id, idle_timeout=0.7, duration=10
        ),
    )
    engine = twin.engine()
    assert engine.run(connector).counts["read"] == 0  # opens the persistent session: later messages are queued

    publish(
        HOST,
        PORT,
        f"{root}/telemetry/MC-1",
        [
            {"ts": "2025-06-30T10:00:00Z", "state": "running", "temperature_c": 61.5, "power_kw": 27.0},
            {"ts": "2025-06-30T10:05:00Z", "state": "down", "temperature_c": 40.25, "power_kw": 0.0},
        ],
    )
    publish(
        HOST, PORT, f"{root}/telemetry/MC-2", [{"ts": "2025-06-30T10:00:00Z", "state": "idle", "temperature_c": 25.0}]
    )
    publish(HOST, PORT, f"{root}/telemetry/MC-9", [{"ts": "2025-06-30T10:00:00Z", "state": "running"}])
    publish(HOST, PORT, f"{root}/telemetry/MC-2", [b"temperature=25"])

    report = engine.run(connector)
    assert report.counts["read"] == 5 and report.counts["quarantined"] == 2
    assert twin.store.require("erp:machine:MC-1").properties["status"] == "down"
    assert twin.store.get("erp:machine:MC-9") is None  # telemetry never creates twins
    telemetry = TelemetryStore(twin.state_url)
    series = telemetry.series("erp:machine:MC-1", "temperature")
    assert [(r.ts, r.value) for r in series] == [
        ("2025-06-30T10:00:00+00:00", 61.5),
        ("2025-06-30T10:05:00+00:00", 40.25),
    ]
    assert telemetry.count("erp:machine:MC-2") == 1
    rules = sorted(q.rule for q in QuarantineStore(twin.state_url).rows("telemetry"))
    assert rules == ["source", "unknown-twin"]
    status = LineageStore(twin.state_url).where_from("erp:machine:MC-1", "status")
    assert status[0].source_system == "telemetry" and status[0].record_key.startswith(f"{root}/telemetry/MC-1@")

    again = engine.run(connector)  # acknowledged messages are not delivered again
    assert again.counts["read"] == 0
    publish(
        HOST,
        PORT,
        f"{root}/telemetry/MC-1",
        [  # a re-delivered reading does not duplicate the series
            {"ts": "2025-06-30T10:05:00Z", "state": "down", "temperature_c": 40.25, "power_kw": 0.0}
        ],
    )
    engine.run(connector)
    assert telemetry.count("erp:machine:MC-1") == 4


def test_unreachable_broker_is_a_source_error() -> None:
    source = MqttSource("127.0.0.1", 9, topic="x/#", client_id=f"twin-test-{uuid.uuid4().hex[:6]}")
    with pytest.raises(SourceError, match="cannot reach the MQTT broker"):
        list(source.read(None))


def test_a_batch_is_handed_on_once_the_flow_goes_quiet_not_when_the_read_ends(topic_root: tuple[str, str]) -> None:
    root, client_id = topic_root
    assert (
        list(
            MqttSource(HOST, PORT, topic=f"{root}/telemetry/+", client_id=client_id, idle_timeout=0.3, duration=1).read(
                None
            )
        )
        == []
    )  # opens the persistent session: later messages are queued
    source = MqttSource(HOST, PORT, topic=f"{root}/telemetry/+", client_id=client_id, idle_timeout=3, duration=10)
    batches = source.read(None)
    publish(HOST, PORT, f"{root}/telemetry/MC-1", [{"ts": "2025-06-30T10:00:00Z", "state": "running"}])
    first = next(batches)
    publish(HOST, PORT, f"{root}/telemetry/MC-1", [{"ts": "2025-06-30T10:01:00Z", "state": "down"}])
    second = next(batches)
    batches.close()
    source.close()
    assert [r.fields["state"] for r in first] == ["running"]  # with the read's 3 s idle timeout as the only
    assert [r.fields["state"] for r in second] == ["down"]  # boundary, both would have come in one batch


def test_readings_of_a_batch_whose_commit_failed_arrive_on_the_next_run(
    core: Ontology, twin: TwinEnv, topic_root: tuple[str, str]
) -> None:
    """At least once: a page is acknowledged only after its relational commit is durable. The telemetry table
    refuses one reading (a real SQLite trigger), so the commit of the batch holding it fails after the graph took
    the page; the broker must deliver the whole batch again, and the next run stores every reading."""
    root, client_id = topic_root
    twin.store.upsert_twins([Twin("erp:machine:MC-1", "Machine", {"name": "Lathe", "status": "operational"})])
    mapping = parse_mapping(MAPPING, core, "telemetry.yaml")
    connector = Connector(
        "telemetry",
        mapping,
        lambda e: MqttSource(
            HOST, PORT, topic=f"{root}/telemetry/+", client_id=client_id, idle_timeout=0.7, duration=10
        ),
    )
    engine = twin.engine()
    assert engine.run(connector).counts["read"] == 0  # opens the persistent session: later messages are queued
    telemetry = TelemetryStore(twin.state_url)
    with telemetry.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_reading BEFORE INSERT ON telemetry WHEN NEW.value = 13.0 "
            "BEGIN SELECT RAISE(ABORT, 'reading refused by the test trigger'); END"
        )
    readings = [
        {"ts": f"2025-06-30T10:{minute:02d}:00Z", "state": "running", "temperature_c": 60.0 + minute}
        for minute in range(10)
    ] + [{"ts": "2025-06-30T11:00:00Z", "state": "down", "temperature_c": 13.0}]
    publish(HOST, PORT, f"{root}/telemetry/MC-1", readings)

    with pytest.raises(Exception, match="reading refused by the test trigger"):
        engine.run(connector)
    assert telemetry.count("erp:machine:MC-1") == 0  # the graph took the page; its commit failed

    with telemetry.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_reading")
    again = engine.run(connector)  # the broker delivers the unacknowledged batch to the session again
    assert again.counts["read"] == len(readings)
    assert [(r.ts, r.value) for r in telemetry.series("erp:machine:MC-1", "temperature")] == [
        (f"2025-06-30T10:{m:02d}:00+00:00", 60.0 + m) for m in range(10)
    ] + [("2025-06-30T11:00:00+00:00", 13.0)]
    assert engine.run(connector).counts["read"] == 0  # now acknowledged: not delivered a third time


def test_a_dry_run_acknowledges_nothing(core: Ontology, twin: TwinEnv, topic_root: tuple[str, str]) -> None:
    """A dry run writes nothing, so the messages it read stay with the broker for the real run."""
    root, client_id = topic_root
    twin.store.upsert_twins([Twin("erp:machine:MC-1", "Machine", {"name": "Lathe", "status": "operational"})])
    connector = Connector(
        "telemetry",
        parse_mapping(MAPPING, core, "telemetry.yaml"),
        lambda e: MqttSource(
            HOST, PORT, topic=f"{root}/telemetry/+", client_id=client_id, idle_timeout=0.7, duration=10
        ),
    )
    engine = twin.engine()
    engine.run(connector)
    publish(
        HOST, PORT, f"{root}/telemetry/MC-1", [{"ts": "2025-06-30T10:00:00Z", "state": "down", "temperature_c": 20.0}]
    )
    assert engine.run(connector, dry_run=True).counts["read"] == 1
    assert engine.run(connector).counts["read"] == 1
    assert TelemetryStore(twin.state_url).count("erp:machine:MC-1") == 1
