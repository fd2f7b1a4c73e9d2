"""OPC-UA variables as a Source (asyncua): one subscription with a monitored item per mapped node; each data change
becomes a record.

In `connectors.yaml` the connector names the server, in the mapping each entity the nodes it reads::

    source: {kind: opcua, url: "opc.tcp://plc.example:4840", username: twin, password: "${OPCUA_PASSWORD}"}

    entities:
      - name: press_temperatures
        class: Machine
        uid: "erp:machine:{asset}"
        update_only: true
        ledger: false
        source:
          sampling_interval: 500                     # ms, for every node below unless it gives its own
          deadband: 0.5                              # report a change only past 0.5 (absolute; deadband_type: percent)
          nodes:
            - {node: "ns=2;s=Press1.Temperature", fields: {asset: M1}}
            - {path: "Objects/2:Plant/2:Press2/2:Temperature", fields: {asset: M2}, sampling_interval: 100}
        telemetry: {time: ts, metrics: {value: temperature}}

A node is given by NodeId (`node`) or by browse path from the Root (`path`, browse names as ``ns:Name`` joined by
``/``). Each record has the node's value in `field` (default ``value``), ``ts`` (the source timestamp, else the
server's, else when it arrived), ``status`` (the status code's name), ``node`` (the NodeId), ``path`` (the browse path, if given) and the node's constant
`fields` (what the uid rule needs to tell twins apart). A value with a Bad status code is handed on marked invalid, so
the sync quarantines it with the code's name; Uncertain values pass with their status. The record key is
``<node>@<ts>``.

A read connects, resolves every node (an unknown node or path is a SourceError naming it and its mapping line),
creates the subscription and hands on batches as they arrive (connectors/message_batches.py); it ends once no change
came for `idle_timeout` seconds (default 5) or `duration` seconds (default 30) passed. A run reads its entities one
after another, so nodes whose changes must arrive within a second belong in one entity or a connector of their own. If the connection drops
during a read, asyncua reconnects with back-off (up to `reconnect_max_delay` seconds) and restores the subscription,
whose first notifications bring the current values again; a server that is down when a read starts is a SourceError,
and the runtime retries with its own back-off. OPC-UA keeps no messages for a client that is away, so values that
changed while nobody was connected are seen as the current value once connected, not as history.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeNotif, Subscription

from connectors.message_batches import MAX_DELAY_SECONDS, QUIET_SECONDS, BatchWindow
from connectors.quarantine import INVALID_FIELD
from connectors.source import SourceError, SourceRecord, Watermark
from connectors.sql_source import plain_value
from graph.urls import redact_url

T = TypeVar("T")
NODE_OPTIONS = frozenset({"node", "path", "field", "fields", "sampling_interval", "deadband", "deadband_type"})
DEADBAND_TYPES = {"absolute": 1, "percent": 2}
DEFAULT_SAMPLING_MS = 500.0

logging.getLogger("asyncua").setLevel(logging.ERROR)  # reconnect attempts are reported by the run, not logged


class OpcUaError(ValueError):
    """An OPC-UA source's options are malformed; names the mapping file, line and option."""


@dataclass(frozen=True)
class NodeMapping:
    """One monitored node: where it is, what record field its value goes into, how it is sampled."""

    node: str | None  # a NodeId such as ns=2;s=Press1.Temperature
    path: str | None  # or a browse path from the Root, such as Objects/2:Plant/2:Press1/2:Temperature
    value_field: str = "value"  # the record field the value goes into (`field:` in the mapping)
    fields: Mapping[str, Any] = field(default_factory=dict)
    sampling_interval: float = DEFAULT_SAMPLING_MS  # ms
    deadband: float | None = None
    deadband_type: str = "absolute"
    line: int = 0

    @property
    def name(self) -> str:
        """How messages name the node: its NodeId or browse path, and its mapping line."""
        where = f"node {self.node!r}" if self.node else f"path {self.path!r}"
        return f"{where} (line {self.line})" if self.line else where


