"""Action types that tell other systems: `event.publish` publishes a CloudEvent to an event route of routes.yaml (any
broker the routes reach: MQTT, AMQP, NATS, Redis, Kafka, a webhook), and `webhook.call` posts one to a route whose
endpoint is an HTTP(S) webhook (signed with the route's secret, as the route's own deliveries are).

Only configured routes can be named, so an approved proposal never reaches an address the operator did not set up.
The event's id is `decision:<proposal id>`: delivery is at least once (a retry after a crash publishes it again) and a
consumer deduplicates by the id, as it does for the routes' change events. A failed delivery aborts the action and is
retried with back-off (governance/decisions/execution.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.errors import ConnectorError
from connectors.events.cloudevent import TwinEvent
from connectors.events.errors import EndpointError
from connectors.route_delivery import open_route_endpoint, redacted
from connectors.routes import Route
from governance.decisions.actions import ActionType, WritebackFailed
from governance.identity import Subject

SOURCE = "/enterprise-twin/decisions"
_TYPE = r"^[a-z][a-zA-Z0-9_.-]{0,63}$"


class PublishParameters(BaseModel):
    """Publish `data` as an event of `type` about twin `subject` on the route called `route`."""

    model_config = ConfigDict(extra="forbid")
    route: str = Field(min_length=1, max_length=128)
    type: str = Field(default="proposal", pattern=_TYPE)
    subject: str = Field(min_length=1, max_length=512)
    data: dict[str, Any] = Field(default_factory=dict)


class WebhookParameters(BaseModel):
    """Post `body` about twin `subject` to the webhook of the route called `route`."""

    model_config = ConfigDict(extra="forbid")
    route: str = Field(min_length=1, max_length=128)
    subject: str = Field(min_length=1, max_length=512)
    body: dict[str, Any] = Field(default_factory=dict)


def decision_event(proposal_id: str, kind: str, subject: str, data: dict[str, Any], actor: Subject) -> TwinEvent:
    """The CloudEvent an action sends: id `decision:<proposal id>`, type `decision.<kind>`."""
    return TwinEvent(
        id=f"decision:{proposal_id}",
        source=SOURCE,
        type=f"decision.{kind}",
        subject=subject,
        time=datetime.now(UTC),
        data={"proposal": proposal_id, "approvedFor": actor.sub, **data},
    )


def _route(routes: Callable[[], Sequence[Route]], name: str) -> Route:
    try:
        found = {route.name: route for route in routes()}
    except (ConnectorError, ValueError) as exc:
        raise WritebackFailed(f"the event routes cannot be loaded: {str(exc)[:300]}") from None
    if name not in found:
        raise WritebackFailed(f"no event route {name!r}; known: {', '.join(sorted(found)) or 'none'}")
    return found[name]


def _send(route: Route, event: TwinEvent) -> str:
    try:
        endpoint = open_route_endpoint(route)
        try:
            endpoint.publish([event])
        finally:
            endpoint.close()
    except (EndpointError, ConnectorError, OSError) as exc:
        raise WritebackFailed(f"route {route.name} ({redacted(route.endpoint)}) refused the event: {exc}") from None
    return f"event {event.id} -> {route.name}"


def event_actions(routes: Callable[[], Sequence[Route]]) -> list[ActionType]:
    """`event.publish` and `webhook.call` over the routes `routes()` loads (DATA_DIR/routes.yaml)."""

    def publish(proposal_id: str, params: Any, actor: Subject) -> str:
        route = _route(routes, params.route)
        return _send(route, decision_event(proposal_id, params.type, params.subject, dict(params.data), actor))

    def call(proposal_id: str, params: Any, actor: Subject) -> str:
        route = _route(routes, params.route)
        if not route.endpoint.lower().startswith(("http://", "https://")):
            raise WritebackFailed(f"route {route.name} is not a webhook ({redacted(route.endpoint)})")
        return _send(route, decision_event(proposal_id, "webhook", params.subject, {"body": dict(params.body)}, actor))

    return [
        ActionType(
            "event.publish",
            PublishParameters,
            "Publish a CloudEvent (id decision:<proposal id>) to a configured event route.",
            effect=publish,
        ),
        ActionType(
            "webhook.call",
            WebhookParameters,
            "POST a signed CloudEvent (id decision:<proposal id>) to a configured webhook route.",
            effect=call,
        ),
    ]
