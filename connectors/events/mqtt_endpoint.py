"""MQTT endpoint: ``mqtt://[user:pass@]host[:1883]/TOPIC-PREFIX`` (``mqtts://`` for TLS, port 8883).

Each event is published with QoS 1 to topic ``TOPIC-PREFIX/<type>`` (``twin/events/twin.updated``;
subscribe to ``TOPIC-PREFIX/#`` for all) as the structured CloudEvent, over MQTT 5 with the Content Type
property ``application/cloudevents+json`` (the CloudEvents MQTT binding's structured mode). A batch is handed to
paho at once, in order, and its Delivery completes when the broker has sent PUBACK for every event (paho keeps up
to ``max_in_flight`` outstanding across batches); a disconnect or a missing PUBACK within ``timeout_s`` fails the
batch. Consumers dedup redeliveries by the
CloudEvent id.

Client: paho-mqtt (already the project's MQTT client; faststream's MQTT support would add another client
library, zmqtt, for no gain). paho runs its network loop in its own thread and reconnects by itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .cloudevent import STRUCTURED_CONTENT_TYPE, TwinEvent, to_cloudevent_json
from .endpoint_base import Delivery, EndpointBase, EndpointOptions
from .endpoint_url import EndpointAddress
from .errors import (
    EndpointConfigError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
)


def mqtt_topic(prefix: str, event_type: str) -> str:
    """The topic an event of this type is published to."""
    return f"{prefix}/{event_type}"


class MqttEndpoint(EndpointBase):
    """Publishes CloudEvents with QoS 1 and waits for every PUBACK."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        super().__init__(address, options)
        self._prefix = "/".join(address.path_parts).strip("/")
        if not self._prefix or set(self._prefix) & {"+", "#", "\x00"}:
            raise EndpointConfigError(address.redacted, "expected mqtt://host:port/TOPIC-PREFIX without wildcards")
        tls = address.scheme == "mqtts"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{options.client_name}-events-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        if tls:
            self._client.tls_set()
        self._client.max_inflight_messages_set(options.max_in_flight)
        self._client.connect_timeout = options.connect_timeout_s
        self._connected = threading.Event()
        self._connect_reason: Any = None
        self._client.on_connect = self._on_connect
        self._properties = Properties(PacketTypes.PUBLISH)
        self._properties.ContentType = STRUCTURED_CONTENT_TYPE
        try:
            self._client.connect(address.host, address.port or (8883 if tls else 1883), keepalive=30)
        except (OSError, ValueError) as exc:
            raise EndpointUnreachable(self.url, f"MQTT broker not reachable: {self._error_text(exc)}") from None
        self._client.loop_start()
        if not self._connected.wait(options.connect_timeout_s):
            self._stop_client()
            raise EndpointTimeout(self.url, f"no CONNACK within {options.connect_timeout_s:g} s")
        if self._connect_reason is not None and self._connect_reason.is_failure:
            self._stop_client()
            raise EndpointRefused(self.url, f"MQTT broker refused the connection: {self._connect_reason}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._connect_reason = reason_code
        self._connected.set()

    def _publish(self, events: list[TwinEvent]) -> None:
        self._submit(events, self._epoch).result()

    def _submit(self, events: list[TwinEvent], epoch: int) -> Delivery:
        """Hand every event to paho now, in order (paho keeps at most max_in_flight unacknowledged), and wait for
        the PUBACKs on the sender thread, so the next batch is queued while this one's are on their way."""
        if epoch != self._epoch:
            raise EndpointUnreachable(self.url, "not sent: a batch submitted before it failed")
        deadline = time.monotonic() + self._options.timeout_s
        pending = [
            (
                event,
                self._client.publish(
                    mqtt_topic(self._prefix, event.type),
                    to_cloudevent_json(event),
                    qos=1,
                    properties=self._properties,
                ),
            )
            for event in events
        ]
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-endpoint-mqtt")
        return self._sender.submit(self._await_pubacks, pending, deadline)

    def _await_pubacks(self, pending: list[tuple[TwinEvent, mqtt.MQTTMessageInfo]], deadline: float) -> None:
        """Wait until every event of a batch has its PUBACK, or fail the batch."""
        try:
            for event, info in pending:
                try:
                    info.wait_for_publish(timeout=max(deadline - time.monotonic(), 0.001))
                except (RuntimeError, ValueError) as exc:
                    raise EndpointUnreachable(self.url, f"event {event.id} not sent: {self._error_text(exc)}") from None
                if not info.is_published():
                    raise EndpointTimeout(
                        self.url, f"no PUBACK for event {event.id} within {self._options.timeout_s:g} s"
                    )
        except BaseException:
            self._failed()
            raise

    def _close(self) -> None:
        self._stop_client()

    def _stop_client(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