def parse_nodes(options: Mapping[str, Any], where: str) -> list[NodeMapping]:
    """An entity's `source:` options read into node mappings; OpcUaError naming `where` and the line when wrong."""
    nodes = options.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise OpcUaError(f"{where}: source.nodes must list the nodes to monitor, each {{node: NodeId}} or "
                         f"{{path: Objects/2:Name/...}}")
    default_sampling = _number(options.get("sampling_interval", DEFAULT_SAMPLING_MS), "sampling_interval", where)
    default_deadband = options.get("deadband")
    default_type = options.get("deadband_type", "absolute")
    lines = getattr(nodes, "lines", [])
    parsed = []
    for index, entry in enumerate(nodes):
        line = lines[index] if index < len(lines) else 0
        here = f"{where}, nodes[{index}] (line {line})"
        if not isinstance(entry, dict):
            raise OpcUaError(f"{here}: a node is a mapping such as {{node: 'ns=2;s=Press1.Temperature'}}")
        unknown = sorted(set(entry) - NODE_OPTIONS)
        if unknown:
            raise OpcUaError(f"{here}: unknown option(s) {', '.join(map(str, unknown))}; a node takes "
                             f"{', '.join(sorted(NODE_OPTIONS))}")
        if ("node" in entry) == ("path" in entry):
            raise OpcUaError(f"{here}: give exactly one of `node` (a NodeId) or `path` (a browse path)")
        if "node" in entry:
            try:
                ua.NodeId.from_string(str(entry["node"]))
            except (ValueError, ua.UaError) as exc:
                raise OpcUaError(f"{here}: {str(entry['node'])[:80]!r} is not a NodeId such as "
                                 f"'ns=2;s=Press1.Temperature' or 'i=2258' ({exc})") from None
        constants = entry.get("fields", {})
        if not isinstance(constants, dict):
            raise OpcUaError(f"{here}: fields must map record field names to values, e.g. {{asset: M1}}")
        deadband = entry.get("deadband", default_deadband)
        deadband_type = str(entry.get("deadband_type", default_type))
        if deadband_type not in DEADBAND_TYPES:
            raise OpcUaError(f"{here}: deadband_type must be absolute or percent, not {deadband_type!r}")
        parsed.append(NodeMapping(
            node=str(entry["node"]) if "node" in entry else None,
            path=str(entry["path"]) if "path" in entry else None,
            value_field=str(entry.get("field", "value")), fields=dict(constants),
            sampling_interval=_number(entry.get("sampling_interval", default_sampling), "sampling_interval", here),
            deadband=None if deadband is None else _number(deadband, "deadband", here, zero=True),
            deadband_type=deadband_type, line=line))
    return parsed


