"""The OPC-UA source against asyncua's own server, started in-process on 127.0.0.1: values reach the twin and the
telemetry series through the runtime, a Bad status code is quarantined, a restarted server is reconnected to, an
unknown node and malformed node options are clear errors naming the mapping line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import ua

from api.runtime import Runtime
from api.settings import Settings
from connectors.mapping import parse_mapping
from connectors.opcua_source import EntityNodes, OpcUaError, OpcUaSession, parse_nodes
from connectors.quarantine import QuarantineStore
from connectors.registry import ConnectorRegistry, RegistryError
from connectors.source import SourceError
from connectors.sync import Connector, SyncError
from connectors.telemetry import TelemetryStore
from graph.embedded import stop_embedded
from graph.model import Twin
from ontology.core import load_core
from ontology.model import Ontology
from tests.connectors.opcua_server import PlantServer
from tests.connectors.twin_fixtures import TwinEnv, core, twin  # noqa: F401
from tests.waiting import wait_for

MAPPING = """\
system: plantfloor
entities:
  - name: press_states
    class: Machine
    uid: "erp:machine:{asset}"
    update_only: true
    ledger: false
    source:
      sampling_interval: 50
      nodes:
        - {node: "ns=2;s=Press1.State", field: state, fields: {asset: M1}}
        - {path: "Objects/2:Plant/2:Press2/2:State", field: state, fields: {asset: M2}}
    properties:
      status: {field: state, lookup: {map: {running: operational, down: down, maintenance: maintenance}}}
  - name: press_temperatures
    class: Machine
    uid: "erp:machine:{asset}"
    update_only: true
    ledger: false
    source:
      sampling_interval: 50
      nodes:
        - {node: "ns=2;s=Press1.Temperature", fields: {asset: M1}, deadband: 5}
        - {path: "Objects/2:Plant/2:Press2/2:Temperature", fields: {asset: M2}}
    telemetry: {time: ts, metrics: {value: temperature}}
"""
MACHINES = [
    Twin("erp:machine:M1", "Machine", {"name": "Press 1", "status": "down"}),
    Twin("erp:machine:M2", "Machine", {"name": "Press 2", "status": "down"}),
]


@pytest.fixture(scope="module")
def plant_server() -> Iterator[PlantServer]:
    """The test plant's OPC-UA server (one per module: it takes seconds to build its address space)."""
    server = PlantServer()
    server.start()
    assert server.namespace == 2  # the NodeIds in MAPPING
    yield server
    server.close()


@pytest.fixture
def plant_twin(tmp_path: Path, plant_server: PlantServer) -> Iterator[Runtime]:
    """A twin with the two press twins and an `opcua` connector on the test server (continuous, short reads)."""
    data = tmp_path / "twin"
    data.mkdir()
    (data / "plantfloor.yaml").write_text(MAPPING)
    (data / "connectors.yaml").write_text(
        "connectors:\n  plantfloor:\n    mapping: plantfloor.yaml\n"
        f"    source: {{kind: opcua, url: '{plant_server.url}', idle_timeout: 0.5, duration: 5, "
        "reconnect_max_delay: 1}\n"
    )
    runtime = Runtime(settings=Settings(data_dir=data, runtime_lease_seconds=3))
    runtime.store.upsert_twins(MACHINES)
    try:
        yield runtime
    finally:
        runtime.close()
        stop_embedded(data / "graph")


def _status(runtime: Runtime, uid: str) -> str:
    return runtime.store.require(uid).properties["status"]


