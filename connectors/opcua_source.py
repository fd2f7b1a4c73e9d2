"""OPC-UA variables as a Source (asyncua): one subscription per connector with a monitored item per mapped node;
each data change becomes a record of the entity that maps the node.

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
server's, else when it arrived), ``status`` (the status code's name), ``node`` (the NodeId), ``path`` (the browse
path, if given) and the node's constant `fields` (what the uid rule needs to tell twins apart). A value with a Bad
status code is handed on marked invalid, so the sync quarantines it with the code's name; Uncertain values pass with
their status. The record key is ``<node>@<ts>``.

A run's first read connects (`OpcUaSession`), resolves every node of every entity (an unknown node or path is a
SourceError naming it and its mapping line) and creates the subscription; each entity's read hands on batches as its
changes arrive (`batch_quiet`, `max_batch_delay` as in connectors/message_batches.py) and ends once its nodes were
quiet for `idle_timeout` seconds (default 5), `duration` seconds (default 30) passed, or its flow is quiet while
another entity's changes wait (they are kept for that entity's read, so the run moves on). The session outlives the
run (connectors/registry.py keeps one per connector): on the runtime's `continuous` schedule the next run reads the
changes that arrived in between, and a session no read used for `linger` seconds (5) closes itself. If the
connection drops, asyncua reconnects with back-off (up to `reconnect_max_delay` seconds)
and restores the subscription; a server that is down when a run starts is a SourceError, and the runtime retries with
its own back-off. OPC-UA keeps no history for a client that is away: a value that changed several times while no
session was open (or during a reconnect) is seen once, as its current value.
OPC-UA has no acknowledgement a client sends back (a subscription's notifications are not redelivered), so this
source is no connectors.source.AcknowledgingSource: nothing waits for the sync's commit, and after a crash the next
run's first read hands on every node's current value again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
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

# asyncua logs each failed publish and reconnect attempt as an error; a lost connection is reported by the runs instead
logging.getLogger("asyncua").setLevel(logging.CRITICAL)


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
        raise OpcUaError(
            f"{where}: source.nodes must list the nodes to monitor, each {{node: NodeId}} or "
            f"{{path: Objects/2:Name/...}}"
        )
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
            raise OpcUaError(
                f"{here}: unknown option(s) {', '.join(map(str, unknown))}; a node takes "
                f"{', '.join(sorted(NODE_OPTIONS))}"
            )
        if ("node" in entry) == ("path" in entry):
            raise OpcUaError(f"{here}: give exactly one of `node` (a NodeId) or `path` (a browse path)")
        if "node" in entry:
            try:
                ua.NodeId.from_string(str(entry["node"]))
            except (ValueError, ua.UaError) as exc:
                raise OpcUaError(
                    f"{here}: {str(entry['node'])[:80]!r} is not a NodeId such as "
                    f"'ns=2;s=Press1.Temperature' or 'i=2258' ({exc})"
                ) from None
        constants = entry.get("fields", {})
        if not isinstance(constants, dict):
            raise OpcUaError(f"{here}: fields must map record field names to values, e.g. {{asset: M1}}")
        deadband = entry.get("deadband", default_deadband)
        deadband_type = str(entry.get("deadband_type", default_type))
        if deadband_type not in DEADBAND_TYPES:
            raise OpcUaError(f"{here}: deadband_type must be absolute or percent, not {deadband_type!r}")
        parsed.append(
            NodeMapping(
                node=str(entry["node"]) if "node" in entry else None,
                path=str(entry["path"]) if "path" in entry else None,
                value_field=str(entry.get("field", "value")),
                fields=dict(constants),
                sampling_interval=_number(entry.get("sampling_interval", default_sampling), "sampling_interval", here),
                deadband=None if deadband is None else _number(deadband, "deadband", here, zero=True),
                deadband_type=deadband_type,
                line=line,
            )
        )
    return parsed


def _number(value: Any, option: str, where: str, *, zero: bool = False) -> float:
    """A non-negative (or positive) number option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero):
        raise OpcUaError(f"{where}: {option} must be a {'non-negative' if zero else 'positive'} number, not {value!r}")
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
        """Cancel what still runs on the loop (asyncua's reconnect and publish tasks), then stop it and its thread."""
        with contextlib.suppress(Exception):  # a task that does not end in time dies with the loop
            self.run(_cancel_tasks(), 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


async def _cancel_tasks() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Changes:
    """The subscription's handler: every data change goes into the read's inbox (called on the loop thread)."""

    def __init__(self, inbox: queue.Queue[tuple[int, ua.DataValue, dt.datetime]]) -> None:
        self.inbox = inbox

    def datachange_notification(self, node: Any, val: Any, data: DataChangeNotif) -> None:
        """Queue the change with its client handle (which node) and the time it arrived."""
        item = data.monitored_item
        self.inbox.put((item.ClientHandle, item.Value, dt.datetime.now(dt.UTC)))


@dataclass(frozen=True)
class EntityNodes:
    """The nodes one mapping entity reads, its batch size and its monitored items' queue size."""

    entity: str
    nodes: tuple[NodeMapping, ...]
    batch_size: int = 500
    queue_size: int = 10  # values the server keeps per node between two publishes


Change = tuple[int, ua.DataValue, dt.datetime]  # (client handle, value, when it arrived)
_ELSEWHERE = object()  # a change of another entity's node arrived


class OpcUaSession:
    """One connector's connection to an OPC-UA server: one subscription with a monitored item per mapped node of
    every entity, opened by the first read and kept while reads follow each other (closed `linger` seconds after the
    last one ended, or by `close`)."""

    def __init__(
        self,
        url: str,
        entities: list[EntityNodes],
        *,
        name: str,
        username: str | None = None,
        password: str | None = None,
        publishing_interval: float | None = None,
        idle_timeout: float = 5.0,
        duration: float = 30.0,
        batch_quiet: float = QUIET_SECONDS,
        max_batch_delay: float = MAX_DELAY_SECONDS,
        reconnect_max_delay: float = 5.0,
        timeout: float = 4.0,
        linger: float = 5.0,
    ) -> None:
        if not url.startswith("opc.tcp://"):
            raise OpcUaError(f"connector {name}: url must be opc.tcp://host:port/..., not {redact_url(url)!r}")
        self.url = url
        self.name = name
        self.entities = {e.entity: e for e in entities}
        self._credentials = (username, password)
        nodes = [node for e in entities for node in e.nodes]
        self.publishing_interval = publishing_interval or min(n.sampling_interval for n in nodes)
        self.window = BatchWindow(1, batch_quiet, max_batch_delay, idle_timeout, duration)
        self.reconnect_max_delay = reconnect_max_delay
        self.timeout = timeout
        self._handles: list[tuple[str, NodeMapping]] = [(e.entity, n) for e in entities for n in e.nodes]
        self._node_ids: list[str] = []  # per client handle - 1: the NodeId as the server resolved it
        self._changes: queue.Queue[Change] = queue.Queue()
        self._pending: dict[str, deque[Change]] = {e.entity: deque() for e in entities}
        self._loop: _LoopThread | None = None
        self._client: Client | None = None
        self.linger = linger
        self._lock = threading.RLock()
        self._readers = 0
        self._idle_close: threading.Timer | None = None

    @classmethod
    def from_options(
        cls, connector: str, options: Mapping[str, Any], entities: list[tuple[str, Mapping[str, Any], str]]
    ) -> OpcUaSession:
        """A session from the connector's `source:` options and each entity's (name, `source:`, where it is
        written), as connectors/registry.py reads them."""
        where = f"connector {connector}"
        number = {
            key: _number(options[key], key, where)
            for key in (
                "idle_timeout",
                "duration",
                "batch_quiet",
                "max_batch_delay",
                "reconnect_max_delay",
                "timeout",
                "publishing_interval",
            )
            if key in options
        }
        parsed = [
            EntityNodes(
                name,
                tuple(parse_nodes(source, here)),
                int(_number(source.get("batch_size", 500), "batch_size", here)),
                int(_number(source.get("queue_size", 10), "queue_size", here)),
            )
            for name, source, here in entities
        ]
        return cls(
            str(options.get("url", "")),
            parsed,
            name=connector,
            username=options.get("username"),
            password=options.get("password"),
            **number,
        )

    def __repr__(self) -> str:
        return f"OpcUaSession(name={self.name!r}, server={redact_url(self.url)}, nodes={len(self._handles)})"

    def source(self, entity: str) -> OpcUaSource:
        """The Source of one entity's nodes."""
        return OpcUaSource(self, entity)

    def acquire(self) -> None:
        """A read begins: open the session unless it is open (it stays open between back-to-back runs)."""
        with self._lock:
            self._readers += 1
            if self._idle_close is not None:
                self._idle_close.cancel()
                self._idle_close = None
        try:
            self.open()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """A read ended: close the session once no read used it for `linger` seconds."""
        with self._lock:
            self._readers -= 1
            if self._readers == 0 and self._client is not None:
                self._idle_close = threading.Timer(self.linger, self._close_if_unused)
                self._idle_close.daemon = True
                self._idle_close.start()

    def _close_if_unused(self) -> None:
        with self._lock:  # a read that begins meanwhile waits, then opens the session again
            if not self._readers:
                self.close()

    def open(self) -> None:
        """Connect, resolve every node and subscribe (once per session); SourceError naming what failed."""
        if self._client is not None:
            return
        self._loop = _LoopThread(self.name)
        try:
            self._client = self._loop.run(self._open(), self.timeout * (3 + len(self._handles) // 500))
        except TimeoutError:
            self.close()
            raise SourceError(
                f"the OPC-UA server at {redact_url(self.url)} did not answer within {self.timeout:g} s",
                model=self.name,
                method="connect",
            ) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Disconnect and stop the session's loop (changes not yet read are dropped)."""
        with self._lock:
            if self._idle_close is not None:
                self._idle_close.cancel()
                self._idle_close = None
        if self._loop is None:
            return
        if self._client is not None:
            with contextlib.suppress(Exception):  # a server that is gone needs no goodbye
                self._loop.run(self._client.disconnect(), self.timeout)
            self._client = None
        self._loop.close()
        self._loop = None

    async def _open(self) -> Client:
        client = Client(
            self.url, timeout=self.timeout, auto_reconnect=True, reconnect_max_delay=self.reconnect_max_delay
        )
        if self._credentials[0]:
            client.set_user(self._credentials[0])
            client.set_password(self._credentials[1] or "")
        try:
            await client.connect()
        except (TimeoutError, OSError, ua.UaError) as exc:
            raise SourceError(
                f"cannot reach the OPC-UA server at {redact_url(self.url)}: "
                f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                model=self.name,
                method="connect",
            ) from None
        try:
            node_ids = await self._resolve(client)
            self._node_ids = [node_id.to_string() for node_id in node_ids]
            subscription = await client.create_subscription(self.publishing_interval, _Changes(self._changes))
            await self._monitor(subscription, node_ids)
        except BaseException:
            with contextlib.suppress(Exception):  # the error that brought us here is the one to report
                await client.disconnect()
            raise
        return client

    async def _resolve(self, client: Client) -> list[ua.NodeId]:
        """Every mapped node's NodeId, checked against the server (browse paths translated in one request)."""
        resolved: dict[int, ua.NodeId] = {}
        paths = [(i, n) for i, (_, n) in enumerate(self._handles) if n.path is not None]
        if paths:
            requests = []
            for _, mapping in paths:
                browse = ua.BrowsePath()
                browse.StartingNode = ua.NodeId(ua.Int32(ua.ObjectIds.RootFolder))
                browse.RelativePath = _relative_path(mapping)
                requests.append(browse)
            results = await client.uaclient.translate_browsepaths_to_nodeids(requests)
            for (index, mapping), result in zip(paths, results, strict=True):
                if not result.StatusCode.is_good() or not result.Targets:
                    raise SourceError(
                        f"{mapping.name}: the server has no node at this browse path ({result.StatusCode.name})",
                        model=self._model(index),
                        method="subscribe",
                    )
                resolved[index] = result.Targets[0].TargetId
        direct = [(i, ua.NodeId.from_string(n.node)) for i, (_, n) in enumerate(self._handles) if n.node is not None]
        if direct:
            read = ua.ReadParameters()
            for _, node_id in direct:
                item = ua.ReadValueId()
                item.NodeId = node_id
                item.AttributeId = ua.AttributeIds.NodeClass
                read.NodesToRead.append(item)
            answers = await client.uaclient.read(read)
            for (index, node_id), answer in zip(direct, answers, strict=True):
                status = answer.StatusCode
                if status is None or not status.is_good():
                    raise SourceError(
                        f"{self._handles[index][1].name}: the server has no such node "
                        f"({status.name if status is not None else 'no status'})",
                        model=self._model(index),
                        method="subscribe",
                    )
                resolved[index] = node_id
        return [resolved[i] for i in range(len(self._handles))]

    async def _monitor(self, subscription: Subscription, node_ids: list[ua.NodeId]) -> None:
        """One monitored item per node (client handle = its index + 1), with its sampling interval and deadband."""
        requests = []
        for index, ((entity, mapping), node_id) in enumerate(zip(self._handles, node_ids, strict=True)):
            item = ua.ReadValueId()
            item.NodeId = node_id
            item.AttributeId = ua.AttributeIds.Value
            parameters = ua.MonitoringParameters()
            parameters.ClientHandle = index + 1
            parameters.SamplingInterval = mapping.sampling_interval
            parameters.QueueSize = self.entities[entity].queue_size
            parameters.DiscardOldest = True
            if mapping.deadband is not None:
                parameters.Filter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=DEADBAND_TYPES[mapping.deadband_type],
                    DeadbandValue=mapping.deadband,
                )
            request = ua.MonitoredItemCreateRequest()
            request.ItemToMonitor = item
            request.MonitoringMode = ua.MonitoringMode.Reporting
            request.RequestedParameters = parameters
            requests.append(request)
        results = await subscription.create_monitored_items(requests)
        for index, result in enumerate(results):
            if isinstance(result, ua.StatusCode):
                raise SourceError(
                    f"{self._handles[index][1].name}: the server refused to monitor it ({result.name})",
                    model=self._model(index),
                    method="subscribe",
                )

    def check_connected(self) -> None:
        """SourceError while the connection is lost (asyncua is reconnecting), so runs report it as a failure."""
        client = self._client
        if client is None or client.uaclient.state is UaClientState.CONNECTED:
            return
        state = client.uaclient.state
        if state is UaClientState.DISCONNECTED:  # given up: the next run connects afresh
            self.close()
        raise SourceError(
            f"the connection to the OPC-UA server at {redact_url(self.url)} is lost ({state.value}); reconnecting",
            model=self.name,
            method="read",
        )

    def _model(self, index: int) -> str:
        """connector:entity of a client handle's node, as errors name it."""
        return f"{self.name}:{self._handles[index][0]}"

    def batches(self, entity: str) -> Iterator[list[Change]]:
        """Batches of `entity`'s changes. The read ends once its nodes were quiet for `idle_timeout`, `duration`
        passed, or its flow is quiet while another entity's changes wait (so the run moves on to that entity; they
        are kept for its read)."""
        window, size = self.window, self.entities[entity].batch_size
        own = self._pending[entity]
        deadline = time.monotonic() + window.duration
        while (remaining := deadline - time.monotonic()) > 0:
            if own:
                batch = [own.popleft()]
            else:
                if any(queue_ for name, queue_ in self._pending.items() if name != entity):
                    return
                first = self._next(entity, min(window.idle_timeout, remaining))
                if first is None:
                    self.check_connected()  # quiet because the server is gone: say so
                if not isinstance(first, tuple):
                    return  # idle, or another entity's change arrived
                batch = [first]
            closes = time.monotonic() + window.max_delay
            while len(batch) < size:
                if own:
                    batch.append(own.popleft())
                    continue
                wait = min(window.quiet, closes - time.monotonic())
                if wait <= 0:
                    break
                more = self._next(entity, wait)
                if not isinstance(more, tuple):
                    break
                batch.append(more)
            yield batch

    def _next(self, entity: str, timeout: float) -> Change | object | None:
        """The next change of `entity` within `timeout` seconds; None when none came, `_ELSEWHERE` when another
        entity's came first (kept for that entity)."""
        try:
            change = self._changes.get(timeout=timeout)
        except queue.Empty:
            return None
        owner = self._handles[change[0] - 1][0]
        if owner == entity:
            return change
        self._pending[owner].append(change)
        return _ELSEWHERE

    def record(self, change: Change, seen: dict[str, int]) -> SourceRecord:
        """One data change as a record (see the module docstring); a Bad status marks it invalid."""
        handle, value, arrived = change
        mapping = self._handles[handle - 1][1]
        stamp = value.SourceTimestamp or value.ServerTimestamp or arrived
        stamp = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
        status = value.StatusCode or ua.StatusCode()
        node = self._node_ids[handle - 1]
        raw = value.Value.Value if value.Value is not None else None
        fields: dict[str, Any] = {
            **mapping.fields,
            "node": node,
            "path": mapping.path,
            "ts": stamp.isoformat(),
            "status": status.name,
            mapping.value_field: [plain_value(v) for v in raw] if isinstance(raw, list) else plain_value(raw),
        }
        if status.is_bad():
            fields[INVALID_FIELD] = f"OPC-UA status {status.name} on {mapping.name}"
        key = f"{node}@{stamp.isoformat()}"
        repeat = seen.get(key, 0)
        seen[key] = repeat + 1
        return SourceRecord(key if not repeat else f"{key}#{repeat}", fields, stamp)


class OpcUaSource:
    """One entity's nodes on its connector's OPC-UA session, streamed as their values change."""

    def __init__(self, session: OpcUaSession, entity: str) -> None:
        if entity not in session.entities:
            raise OpcUaError(f"connector {session.name}: entity {entity!r} maps no OPC-UA nodes")
        self.session = session
        self.entity = entity
        self.name = f"{session.name}:{entity}"

    def __repr__(self) -> str:
        return f"OpcUaSource(name={self.name!r}, session={self.session!r})"

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Batches of the entity's values as they change (the current values first); `since` is not used: OPC-UA
        keeps no history of changes here."""
        self.session.acquire()
        try:
            self.session.check_connected()
            seen: dict[str, int] = {}
            for batch in self.session.batches(self.entity):
                yield [self.session.record(change, seen) for change in batch]
        finally:
            self.session.release()

    def all_keys(self) -> set[str]:
        """Data changes are events, not a key set: always empty."""
        return set()


def _relative_path(mapping: NodeMapping) -> ua.RelativePath:
    """A browse path such as Objects/2:Plant/2:Press1 as hierarchical steps from the Root."""
    assert mapping.path is not None
    path = ua.RelativePath()
    for name in (part for part in mapping.path.strip("/").split("/") if part):
        element = ua.RelativePathElement()
        element.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
        # asyncua declares these fields with its own Boolean marker class, but encodes Python bools
        element.IsInverse = False  # type: ignore[assignment]
        element.IncludeSubtypes = True  # type: ignore[assignment]
        element.TargetName = ua.QualifiedName.from_string(name)
        path.Elements.append(element)
    return path