def _number(value: Any, option: str, where: str, *, zero: bool = False) -> float:
    """A non-negative (or positive) number option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero):
        raise OpcUaError(f"{where}: {option} must be a {'non-negative' if zero else 'positive'} number, "
                         f"not {value!r}")
    return float(value)


class _LoopThread:
    """An asyncio loop on its own thread, so the synchronous sync engine can drive the asyncua client."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"opcua-{name}", daemon=True)
        self.thread.start()

    def run(self, work: Awaitable[T], timeout: float) -> T:
        """Run `work` on the loop and wait for its result (TimeoutError after `timeout` seconds)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class _Changes:
    """The subscription's handler: every data change goes into the read's inbox (called on the loop thread)."""

    def __init__(self, inbox: "queue.Queue[tuple[int, ua.DataValue, dt.datetime]]") -> None:
        self.inbox = inbox

    def datachange_notification(self, node: Any, val: Any, data: DataChangeNotif) -> None:
        """Queue the change with its client handle (which node) and the time it arrived."""
        item = data.monitored_item
        self.inbox.put((item.ClientHandle, item.Value, dt.datetime.now(dt.UTC)))


class OpcUaSource:
    """The mapped variables of one OPC-UA server, streamed as their values change."""

    def __init__(
        self,
        url: str,
        nodes: list[NodeMapping],
        *,
        name: str,
        username: str | None = None,
        password: str | None = None,
        publishing_interval: float | None = None,
        queue_size: int = 10,
        batch_size: int = 500,
        idle_timeout: float = 5.0,
        duration: float = 30.0,
        batch_quiet: float = QUIET_SECONDS,
        max_batch_delay: float = MAX_DELAY_SECONDS,
        reconnect_max_delay: float = 5.0,
        timeout: float = 4.0,
    ) -> None:
        if not url.startswith("opc.tcp://"):
            raise OpcUaError(f"{name}: url must be opc.tcp://host:port/..., not {redact_url(url)!r}")
        self.url = url
        self.nodes = nodes
        self.name = name
        self._credentials = (username, password)
        self.publishing_interval = publishing_interval or min(n.sampling_interval for n in nodes)
        self.queue_size = queue_size
        self.window = BatchWindow(batch_size, batch_quiet, max_batch_delay, idle_timeout, duration)
        self.reconnect_max_delay = reconnect_max_delay
        self.timeout = timeout
        self._node_ids: list[str] = []  # each mapped node's NodeId as the server resolved it (set by a read)

    @classmethod
    def from_options(cls, connector: Mapping[str, Any], entity: Mapping[str, Any], *, name: str,
                     where: str) -> "OpcUaSource":
        """A source from a connector's and an entity's `source:` options (connectors/registry.py)."""
        nodes = parse_nodes(entity, where)
        number = {key: _number(connector[key], key, f"connector {name.split(':')[0]}")
                  for key in ("idle_timeout", "duration", "batch_quiet", "max_batch_delay", "reconnect_max_delay",
                              "timeout") if key in connector}
        publishing = entity.get("publishing_interval")
        return cls(str(connector["url"]), nodes, name=name, username=connector.get("username"),
                   password=connector.get("password"),
                   publishing_interval=None if publishing is None else _number(publishing, "publishing_interval",
                                                                               where),
                   queue_size=int(_number(entity.get("queue_size", 10), "queue_size", where)),
                   batch_size=int(_number(entity.get("batch_size", 500), "batch_size", where)), **number)

    def __repr__(self) -> str:
        return f"OpcUaSource(name={self.name!r}, server={redact_url(self.url)}, nodes={len(self.nodes)})"

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Batches of the values that change while the read lasts (the current values first); `since` is not
        used: OPC-UA has no history of changes here."""
        inbox: queue.Queue[tuple[int, ua.DataValue, dt.datetime]] = queue.Queue()
        loop = _LoopThread(self.name)
        client: Client | None = None
        try:
            client = loop.run(self._open(inbox), self.timeout * (3 + len(self.nodes) // 500))
            seen: dict[str, int] = {}
            for batch in self.window.batches(inbox):
                yield [self._record(handle, value, arrived, seen) for handle, value, arrived in batch]
        except TimeoutError:
            raise SourceError(f"the OPC-UA server at {redact_url(self.url)} did not answer within "
                              f"{self.timeout:g} s", model=self.name, method="connect") from None
        finally:
            if client is not None:
                try:
                    loop.run(client.disconnect(), self.timeout)
                except Exception:  # noqa: BLE001 - a server that is gone needs no goodbye
                    client = None
            loop.close()

    async def _open(self, inbox: "queue.Queue[tuple[int, ua.DataValue, dt.datetime]]") -> Client:
        """Connect, resolve every node, and create the subscription with one monitored item per node."""
        client = Client(self.url, timeout=self.timeout, auto_reconnect=True,
                        reconnect_max_delay=self.reconnect_max_delay)
        if self._credentials[0]:
            client.set_user(self._credentials[0])
            client.set_password(self._credentials[1] or "")
        try:
            await client.connect()
        except (OSError, asyncio.TimeoutError, ua.UaError) as exc:
            raise SourceError(f"cannot reach the OPC-UA server at {redact_url(self.url)}: "
                              f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                              model=self.name, method="connect") from None
        try:
            node_ids = await self._resolve(client)
            self._node_ids = [node_id.to_string() for node_id in node_ids]
            subscription = await client.create_subscription(self.publishing_interval, _Changes(inbox))
            await self._monitor(subscription, node_ids)
        except BaseException:
            try:
                await client.disconnect()
            except Exception:  # noqa: BLE001 - the error that brought us here is the one to report
                pass
            raise
        return client

    async def _resolve(self, client: Client) -> list[ua.NodeId]:
        """Every mapped node's NodeId, checked against the server (browse paths translated in one request)."""
        resolved: dict[int, ua.NodeId] = {}
        paths = [(i, n) for i, n in enumerate(self.nodes) if n.path is not None]
        if paths:
            requests = []
            for _, mapping in paths:
                browse = ua.BrowsePath()
                browse.StartingNode = ua.NodeId(ua.ObjectIds.RootFolder)
                browse.RelativePath = _relative_path(mapping)
                requests.append(browse)
            results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
            for (index, mapping), result in zip(paths, results):
                if not result.StatusCode.is_good() or not result.Targets:
                    raise SourceError(f"{mapping.name}: the server has no node at this browse path "
                                      f"({result.StatusCode.name})", model=self.name, method="subscribe")
                resolved[index] = result.Targets[0].TargetId
        direct = [(i, ua.NodeId.from_string(n.node)) for i, n in enumerate(self.nodes) if n.node is not None]
        if direct:
            read = ua.ReadParameters()
            for _, node_id in direct:
                item = ua.ReadValueId()
                item.NodeId = node_id
                item.AttributeId = ua.AttributeIds.NodeClass
                read.NodesToRead.append(item)
            answers = await client.uaclient.read(read)
            for (index, node_id), answer in zip(direct, answers):
                if not answer.StatusCode.is_good():
                    raise SourceError(f"{self.nodes[index].name}: the server has no such node "
                                      f"({answer.StatusCode.name})", model=self.name, method="subscribe")
                resolved[index] = node_id
        return [resolved[i] for i in range(len(self.nodes))]

    async def _monitor(self, subscription: Subscription, node_ids: list[ua.NodeId]) -> None:
        """One monitored item per node (client handle = its index + 1), with its sampling interval and deadband."""
        requests = []
        for index, (mapping, node_id) in enumerate(zip(self.nodes, node_ids)):
            item = ua.ReadValueId()
            item.NodeId = node_id
            item.AttributeId = ua.AttributeIds.Value
            parameters = ua.MonitoringParameters()
            parameters.ClientHandle = index + 1
            parameters.SamplingInterval = mapping.sampling_interval
            parameters.QueueSize = self.queue_size
            parameters.DiscardOldest = True
            if mapping.deadband is not None:
                parameters.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                                        DeadbandType=DEADBAND_TYPES[mapping.deadband_type],
                                                        DeadbandValue=mapping.deadband)
            request = ua.MonitoredItemCreateRequest()
            request.ItemToMonitor = item
            request.MonitoringMode = ua.MonitoringMode.Reporting
            request.RequestedParameters = parameters
            requests.append(request)
        results = await subscription.create_monitored_items(requests)
        for mapping, result in zip(self.nodes, results):
            if isinstance(result, ua.StatusCode):
                raise SourceError(f"{mapping.name}: the server refused to monitor it ({result.name})",
                                  model=self.name, method="subscribe")

    def _record(self, handle: int, value: ua.DataValue, arrived: dt.datetime, seen: dict[str, int]) -> SourceRecord:
        """One data change as a record (see the module docstring); a Bad status marks it invalid."""
        mapping = self.nodes[handle - 1]
        stamp = value.SourceTimestamp or value.ServerTimestamp or arrived
        stamp = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
        status = value.StatusCode or ua.StatusCode()
        node = self._node_ids[handle - 1]
        raw = value.Value.Value if value.Value is not None else None
        fields: dict[str, Any] = {**mapping.fields, "node": node, "path": mapping.path, "ts": stamp.isoformat(),
                                  "status": status.name,
                                  mapping.value_field: [plain_value(v) for v in raw] if isinstance(raw, list)
                                  else plain_value(raw)}
        if status.is_bad():
            fields[INVALID_FIELD] = f"OPC-UA status {status.name} on {mapping.name}"
        key = f"{node}@{stamp.isoformat()}"
        repeat = seen.get(key, 0)
        seen[key] = repeat + 1
        return SourceRecord(key if not repeat else f"{key}#{repeat}", fields, stamp)

    def all_keys(self) -> set[str]:
        """Data changes are events, not a key set: always empty."""
        return set()


def _relative_path(mapping: NodeMapping) -> ua.RelativePath:
    """A browse path such as Objects/2:Plant/2:Press1 as hierarchical steps from the Root."""
    assert mapping.path is not None
    path = ua.RelativePath()
    for name in (part for part in mapping.path.strip("/").split("/") if part):
        element = ua.RelativePathElement()
        element.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
        element.IsInverse = False
        element.IncludeSubtypes = True
        element.TargetName = ua.QualifiedName.from_string(name)
        path.Elements.append(element)
    return path
