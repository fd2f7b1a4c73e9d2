"""Anomaly detection on telemetry streams: spikes and level shifts found within the detector's window, at most one
false alarm per 10,000 clean readings, bad readings refused, and events on the change feed with their evidence —
end to end from machine readings published to the Mosquitto broker."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt_source import MqttSource, publish
from governance.change_view import ChangeGate
from governance.identity import Subject
from governance.policy import load_policy
from graph.feed import ChangeFeed
from graph.history import HistoryStore
from graph.model import Twin
from graph.store import GraphStore
from ontology.model import Ontology
from simulation.forecast.anomaly import AnomalyMonitor, Observation, StreamDetector, record_anomalies

HOST, PORT = "127.0.0.1", 1883
START = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)


def _ts(i: int) -> str:
    return (START + dt.timedelta(seconds=10 * i)).isoformat()


def test_clean_streams_raise_at_most_one_false_alarm_per_10000_readings() -> None:
    rng = np.random.default_rng(42)
    monitor = AnomalyMonitor()
    readings = [
        Observation(f"erp:machine:M{m}", metric, _ts(i), float(v))
        for m in range(2)
        for metric, level, sd in (("temperature_c", 60.0, 1.5), ("power_kw", 29.5, 1.0))
        for i, v in enumerate(level + rng.normal(0, sd, 5_000))
    ]
    events, rejected = monitor.observe(readings)
    assert len(readings) == 20_000 and rejected == []
    assert len(events) <= 2, events  # <= 1 per 10,000


def test_spikes_and_level_shifts_are_found_within_the_window_with_evidence() -> None:
    rng = np.random.default_rng(7)
    values = 60 + rng.normal(0, 1.5, 600)
    values[200] += 25  # a spike
    values[400:] += 15  # a level shift
    detector = StreamDetector(window=120, threshold=7.0, warmup=30, shift_after=5)
    events = [e for i, v in enumerate(values) if (e := detector.update(_ts(i), float(v))) is not None]
    kinds = [(e.kind, e.ts) for e in events]
    assert kinds == [("spike", _ts(200)), ("level_shift", _ts(400))]
    spike, shift = events
    assert spike.value == pytest.approx(values[200]) and spike.score > 7 and spike.readings == 1
    assert spike.expected_low < 60 < spike.expected_high < values[200]
    assert spike.window_readings == 120 and spike.window_end == _ts(199)
    assert shift.readings == 5 and shift.expected_high < shift.value
    # after the shift the detector has learnt the new level: nothing more is raised
    assert detector.expectation()[0] > 70


def test_non_numeric_readings_are_refused_without_stopping_the_batch() -> None:
    monitor = AnomalyMonitor(warmup=5)
    readings = [Observation("m", "t", _ts(i), 10.0 + (i % 3) * 0.1) for i in range(40)]
    readings[10] = Observation("m", "t", _ts(10), "hot")
    readings[11] = Observation("m", "t", _ts(11), float("nan"))
    readings[12] = Observation("m", "t", _ts(12), None)
    events, rejected = monitor.observe(readings)
    assert [r.observation.ts for r in rejected] == [_ts(10), _ts(11), _ts(12)]
    assert "'hot' is not a number" in rejected[0].reason and "not finite" in rejected[1].reason
    assert events == [] and monitor.detectors[("m", "t")].seen == 37


@pytest.fixture
def topic_root() -> Iterator[tuple[str, str]]:
    """A private topic tree and client id; the broker's persistent session is removed afterwards."""
    with socket.socket() as probe:
        if probe.connect_ex((HOST, PORT)) != 0:
            pytest.skip(f"no MQTT broker at {HOST}:{PORT}")
    token = uuid.uuid4().hex[:8]
    client_id = f"twin-anomaly-{token}"
    yield f"twin-anomaly-{token}", client_id
    cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    cleaner.connect(HOST, PORT)
    cleaner.disconnect()


def test_injected_spikes_and_shifts_over_mqtt_reach_the_change_feed(
    topic_root: tuple[str, str], tmp_path: Path, ontology: Ontology, order_store: GraphStore
) -> None:
    root, client_id = topic_root
    topic = f"{root}/telemetry/+"
    assert list(MqttSource(HOST, PORT, topic=topic, client_id=client_id, idle_timeout=0.3, duration=1).read(None)) == []
    rng = np.random.default_rng(9)
    temperature = 60 + rng.normal(0, 1.5, 400)
    temperature[150] += 30  # spike on MC-A
    power = 29 + rng.normal(0, 1.0, 400)
    power[300:] -= 12  # MC-A's power drops for good
    clean = 60 + rng.normal(0, 1.5, 400)  # MC-B: nothing injected
    publish(
        HOST,
        PORT,
        f"{root}/telemetry/MC-A",
        [{"ts": _ts(i), "temperature_c": temperature[i], "power_kw": power[i]} for i in range(400)],
    )
    publish(HOST, PORT, f"{root}/telemetry/MC-B", [{"ts": _ts(i), "temperature_c": clean[i]} for i in range(400)])
    publish(HOST, PORT, f"{root}/telemetry/MC-B", [{"ts": _ts(400), "temperature_c": "overheated"}])
    source = MqttSource(HOST, PORT, topic=topic, client_id=client_id, idle_timeout=1.0, duration=30)
    monitor = AnomalyMonitor()
    events, rejected = [], []
    try:
        for page in source.read(None):
            observations = [
                Observation(f"erp:machine:{r.fields['topic_2']}", metric, r.fields["ts"], r.fields[metric])
                for r in page
                for metric in ("temperature_c", "power_kw")
                if metric in r.fields
            ]
            found, refused = monitor.observe(observations)
            events += found
            rejected += refused
            source.acknowledge(page)
    finally:
        source.close()
    assert [(e.asset_uid, e.metric, e.kind, e.ts) for e in events] == [
        ("erp:machine:MC-A", "temperature_c", "spike", _ts(150)),
        ("erp:machine:MC-A", "power_kw", "level_shift", _ts(300)),
    ]
    assert [r.observation.asset_uid for r in rejected] == ["erp:machine:MC-B"]

    order_store.upsert_twins(
        [Twin("erp:machine:MC-A", "Machine", {"name": "MC-A"})], actor="test", source="anomaly-test"
    )
    history = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    feed = ChangeFeed(history)
    head = feed.head()
    assert record_anomalies(history, events, {"erp:machine:MC-A": "Machine"}, run_id="anomaly-run-1") == 2
    changes = feed.read(head)
    assert [(c.kind, c.op, c.uid, c.cls) for c in changes] == [("anomaly", "create", "erp:machine:MC-A", "Machine")] * 2
    evidence = changes[0].after or {}
    assert evidence["kind"] == "spike" and evidence["expected_low"] < 60 < evidence["expected_high"]
    assert evidence["window_readings"] == 120 and evidence["value"] > 80
    policy = load_policy(ontology)
    architect = ChangeGate(policy, Subject(sub="a", roles=frozenset({"architect"})), order_store).view(changes)
    assert [v.change.after for v in architect] == [c.after for c in changes]
    hr = ChangeGate(policy, Subject(sub="h", roles=frozenset({"hr"}), org_unit="ou:x"), order_store).view(changes)
    assert hr == []  # the hr role reads no machines, so it sees no machine's anomalies
