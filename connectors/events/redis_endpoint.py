"""Redis Streams endpoint: ``redis://[user:pass@]host[:6379]/DB?stream=NAME[&maxlen=N]`` (``rediss://`` for TLS).

Each event is one XADD entry on stream NAME with fields ``id`` (event id), ``type``, ``subject``, ``time``,
``datacontenttype`` = ``application/cloudevents+json`` and ``event`` (the structured CloudEvent), so a
consumer can filter on the flat fields and still read the standard JSON. A batch goes in one pipeline
(one round-trip, in order); with maxlen the stream is trimmed approximately (``MAXLEN ~ N``). Consumers
dedup redeliveries by the ``id`` field (Redis has no broker-side dedup for auto-generated entry ids).

Client: redis-py, synchronous, already a project dependency. faststream's Redis publisher was left aside: it
wraps the body in its own envelope (a ``__data__`` field in faststream's binary format), which only a
faststream consumer can read; an event route must be readable by any Redis client.
"""

from __future__ import annotations

import redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from .cloudevent import STRUCTURED_CONTENT_TYPE, TwinEvent, to_cloudevent_json
from .endpoint_base import EndpointBase, EndpointOptions
from .endpoint_url import EndpointAddress
from .errors import (
    EndpointConfigError,
    EndpointError,
    EndpointRefused,
    EndpointTimeout,
    EndpointUnreachable,
)


class RedisStreamEndpoint(EndpointBase):
    """Appends CloudEvents to a Redis Stream with XADD."""

    def __init__(self, address: EndpointAddress, options: EndpointOptions) -> None:
        super().__init__(address, options)
        unknown = set(address.query) - {"stream", "maxlen"}
        if unknown:
            raise EndpointConfigError(address.redacted, f"unknown query option(s) {sorted(unknown)}")
        self._stream = address.query.get("stream", "")
        if not self._stream:
            raise EndpointConfigError(address.redacted, "expected redis://host:port/DB?stream=NAME")
        db_part = address.path_parts[0] if address.path_parts else ""
        if len(address.path_parts) > 1 or (db_part and not db_part.isdigit()):
            raise EndpointConfigError(address.redacted, f"the path must be a database number, got {db_part!r:.20}")
        maxlen_text = address.query.get("maxlen")
        if maxlen_text is not None and (not maxlen_text.isdigit() or int(maxlen_text) < 1):
            raise EndpointConfigError(address.redacted, f"maxlen must be a positive integer, got {maxlen_text!r:.20}")
        self._maxlen = int(maxlen_text) if maxlen_text else options.redis_maxlen
        self._client = redis.Redis(
            host=address.host,
            port=address.port or 6379,
            db=int(db_part or 0),
            username=address.username,
            password=address.password,
            ssl=address.scheme == "rediss",
            socket_connect_timeout=options.connect_timeout_s,
            socket_timeout=options.timeout_s,
            client_name=options.client_name,
        )
        try:
            self._client.ping()
        except (RedisError, OSError) as exc:
            self._client.close()
            raise self._translate(exc, "connecting") from None

    def _publish(self, events: list[TwinEvent]) -> None:
        pipeline = self._client.pipeline(transaction=False)
        for event in events:
            pipeline.xadd(
                self._stream,
                {
                    "id": event.id,
                    "type": event.type,
                    "subject": event.subject,
                    "time": event.time.isoformat(),
                    "datacontenttype": STRUCTURED_CONTENT_TYPE,
                    "event": to_cloudevent_json(event),
                },
                maxlen=self._maxlen,
                approximate=True,
            )
        try:
            results = pipeline.execute(raise_on_error=True)
        except RedisError as exc:
            raise self._translate(exc, f"XADD of {len(events)} event(s) to {self._stream!r}") from None
        if len(results) != len(events) or not all(results):
            raise EndpointRefused(self.url, f"Redis stored {sum(map(bool, results))} of {len(events)} events")

    def _close(self) -> None:
        self._client.close()

    def _translate(self, exc: BaseException, doing: str) -> EndpointError:
        """A redis-py error as the endpoint error it means."""
        text = f"{doing}: {self._error_text(exc)}"
        if isinstance(exc, RedisTimeoutError):
            return EndpointTimeout(self.url, text)
        if isinstance(exc, AuthenticationError) or (
            isinstance(exc, ResponseError) and ("NOAUTH" in str(exc) or "WRONGPASS" in str(exc))
        ):
            return EndpointRefused(self.url, f"Redis refused the login: {text}")
        if isinstance(exc, ConnectionError | OSError):
            return EndpointUnreachable(self.url, text)
        return EndpointRefused(self.url, text)
