"""Event endpoints: twin changes delivered as CloudEvents 1.0 to NATS JetStream, Kafka-protocol brokers,
RabbitMQ, Redis Streams, MQTT and signed webhooks (issue 15, event routes)."""

from .cloudevent import (
    InvalidEventError,
    TwinEvent,
    from_cloudevent_json,
    to_cloudevent_json,
)
from .endpoint_base import EndpointOptions, EventEndpoint
from .endpoint_url import redact_url
from .endpoints import open_endpoint
from .errors import (
    EndpointClosed,
    EndpointConfigError,
    EndpointError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
)
from .webhook_signature import (
    WebhookSignatureError,
    verify_webhook_signature,
    webhook_signature,
)

__all__ = [
    "EndpointClosed",
    "EndpointConfigError",
    "EndpointError",
    "EndpointOptions",
    "EndpointRefused",
    "EndpointTimeout",
    "EndpointUnreachable",
    "EventEndpoint",
    "InvalidEventError",
    "TwinEvent",
    "WebhookSignatureError",
    "from_cloudevent_json",
    "open_endpoint",
    "redact_url",
    "to_cloudevent_json",
    "verify_webhook_signature",
    "webhook_signature",
]
