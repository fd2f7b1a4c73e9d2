"""MQTT telemetry as a Source (paho-mqtt): messages of a topic filter become records, acknowledged once the sync
has committed them.

Each message's JSON object becomes the record's fields, plus ``topic`` and the topic's levels ``topic_0``,
``topic_1``, ... (so a uid rule can use ``{topic_2}``). The record key is ``<topic>@<time field>`` (or the
message id when the payload has no time). A payload that is not a JSON object is handed on marked invalid, so the
sync quarantines it with the reason.

Delivery: the client uses a persistent session (fixed client id, clean_session=False) and QoS 1 with manual
acknowledgement. A message is acknowledged only when the consumer calls `acknowledge(page)` for the page holding it
(connectors.source.AcknowledgingSource): the sync engine does so from its committer once the page's relational
commit (telemetry, ledger, quarantine) is durable, never merely when it asks for the next page, since that commit
runs on a background thread. The session stays open after the read ends until every page handed out is
acknowledged or `close()` is called (the engine closes each source after its entity); the broker redelivers
unacknowledged messages to the next session, and the telemetry table ignores re-delivered readings, so a crash or a
failed commit loses nothing and duplicates nothing.

A read hands on a batch as soon as the flow has been quiet for `batch_quiet` seconds (default 0.02 s), at the latest
`max_batch_delay` seconds (0.25 s) after its first message or at `batch_size` messages, and ends once the topic has
been quiet for `idle_timeout` seconds or `duration` seconds passed (connectors/message_batches.py): a bounded run for
`twin connect run`; the runtime's `continuous` schedule starts the next read as one ends.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt

from connectors.message_batches import MAX_DELAY_SECONDS, QUIET_SECONDS, BatchWindow
from connectors.quarantine import INVALID_FIELD
from connectors.source import SourceError, SourceRecord, Watermark, change_time


class MqttSource:
    """Messages of one topic filter on an MQTT broker, drained in batches."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        topic: str,
        client_id: str,
        time_field: str = "ts",
        qos: int = 1,
        batch_size: int = 500,
        idle_timeout: float = 1.0,
        duration: float = 30.0,
        batch_quiet: float = QUIET_SECONDS,
        max_batch_delay: float = MAX_DELAY_SECONDS,
        connect_timeout: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        name: str | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.topic = topic
        self.client_id = client_id
        self.time_field = time_field
        self.qos = qos
        self.window = BatchWindow(batch_size, batch_quiet, max_batch_delay, idle_timeout, duration)
        self.connect_timeout = connect_timeout
        self.name = name or f"mqtt:{topic}"
        self._credentials = (username, password)
        # the open session: its client, the pages handed out and not acknowledged (with their QoS>0 messages), and
        # whether a read is still handing out pages; guarded by the lock (the engine acknowledges from its committer)
        self._lock = threading.Lock()
        self._session: mqtt.Client | None = None
        self._unacknowledged: deque[tuple[list[SourceRecord], list[mqtt.MQTTMessage]]] = deque()
        self._reading = False

    def __repr__(self) -> str:
        return f"MqttSource(name={self.name!r}, broker={self.host}:{self.port})"

    def _client(self, inbox: queue.Queue[mqtt.MQTTMessage], ready: threading.Event, failure: list[str]) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False, manual_ack=True
        )
        if self._credentials[0]:
            client.username_pw_set(*self._credentials)

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if reason.is_failure:
                failure.append(str(reason))
                ready.set()
                return
            client.subscribe(self.topic, qos=self.qos)

        def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
            ready.set()

        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            inbox.put(message)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        return client

    def read(self, since: Watermark | None) -> Iterator[list[SourceRecord]]:
        """Batches of the messages that arrive (and those queued for this session); `since` is not used. Each page
        stays unacknowledged until `acknowledge(page)`."""
        self.close()  # a session a previous read left open: its unacknowledged messages are delivered again
        inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        ready = threading.Event()
        failure: list[str] = []
        client = self._client(inbox, ready, failure)
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise SourceError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc.strerror or exc}",
                model=self.name,
                method="connect",
            ) from None
        client.loop_start()
        with self._lock:
            self._session, self._reading = client, True
        try:
            if not ready.wait(self.connect_timeout) or failure:
                raise SourceError(
                    f"the broker refused the session: {failure[0] if failure else 'timeout'}",
                    model=self.name,
                    method="connect",
                )
            for batch in self.window.batches(inbox):
                page = [self._record(m) for m in batch]
                with self._lock:
                    if self._session is not client:  # closed while the consumer held the previous page
                        return
                    self._unacknowledged.append((page, [m for m in batch if m.qos > 0]))
                yield page
        finally:  # the session stays open while pages wait for their acknowledgement (or until close())
            with self._lock:
                self._reading = False
                done = self._session is client and not self._unacknowledged
            if done:
                self._end(client)

    def acknowledge(self, page: list[SourceRecord]) -> None:
        """Acknowledge the messages of `page` (the list object a read handed out) and of every page before it, once
        the consumer has made them durable; the session ends when the read is over and nothing waits. A page of a
        session already closed is ignored (its messages come again)."""
        with self._lock:
            client = self._session
            if client is None:
                return
            if not any(each is page for each, _ in self._unacknowledged):
                raise SourceError(
                    "acknowledged a page this session did not hand out (or acknowledged it twice)",
                    model=self.name,
                    method="acknowledge",
                )
            while self._unacknowledged:
                each, messages = self._unacknowledged.popleft()
                for message in messages:
                    client.ack(message.mid, message.qos)
                if each is page:
                    break
            done = not self._reading and not self._unacknowledged
            if done:
                self._session = None
        if done:
            self._end(client)

    def close(self) -> None:
        """End the session; messages not acknowledged stay with the broker's session for the next read."""
        with self._lock:
            client, self._session = self._session, None
            self._unacknowledged.clear()
        if client is not None:
            self._end(client)

    def _end(self, client: mqtt.Client) -> None:
        """DISCONNECT goes out through the network loop (after any acknowledgement queued), which then ends."""
        with self._lock:
            if self._session is client:
                self._session = None
        client.disconnect()
        client.loop_stop()

    def _record(self, message: mqtt.MQTTMessage) -> SourceRecord:
        levels = message.topic.split("/")
        fields: dict[str, Any] = {"topic": message.topic, **{f"topic_{i}": level for i, level in enumerate(levels)}}
        try:
            payload = json.loads(message.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            payload = None
            fields[INVALID_FIELD] = f"payload is not JSON: {exc}"
            fields["payload"] = message.payload[:500].decode("utf-8", "replace")
        if payload is not None and not isinstance(payload, dict):
            fields[INVALID_FIELD] = f"payload is a JSON {type(payload).__name__}, not an object"
            fields["payload"] = payload
        elif isinstance(payload, dict):
            fields.update(payload)
        changed = change_time(fields.get(self.time_field))
        key = f"{message.topic}@{changed.isoformat() if changed else message.mid}"
        return SourceRecord(key, fields, changed)

    def all_keys(self) -> set[str]:
        """Telemetry has no key set to compare (messages are events): always empty."""
        return set()


def publish(
    host: str, port: int, topic: str, payloads: list[dict[str, Any] | bytes], *, qos: int = 1, client_id: str = ""
) -> None:
    """Publish messages and wait until the broker has them (a helper for tools and tests)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        for payload in payloads:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
            info = client.publish(topic, body, qos=qos)
            info.wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()
