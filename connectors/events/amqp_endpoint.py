"""RabbitMQ (AMQP 0-9-1) endpoint: ``amqp[s]://user:pass@host[:5672]/VHOST?exchange=X&routing_key=Y``.

Each event is published to exchange X (default: the default exchange ``""``) with routing key Y, or the
event type (``twin.updated``) when no routing_key is given (for topic exchanges); properties: persistent
delivery, ``message_id`` = event id (consumers dedup redeliveries by it), ``content_type`` =
``application/cloudevents+json``, ``type`` = event type. The channel runs with publisher confirms and
``mandatory``: publish() returns when RabbitMQ has confirmed every message, and a message no queue would
take (returned as NO_ROUTE) fails the batch instead of vanishing.

Client: faststream's ``RabbitBroker`` (over aio-pika), the same abstraction as the Kafka endpoint.
Opening checks the exchange exists (passive declare) so a missing exchange is reported at open.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aio_pika.exceptions import (
    AMQPConnectionError,
    ChannelClosed,
    DeliveryError,
    ProbableAuthenticationError,
)
from aiormq.exceptions import ChannelNotFoundEntity, PublishError
from faststream.rabbit import RabbitBroker, RabbitExchange
from faststream.rabbit.schemas import Channel

from .cloudevent import STRUCTURED_CONTENT_TYPE, TwinEvent, to_cloudevent_json
from .endpoint_base import AsyncClientEndpoint, EndpointOptions, OrderedWindow
from .endpoint_url import EndpointAddress
from .errors import EndpointConfigError, EndpointRefused, EndpointUnreachable


class AmqpEndpoint(AsyncClientEndpoint):
    """Publishes persistent, confirmed CloudEvents to a RabbitMQ exchange."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        unknown = set(address.query) - {"exchange", "routing_key"}
        if unknown:
            raise EndpointConfigError(address.redacted, f"unknown query option(s) {sorted(unknown)}")
        if len(address.path_parts) > 1:
            raise EndpointConfigError(address.redacted, "expected amqp://user:pass@host:port/VHOST?exchange=X")
        self._exchange = address.query.get("exchange", "")
        # declare=False: the exchange is looked up passively, never created or redeclared with another type
        self._exchange_ref: RabbitExchange | str = (
            RabbitExchange(self._exchange, declare=False) if self._exchange else ""
        )
        self._routing_key = address.query.get("routing_key")
        if not self._exchange and not self._routing_key:
            raise EndpointConfigError(
                address.redacted, "the default exchange needs ?routing_key=QUEUE (or give ?exchange=NAME)"
            )
        self._broker: RabbitBroker | None = None
        self._window: OrderedWindow[None] | None = None
        super().__init__(address, options)

    async def _connect(self) -> None:
        address = self._address
        base = address.url.split("?", 1)[0]
        self._broker = RabbitBroker(
            base,
            timeout=self._options.connect_timeout_s,
            default_channel=Channel(publisher_confirms=True, on_return_raises=True),
            logger=None,
            apply_types=False,
        )
        try:
            await self._broker.connect()
        except ProbableAuthenticationError:
            raise EndpointRefused(self.url, "RabbitMQ refused the login (user, password or vhost)") from None
        except (AMQPConnectionError, OSError) as exc:
            raise EndpointUnreachable(self.url, f"RabbitMQ not reachable: {self._error_text(exc)}") from None
        if self._exchange:
            try:
                await self._broker.declare_exchange(self._exchange_ref)  # type: ignore[arg-type]
            except (ChannelNotFoundEntity, ChannelClosed):
                raise EndpointRefused(self.url, f"exchange {self._exchange!r} does not exist") from None

    async def _issue(self, events: list[TwinEvent]) -> Awaitable[object]:
        if self._window is None:
            self._window = OrderedWindow(self._publish_one, self._options.max_in_flight)
        return self._window.put(events)

    async def _publish_one(self, event: TwinEvent) -> None:
        assert self._broker is not None
        routing_key = self._routing_key or event.type
        try:
            await self._broker.publish(
                to_cloudevent_json(event),
                exchange=self._exchange_ref,
                routing_key=routing_key,
                persist=True,
                mandatory=True,
                message_id=event.id,
                message_type=event.type,
                content_type=STRUCTURED_CONTENT_TYPE,
                timeout=self._options.timeout_s,
            )
        except (PublishError, DeliveryError) as exc:
            raise EndpointRefused(
                self.url, f"event {event.id} not taken (routing key {routing_key!r}): {self._error_text(exc)}"
            ) from None
        except (AMQPConnectionError, ConnectionError) as exc:
            raise EndpointUnreachable(self.url, f"connection lost: {self._error_text(exc)}") from None

    async def _disconnect(self) -> None:
        if self._window is not None:
            await self._window.close()
        if self._broker is not None:
            await self._broker.stop()
