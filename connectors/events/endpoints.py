"""Event endpoints: deliver twin events as CloudEvents to a broker or webhook named by a URL.

``open_endpoint(url, options)`` picks the transport by scheme and returns a connected ``EventEndpoint``:

============================  ===========================================  ==============================
scheme                        what publish() does                          client
============================  ===========================================  ==============================
``nats://``                   JetStream publish, ``Nats-Msg-Id`` = id      nats-py
``kafka://``                  produce, key = uid, acks=all                 faststream (aiokafka)
``amqp://`` ``amqps://``      confirmed persistent publish, message_id=id  faststream (aio-pika)
``redis://`` ``rediss://``    XADD (pipelined), optional MAXLEN ~          redis-py
``mqtt://`` ``mqtts://``      QoS 1 publish, waits for PUBACK              paho-mqtt
``http://`` ``https://``      signed POST per event, 2xx required          httpx
============================  ===========================================  ==============================

Every endpoint is synchronous for its caller (the delivery loop runs in a worker thread); the asyncio
clients run on an event loop the endpoint owns. ``submit()`` sends a batch and returns its ``Delivery`` (a future
completed when every event is acknowledged), so a caller keeps the next batches in flight while the acknowledgements
of the previous ones arrive; ``publish()`` waits for it. Both are all-or-raise and at-least-once: when a batch
fails, some of its events (and of the batches submitted after it) may have been delivered, and the caller resends
from its first unacknowledged event with the same ids. Errors
are ``EndpointError`` subclasses whose messages show the URL with credentials redacted. Each module's
docstring says why its client was chosen.
"""

from __future__ import annotations

from collections.abc import Callable

from .endpoint_base import EndpointBase, EndpointOptions, EventEndpoint
from .endpoint_url import EndpointAddress, parse_endpoint_url
from .errors import EndpointConfigError


def _nats(address: EndpointAddress, options: EndpointOptions) -> EndpointBase:
    from .nats_endpoint import NatsJetStreamEndpoint

    return NatsJetStreamEndpoint(address, options)


def _kafka(address: EndpointAddress, options: EndpointOptions) -> EndpointBase:
    from .kafka_endpoint import KafkaEndpoint

    return KafkaEndpoint(address, options)


def _amqp(address: EndpointAddress, options: EndpointOptions) -> EndpointBase:
    from .amqp_endpoint import AmqpEndpoint

    return AmqpEndpoint(address, options)


def _redis(address: EndpointAddress, options: EndpointOptions) -> EndpointBase:
    from .redis_endpoint import RedisStreamEndpoint

    return RedisStreamEndpoint(address, options)


def _mqtt(address: EndpointAddress, options: EndpointOptions) -> EndpointBase:
    from .mqtt_endpoint import MqttEndpoint

    return MqttEndpoint(address, options)


def _webhook(address: EndpointAddress, options: EndpointOptions) -> EndpointBase:
    from .webhook_endpoint import WebhookEndpoint

    return WebhookEndpoint(address, options)


#: Scheme -> endpoint factory (imports are lazy: a route to Redis does not load the Kafka client).
ENDPOINT_SCHEMES: dict[str, Callable[[EndpointAddress, EndpointOptions], EndpointBase]] = {
    "nats": _nats,
    "kafka": _kafka,
    "amqp": _amqp,
    "amqps": _amqp,
    "redis": _redis,
    "rediss": _redis,
    "mqtt": _mqtt,
    "mqtts": _mqtt,
    "http": _webhook,
    "https": _webhook,
}


def open_endpoint(url: str, options: EndpointOptions | None = None) -> EventEndpoint:
    """Connect to the endpoint a URL names; raise EndpointConfigError/Unreachable/Refused if it cannot be used."""
    address = parse_endpoint_url(url)
    factory = ENDPOINT_SCHEMES.get(address.scheme)
    if factory is None:
        raise EndpointConfigError(
            address.redacted, f"unknown scheme {address.scheme!r:.20}; known: {', '.join(sorted(ENDPOINT_SCHEMES))}"
        )
    return factory(address, options or EndpointOptions())