def test_values_reach_the_twin_and_the_series_and_a_bad_status_is_quarantined(
    plant_twin: Runtime, plant_server: PlantServer
) -> None:
    runtime = plant_twin
    live = runtime.sync_runtime(["plantfloor"])
    assert live.schedules["plantfloor"].kind == "continuous"  # the default of an OPC-UA source
    live.start()
    try:
        # the current values arrive first: both presses are running
        assert wait_for(
            lambda: _status(runtime, "erp:machine:M1") == _status(runtime, "erp:machine:M2") == "operational", 30
        ), live.status()
        plant_server.write("Press1.State", "maintenance")
        plant_server.write("Press2.State", "down")  # by browse path
        assert wait_for(
            lambda: (_status(runtime, "erp:machine:M1"), _status(runtime, "erp:machine:M2")) == ("maintenance", "down"),
            30,
        ), live.status()
        start = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
        for minute, value in enumerate((60.0, 62.0, 71.0)):  # 62 is within the deadband of 5 around 60
            plant_server.write("Press1.Temperature", value, at=start + dt.timedelta(minutes=minute))
        plant_server.write("Press2.Temperature", 99.0, at=start, status=ua.StatusCodes.BadSensorFailure)
        telemetry = TelemetryStore(runtime.settings.resolved_database_url)
        since = start - dt.timedelta(seconds=1)

        def readings(uid: str) -> list[float | None]:  # those written above (the current values came first)
            return [r.value for r in telemetry.series(uid, "temperature", since) if r.ts < "2026-12-02"]

        assert wait_for(lambda: readings("erp:machine:M1") == [60.0, 71.0], 30), live.status()
        quarantine = QuarantineStore(runtime.settings.resolved_database_url)
        assert wait_for(lambda: quarantine.count("plantfloor") >= 1, 30), live.status()
    finally:
        live.stop()
    row = quarantine.rows("plantfloor")[0]
    assert row.entity == "press_temperatures" and row.rule == "source"
    assert "BadSensorFailure" in row.message and "Objects/2:Plant/2:Press2/2:Temperature" in row.message
    assert row.raw["node"] == "ns=2;s=Press2.Temperature" and row.raw["asset"] == "M2"
    assert readings("erp:machine:M2") == []  # the bad reading is not in the series
    assert live.status()[0].failures == 0


def test_a_restarted_server_is_reconnected_to(plant_twin: Runtime, plant_server: PlantServer) -> None:
    runtime = plant_twin
    live = runtime.sync_runtime(["plantfloor"])
    live.start()
    try:
        plant_server.write("Press1.State", "running")
        assert wait_for(lambda: _status(runtime, "erp:machine:M1") == "operational", 120), live.status()
        plant_server.stop()
        assert wait_for(lambda: live.status()[0].failures >= 1, 120), live.status()  # runs fail while it is down
        assert f"the connection to the OPC-UA server at {plant_server.url} is lost" in (
            live.status()[0].last_error or ""
        )
        plant_server.start()  # the same address space on the same port
        plant_server.write("Press1.State", "maintenance")
        assert wait_for(lambda: _status(runtime, "erp:machine:M1") == "maintenance", 180), live.status()
        assert wait_for(lambda: live.status()[0].failures == 0, 120), live.status()
    finally:
        live.stop()


def test_a_connection_dropped_during_a_read_is_restored_by_the_source(plant_server: PlantServer) -> None:
    nodes = parse_nodes({"nodes": [{"node": "ns=2;s=Press2.State", "field": "state"}], "sampling_interval": 50}, "t")
    session = OpcUaSession(
        plant_server.url,
        [EntityNodes("states", tuple(nodes))],
        name="t",
        idle_timeout=60,
        duration=300,  # generous: on a loaded machine the reconnect can take tens of seconds
        reconnect_max_delay=1,
    )
    batches = session.source("states").read(None)
    try:
        plant_server.write("Press2.State", "running")
        assert [r.fields["state"] for r in next(batches)] == ["running"]
        plant_server.stop()
        plant_server.start()  # within the read: asyncua reconnects and restores the subscription
        plant_server.write("Press2.State", "down")
        states: list[str] = []
        while "down" not in states:
            states += [r.fields["state"] for r in next(batches)]
    finally:
        batches.close()
        session.close()


