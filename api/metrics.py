"""Prometheus metrics of the API (one registry per app, so several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    """Request counts and latencies, GraphQL operations by decision, graph round trips, audit failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("twin_api_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("twin_api_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
        self.operations = Counter("twin_graphql_operations_total", "GraphQL operations", ["decision"],
                                  registry=self.registry)
        self.round_trips = Counter("twin_graph_round_trips_total", "Graph backend queries sent by the API",
                                   registry=self.registry)
        self.rows = Counter("twin_api_twins_returned_total", "Twins returned", registry=self.registry)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
