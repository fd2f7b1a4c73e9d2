"""Delivering the change feed to event routes: a persisted cursor per route, at-least-once, one thread per route.

Each route follows the feed from its cursor (`route_cursor` in the relational store): it reads a page, lets the
route's role see it through the policy gate (governance/change_view.py), keeps what the route's filter passes,
publishes the CloudEvents (id = sequence number, so receivers and JetStream deduplicate redeliveries), and only then
moves its cursor past the page. A crash between publishing and moving the cursor redelivers the page with the same
ids; nothing is skipped. A failing endpoint backs off (1 s, 2 s, ... up to a minute) and the route is marked
suspended after five failures in a row — its events stay in the feed and it resumes from its cursor as soon as the
endpoint takes them. Routes never wait for each other. Among several runtimes on one store each route is delivered
by exactly one, through the same leased workers as connectors (`route:NAME`; connectors/leased_workers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from connectors.events.endpoint_base import EndpointOptions, EventEndpoint
from connectors.events.endpoints import open_endpoint
from connectors.events.errors import EndpointError
from connectors.leased_workers import LeasedWorkers
from connectors.leases import LeaseStore
from connectors.routes import Route
from governance.audit import AuditEvent, AuditLog, Decision
from governance.change_view import ChangeGate
from governance.identity import Subject
from governance.policy import Policy
from graph.feed import FeedError
from graph.relational import create_tables, relational_engine
from graph.store import GraphStore

SUSPEND_AFTER = 5  # failures in a row after which a route is reported suspended (it keeps retrying)
MAX_BACKOFF_SECONDS = 60.0
IDLE_POLL_SECONDS = 0.1  # how often an idle route looks at the feed's head

metadata = MetaData()
route_cursor_table = Table(
    "route_cursor",
    metadata,
    Column("route", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the last sequence number the route has dealt with
    Column("delivered", BigInteger, nullable=False, default=0),  # events published so far
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class RouteCursors:
    """Where each route stands in the feed (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def get(self, route: str) -> tuple[int, int]:
        """(last sequence number dealt with, events delivered) of `route`; (0, 0) for a new route."""
        t = route_cursor_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.seq, t.c.delivered).where(t.c.route == route)).first()
        return (int(row.seq), int(row.delivered)) if row is not None else (0, 0)

    def advance(self, route: str, seq: int, delivered: int) -> None:
        """Move `route`'s cursor to `seq`, counting `delivered` more events."""
        t, now = route_cursor_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            moved = conn.execute(update(t).where(t.c.route == route).values(
                seq=seq, delivered=t.c.delivered + delivered, updated_at=now)).rowcount
            if moved == 0:
                try:
                    conn.execute(insert(t).values(route=route, seq=seq, delivered=delivered, updated_at=now))
                except IntegrityError:  # created by another runtime an instant ago
                    conn.execute(update(t).where(t.c.route == route).values(
                        seq=seq, delivered=t.c.delivered + delivered, updated_at=now))

    def rewind(self, route: str, seq: int) -> None:
        """Deliver again from just after `seq` (replay)."""
        t, now = route_cursor_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            if conn.execute(update(t).where(t.c.route == route).values(seq=seq, updated_at=now)).rowcount == 0:
                conn.execute(insert(t).values(route=route, seq=seq, delivered=0, updated_at=now))


@dataclass(frozen=True)
class RouteStatus:
    """Where one route stands in this runtime."""

    route: str
    endpoint: str  # credentials redacted
    held: bool = False
    cursor: int = 0
    delivered: int = 0
    failures: int = 0
    suspended: bool = False
    last_error: str | None = None
    last_delivery: datetime | None = None


class RouteRuntime(LeasedWorkers[RouteStatus]):
    """Delivers the feed to every route, each in its own thread, while this runtime holds the route's lease."""

    def __init__(
        self,
        routes: list[Route],
        store: GraphStore,
        policy: Policy,
        cursors: RouteCursors,
        leases: LeaseStore,
        *,
        source: str,
        holder: str,
        audit: AuditLog,
        lease_seconds: float = 30.0,
    ) -> None:
        super().__init__({r.name: RouteStatus(r.name, redacted(r.endpoint)) for r in routes}, leases, holder,
                         lease_seconds, lease_prefix="route:", thread_prefix="route")
        self.routes = {route.name: route for route in routes}
        self.store = store
        self.policy = policy
        self.cursors = cursors
        self.source = source
        self.audit = audit

    def work(self, name: str) -> None:
        """Follow the feed from the route's cursor and publish what its role and filter let through."""
        route = self.routes[name]
        subject = Subject(sub=f"route:{name}", roles=frozenset({route.role}), org_unit=route.org_unit)
        gate = ChangeGate(self.policy, subject, self.store)
        endpoint: EventEndpoint | None = None
        failures = 0
        try:
            while not self.stopping.is_set():
                if not self.held(name):
                    self.stopping.wait(min(1.0, self.lease_seconds / 3))
                    continue
                try:
                    cursor, _ = self.cursors.get(name)
                    page = self.store.feed.read(cursor, route.batch)
                    if not page:
                        self.update(name, cursor=cursor)
                        self.stopping.wait(IDLE_POLL_SECONDS)
                        continue
                    events = [route.event(view, self.source) for view in gate.view(page) if route.filter.passes(view)]
                    if events:
                        if endpoint is None:
                            endpoint = open_route_endpoint(route)
                        endpoint.publish(events)
                        self.audit.append(AuditEvent.for_subject(
                            subject, "route.deliver", Decision.ALLOW, rows_returned=len(events),
                            variables={"route": name, "from": page[0].seq, "to": page[-1].seq},
                            policy_version=self.policy.version, detail=redacted(route.endpoint)))
                    self.cursors.advance(name, page[-1].seq, len(events))
                    failures = 0
                    seq, delivered = self.cursors.get(name)
                    self.update(name, cursor=seq, delivered=delivered, failures=0, suspended=False, last_error=None,
                                 last_delivery=datetime.now(UTC) if events else self.current(name).last_delivery)
                except (EndpointError, FeedError, OSError) as exc:
                    failures += 1
                    if endpoint is not None:  # a fresh connection on the next try
                        _close_quietly(endpoint)
                        endpoint = None
                    self.update(name, failures=failures, suspended=failures >= SUSPEND_AFTER,
                                 last_error=f"{type(exc).__name__}: {str(exc)[:300]}")
                    self.stopping.wait(min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1)))
        finally:
            if endpoint is not None:
                _close_quietly(endpoint)


def open_route_endpoint(route: Route) -> EventEndpoint:
    """The route's endpoint, connected."""
    return open_endpoint(route.endpoint, EndpointOptions(webhook_secret=route.secret,
                                                         client_name=f"enterprise-twin-route-{route.name}"))


def _close_quietly(endpoint: EventEndpoint) -> None:
    """Close an endpoint whose connection may already be broken."""
    try:
        endpoint.close()
    except Exception:  # noqa: BLE001 - closing a broken connection has nothing left to report
        return


def redacted(url: str) -> str:
    """The URL without its password, for status and errors."""
    from connectors.events.endpoint_url import parse_endpoint_url

    try:
        return parse_endpoint_url(url).redacted
    except EndpointError:
        return url.split("@")[-1] if "@" in url else url