def test_an_unknown_node_or_path_is_a_clear_error(
    core: Ontology,
    twin: TwinEnv,  # noqa: F811
    plant_server: PlantServer,
) -> None:
    for entry, says in (
        (
            {"node": "ns=2;s=Press9.State"},
            "node 'ns=2;s=Press9.State' (line 11): the server has no such node (BadNodeIdUnknown)",
        ),
        (
            {"path": "Objects/2:Plant/2:Press9/2:State"},
            "path 'Objects/2:Plant/2:Press9/2:State' "
            "(line 11): the server has no node at this "
            "browse path (BadNoMatch)",
        ),
    ):
        key, value = next(iter(entry.items()))
        text = MAPPING.split("  - name: press_temperatures")[0].replace(
            '{node: "ns=2;s=Press1.State", field: state, fields: {asset: M1}}', f'{{{key}: "{value}", field: state}}'
        )
        mapping = parse_mapping(text, core, "plantfloor.yaml")
        session = OpcUaSession.from_options(
            "plantfloor",
            {"url": plant_server.url, "idle_timeout": 0.5},
            [(e.name, e.source, f"{e.file}:{e.source_line}: entity {e.name}") for e in mapping.entities],
        )
        connector = Connector(
            "plantfloor", mapping, lambda e, session=session: session.source(e.name), close=session.close
        )
        with pytest.raises((SourceError, SyncError)) as refused:
            twin.engine().run(connector)
        connector.close()
        assert says in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("nodes", "says"),
    [
        ("nodes: []", "source.nodes must list the nodes to monitor"),
        ("nodes: [{node: 'ns=2;s=A', path: Objects/2:A}]", "nodes[0] (line 8): give exactly one of `node`"),
        ("nodes: [{node: 'ns=x;q=A'}]", "nodes[0] (line 8): 'ns=x;q=A' is not a NodeId"),
        ("nodes: [{node: 'ns=2;s=A', colour: red}]", "nodes[0] (line 8): unknown option(s) colour"),
        ("nodes: [{node: 'ns=2;s=A', deadband_type: relative}]", "deadband_type must be absolute or percent"),
        ("nodes: [{node: 'ns=2;s=A', sampling_interval: -5}]", "sampling_interval must be a positive number"),
        ("nodes: [{node: 'ns=2;s=A'}]\n      deadbands: 1", "unknown source option(s) deadbands"),
    ],
)
def test_malformed_node_options_name_file_line_and_option(tmp_path: Path, nodes: str, says: str) -> None:
    (tmp_path / "plantfloor.yaml").write_text(
        "system: plantfloor\nentities:\n  - name: states\n    class: Machine\n    uid: 'erp:machine:{asset}'\n"
        f"    update_only: true\n    source:\n      {nodes}\n    properties: {{status: state}}\n"
    )
    (tmp_path / "connectors.yaml").write_text(
        "connectors:\n  plantfloor:\n    mapping: plantfloor.yaml\n    source: {kind: opcua, url: 'opc.tcp://h:4840'}\n"
    )
    registry = ConnectorRegistry.load(load_core(), data_dir=tmp_path)
    connector = registry.connector("plantfloor")
    with pytest.raises(RegistryError) as refused:
        connector.open_source(connector.mapping.entities[0])
    assert says in str(refused.value) and "connector plantfloor" in str(refused.value)
    if "unknown source option" not in says:
        assert "plantfloor.yaml:7: entity states" in str(refused.value)


def test_an_unknown_connector_option_names_file_and_connector(tmp_path: Path) -> None:
    (tmp_path / "plantfloor.yaml").write_text(MAPPING)
    (tmp_path / "connectors.yaml").write_text(
        "connectors:\n  plantfloor:\n    mapping: plantfloor.yaml\n"
        "    source: {kind: opcua, url: 'opc.tcp://h:4840', idle_timout: 2}\n"
    )
    with pytest.raises(
        RegistryError,
        match=r"connectors.yaml: connector 'plantfloor': unknown source option\(s\) "
        r"idle_timout; an opcua source takes .*idle_timeout",
    ):
        ConnectorRegistry.load(load_core(), data_dir=tmp_path)


def test_an_unreachable_server_is_a_source_error_without_the_password() -> None:
    entities = [EntityNodes("e", tuple(parse_nodes({"nodes": [{"node": "ns=2;s=A"}]}, "t")))]
    session = OpcUaSession("opc.tcp://twin:s3cret-pw@127.0.0.1:9/x", entities, name="t", timeout=2)
    with pytest.raises(
        SourceError, match="cannot reach the OPC-UA server at opc.tcp://twin:\\*\\*\\*@127.0.0.1:9"
    ) as refused:
        list(session.source("e").read(None))
    assert "s3cret-pw" not in str(refused.value)
    with pytest.raises(OpcUaError, match="url must be opc.tcp://"):
        OpcUaSession("http://127.0.0.1:9", entities, name="t")
