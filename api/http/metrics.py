"""Prometheus metrics of the API (one registry per app, so several apps in one process do not collide)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    """Request counts and latencies, GraphQL operations by decision, graph round trips, audit failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "twin_api_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "twin_api_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.operations = Counter(
            "twin_graphql_operations_total", "GraphQL operations", ["decision"], registry=self.registry
        )
        self.round_trips = Counter(
            "twin_graph_round_trips_total", "Graph backend queries sent by the API", registry=self.registry
        )
        self.rows = Counter("twin_api_twins_returned_total", "Twins returned", registry=self.registry)
        self.audit_lost = Gauge(
            "twin_audit_events_lost", "Audit events not appended even after retries (logged)", registry=self.registry
        )

    def watch_audit(self, lost: Callable[[], int]) -> None:
        """Report the audit trail's lost events, read at each scrape (an alert should fire on any)."""
        self.audit_lost.set_function(lost)

    def watch_connectors(self, live: Any) -> None:
        """Report each scheduled connector of the runtime `live` (a SyncRuntime), read at each scrape."""
        self.registry.register(_ConnectorCollector(live))

    def watch_routes(self, routes: Any) -> None:
        """Report each event route of `routes` (a RouteRuntime), read at each scrape."""
        self.registry.register(_RouteCollector(routes))

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing HTTP requests by route.

    A plain ASGI wrapper rather than Starlette's `BaseHTTPMiddleware`, which costs a task and a stream per request.
    """

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the request on; count it with its route and final status, and observe its latency."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            label = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)


class _ConnectorCollector:
    """Per-connector gauges of the sync runtime: lag, consecutive failures, runs, last success, lease."""

    def __init__(self, live: Any) -> None:
        self.live = live

    def describe(self) -> list[Any]:
        """No fixed descriptions: the connectors are known only at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        """One sample per connector for each gauge."""
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "lag": GaugeMetricFamily(
                "twin_connector_lag_seconds",
                "Seconds since the start of the connector's last completed sync",
                labels=["connector"],
            ),
            "failures": GaugeMetricFamily("twin_connector_failures", "Consecutive failed syncs", labels=["connector"]),
            "runs": CounterMetricFamily("twin_connector_runs", "Syncs run by this runtime", labels=["connector"]),
            "success": GaugeMetricFamily(
                "twin_connector_last_success_timestamp_seconds",
                "Start of the last completed sync (epoch seconds)",
                labels=["connector"],
            ),
            "held": GaugeMetricFamily(
                "twin_connector_lease_held", "1 if this runtime holds the connector's lease", labels=["connector"]
            ),
            "quarantined": GaugeMetricFamily(
                "twin_connector_quarantined_rows", "Rows the last sync quarantined", labels=["connector"]
            ),
        }
        for status in self.live.status():
            name = [status.connector]
            families["lag"].add_metric(name, status.lag_seconds(self.live.started_at))
            families["failures"].add_metric(name, status.failures)
            families["runs"].add_metric(name, status.runs)
            if status.last_success is not None:
                families["success"].add_metric(name, status.last_success.timestamp())
            families["held"].add_metric(name, 1.0 if status.held else 0.0)
            families["quarantined"].add_metric(name, status.quarantined)
        yield from families.values()


class _RouteCollector:
    """Per-route figures of the event routes: cursor, events delivered, failures, suspension."""

    def __init__(self, routes: Any) -> None:
        self.routes = routes

    def describe(self) -> list[Any]:
        """No fixed descriptions: the routes are known only at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        """One sample per route for each figure."""
        cursor = GaugeMetricFamily(
            "twin_route_cursor", "Last change sequence number the route dealt with", labels=["route"]
        )
        delivered = CounterMetricFamily("twin_route_events_delivered", "Events the route published", labels=["route"])
        failures = GaugeMetricFamily("twin_route_failures", "Consecutive failed deliveries", labels=["route"])
        suspended = GaugeMetricFamily("twin_route_suspended", "1 while the route keeps failing", labels=["route"])
        condition = CounterMetricFamily(
            "twin_route_condition_errors",
            "Changes the route's condition could not be evaluated on (counted as not matched)",
            labels=["route"],
        )
        for status in self.routes.status():
            cursor.add_metric([status.route], status.cursor)
            delivered.add_metric([status.route], status.delivered)
            failures.add_metric([status.route], status.failures)
            suspended.add_metric([status.route], 1.0 if status.suspended else 0.0)
            condition.add_metric([status.route], status.condition_errors)
        yield from (cursor, delivered, failures, suspended, condition)
