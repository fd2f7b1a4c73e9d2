"""Delivering the change feed to event routes: a persisted cursor per route, at-least-once, one thread per route.

Each route follows the feed from its cursor (`route_cursor` in the relational store): it reads a page, lets the
route's role see it through the policy gate (governance/change_view.py), keeps what the route's filter passes and
submits the CloudEvents to its endpoint (id = sequence number, so receivers and JetStream deduplicate redeliveries).
Up to `ROUTE_WINDOW` pages are in flight: the next page is submitted while the previous ones' acknowledgements are
on their way (the endpoint sends them in feed order, connectors/events/endpoint_base.py), and the cursor moves
only past the leading pages whose every event was acknowledged, so it never passes an unacknowledged event. A crash
between sending and moving the cursor redelivers the pages since the cursor with the same ids; nothing is skipped.
When a page fails, the pages after it are dropped too and delivery resumes after the last acknowledged page: a
receiver may then see events of later pages before the redelivery of the failed ones (order holds between
failures; dedup by id). A failing endpoint backs off (1 s, 2 s, ... up to a minute) and the
route is marked suspended after five failures in a row — its events stay in the feed and it resumes from its cursor
as soon as the endpoint takes them. Routes never wait for each other. Among several runtimes on one store each route
is delivered by exactly one, through the same leased workers as connectors (`route:NAME`;
connectors/leased_workers.py).

Throughput: while pages are being published, a second thread of the route already reads, gates and encodes the
next one (`PreparedPage`), so the feed read, the policy and the CloudEvent encoding overlap the broker's
acknowledgements. The cursor is written after the first page acknowledged `PERSIST_SECONDS` after the last write
while the route is behind, and at once when it reaches the feed's head, fails or stops; a crash therefore
redelivers about that much (same ids). Writing the
cursor is a compare-and-set against the value this runtime last wrote, so a `twin routes replay` that rewound it
meanwhile is noticed and delivery restarts from the rewound place.

OpenLineage routes (`openlineage:` in routes.yaml) deliver the run events of every connector sync run instead
(START when a run is first seen, COMPLETE/FAIL/ABORT once it ended, built by governance/provenance_export.py). The
sync-run log (`lineage_run`) is updated in place as runs end and has no sequence of its own, so an OpenLineage
route's cursor is the set of what it has sent: `openlineage_delivery` (route, run id, `start` or `final`), written
only after the endpoint accepted the events — at-least-once, with the same retries, back-off and suspension.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from connectors.events.cloudevent import InvalidEventError, TwinEvent
from connectors.events.endpoint_base import Delivery, EndpointOptions, EventEndpoint, delivered
from connectors.events.endpoints import open_endpoint
from connectors.events.errors import EndpointError
from connectors.events.openlineage_endpoint import OpenLineageEndpoint
from connectors.leased_workers import LeasedWorkers
from connectors.leases import LeaseStore
from connectors.routes import Route
from connectors.sync.pacing import freeze_startup_objects
from governance.audit import AuditEvent, AuditLog, Decision
from governance.change_view import ChangeGate
from governance.errors import LineageError
from governance.identity import Subject
from governance.lineage import LineageStore, RunKind, RunStatus, lineage_run_table
from governance.policy import Policy
from governance.provenance_export import to_openlineage
from graph.errors import GraphError
from graph.relational import create_tables, relational_engine
from graph.store import GraphStore

log = logging.getLogger(__name__)
SUSPEND_AFTER = 5  # failures in a row after which a route is reported suspended (it keeps retrying)
MAX_BACKOFF_SECONDS = 60.0
IDLE_POLL_SECONDS = 0.1  # how often an idle route looks at the feed's head
FIRST_PAGE = 50  # changes read first after a start, an idle spell or a failure, before full batches
ROUTE_WINDOW = 4  # pages submitted to the endpoint and not yet acknowledged at most
PERSIST_SECONDS = 0.5  # how long a route behind the head delivers before it writes its cursor again
LINEAGE_POLL_SECONDS = 1.0  # how often an OpenLineage route looks for new or ended runs
LINEAGE_RECORDS = 20_000  # provenance records read per run for the column-lineage facet
LINEAGE_OPERATION = "lineage.export"  # what an OpenLineage route's role must be allowed

metadata = MetaData()
route_cursor_table = Table(
    "route_cursor",
    metadata,
    Column("route", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the last sequence number the route has dealt with
    Column("delivered", BigInteger, nullable=False, default=0),  # events published so far
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
openlineage_delivery_table = Table(
    "openlineage_delivery",
    metadata,
    Column("route", String(128), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("sent", String(8), nullable=False),  # start | final
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class RouteCursors:
    """Where each route stands in the feed (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def get(self, route: str) -> tuple[int, int]:
        """(last sequence number dealt with, events delivered) of `route`; (0, 0) for a new route."""
        t = route_cursor_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.seq, t.c.delivered).where(t.c.route == route)).first()
        return (int(row.seq), int(row.delivered)) if row is not None else (0, 0)

    def advance(self, route: str, seq: int, delivered: int, expected: int | None = None) -> bool:
        """Move `route`'s cursor to `seq`, counting `delivered` more events; with `expected`, only if the cursor is
        still there (False, counting the events but not moving, when a replay rewound it meanwhile)."""
        t, now = route_cursor_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            where = [t.c.route == route] + ([t.c.seq == expected] if expected is not None else [])
            moved = conn.execute(
                update(t).where(*where).values(seq=seq, delivered=t.c.delivered + delivered, updated_at=now)
            ).rowcount
            if moved:
                return True
            if expected is not None and conn.execute(select(t.c.seq).where(t.c.route == route)).first() is not None:
                conn.execute(update(t).where(t.c.route == route).values(delivered=t.c.delivered + delivered))
                return False
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(route=route, seq=seq, delivered=delivered, updated_at=now))
            except IntegrityError:  # created by another runtime an instant ago
                conn.execute(
                    update(t)
                    .where(t.c.route == route)
                    .values(seq=seq, delivered=t.c.delivered + delivered, updated_at=now)
                )
            return True

    def rewind(self, route: str, seq: int) -> None:
        """Deliver again from just after `seq` (replay)."""
        t, now = route_cursor_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            if conn.execute(update(t).where(t.c.route == route).values(seq=seq, updated_at=now)).rowcount == 0:
                conn.execute(insert(t).values(route=route, seq=seq, delivered=0, updated_at=now))

    def unsent_runs(self, route: str, limit: int) -> list[tuple[str, str | None]]:
        """(run id, what the route already sent of it: None or 'start') of the connector runs whose START or final
        event `route` has not delivered yet, oldest first."""
        r, d = lineage_run_table, openlineage_delivery_table
        joined = r.outerjoin(d, and_(d.c.route == route, d.c.run_id == r.c.run_id))
        query = (
            select(r.c.run_id, d.c.sent)
            .select_from(joined)
            .where(
                r.c.kind == RunKind.CONNECTOR.value,
                or_(d.c.run_id.is_(None), and_(d.c.sent == "start", r.c.status != RunStatus.RUNNING.value)),
            )
            .order_by(r.c.started_at, r.c.run_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(row.run_id, row.sent) for row in conn.execute(query)]

    def mark_sent(self, route: str, sent: dict[str, str]) -> None:
        """Record that `route` delivered these runs' events (run id -> 'start' or 'final')."""
        t, now = openlineage_delivery_table, datetime.now(UTC)
        with self.engine.begin() as conn:
            for run_id, what in sent.items():
                if (
                    conn.execute(
                        update(t).where(t.c.route == route, t.c.run_id == run_id).values(sent=what, updated_at=now)
                    ).rowcount
                    == 0
                ):
                    conn.execute(insert(t).values(route=route, run_id=run_id, sent=what, updated_at=now))

    def sent_runs(self, route: str) -> int:
        """How many runs `route` has sent events of."""
        t = openlineage_delivery_table
        with self.engine.connect() as conn:
            return len(conn.execute(select(t.c.run_id).where(t.c.route == route)).all())


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
    condition_errors: int = 0  # changes the route's condition could not be evaluated on (counted as not matched)


@dataclass(frozen=True)
class PreparedPage:
    """One page of the feed made ready for a route: its last sequence number, size and the events it yields."""

    first: int
    last: int
    size: int
    events: list[TwinEvent] = field(default_factory=list)


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
        lineage: LineageStore | None = None,
    ) -> None:
        super().__init__(
            {r.name: RouteStatus(r.name, redacted(r.endpoint)) for r in routes},
            leases,
            holder,
            lease_seconds,
            lease_prefix="route:",
            thread_prefix="route",
        )
        self.routes = {route.name: route for route in routes}
        self.store = store
        self.policy = policy
        self.cursors = cursors
        self.source = source
        self.audit = audit
        if lineage is None and any(route.kind == "openlineage" for route in routes):
            lineage = LineageStore(cursors.url)  # runs and their records; no value digests are read
        self.lineage = lineage

    def start(self) -> None:
        """Start delivering (the process's startup objects frozen first, see `freeze_startup_objects`)."""
        if self.routes:
            freeze_startup_objects()
        super().start()

    def work(self, name: str) -> None:
        """Deliver to the route while this runtime holds its lease: the feed, or the sync runs' lineage."""
        if self.routes[name].kind == "openlineage":
            self._deliver_lineage(name)
        else:
            self._deliver_feed(name)

    def _prepare(self, route: Route, gate: ChangeGate, after: int, limit: int) -> PreparedPage:
        """Read the page after `after`, let the route's role see it and build the events its filter passes."""
        page = self.store.feed.read(after, limit)
        if not page:
            return PreparedPage(after, after, 0)
        events = [route.event(view, self.source) for view in gate.view(page) if route.filter.passes(view)]
        for event in events:
            event.body  # noqa: B018 - encoded here, off the endpoint's send loop
        return PreparedPage(page[0].seq, page[-1].seq, len(page), events)

    def _deliver_feed(self, name: str) -> None:
        """Follow the feed from the route's cursor and publish what its role and filter let through, keeping up to
        `ROUTE_WINDOW` pages submitted and unacknowledged; the cursor moves only past acknowledged pages."""
        route = self.routes[name]
        subject = Subject(sub=f"route:{name}", roles=frozenset({route.role}), org_unit=route.org_unit)
        gate = ChangeGate(self.policy, subject, self.store)
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"route-{name}-read")
        endpoint: EventEndpoint | None = None
        failures = 0
        cursor: int | None = None  # the last sequence number acknowledged (None: read the stored cursor)
        sent = 0  # the last sequence number submitted to the endpoint (>= cursor)
        stored = 0  # the cursor as this runtime last read or wrote it
        unsaved = 0  # events delivered since the cursor was written
        saved_at = time.monotonic()
        ahead: tuple[int, Future[PreparedPage]] | None = None  # the page being prepared, after which sequence number
        in_flight: deque[tuple[PreparedPage, Delivery]] = deque()  # submitted pages in feed order
        at_head = False  # the last page read was short: the route is at the feed's head

        def restart() -> None:
            """Forget what is in flight: delivery resumes from the stored cursor (redelivering, same ids)."""
            nonlocal cursor, ahead
            cursor, ahead = None, None
            in_flight.clear()

        def save() -> None:
            """Write the cursor (compare-and-set); a replay that rewound it meanwhile restarts delivery there."""
            nonlocal stored, unsaved, saved_at
            if cursor is None or (cursor == stored and not unsaved):
                return
            if self.cursors.advance(name, cursor, unsaved, expected=stored):
                stored = cursor
            else:
                restart()
            unsaved, saved_at = 0, time.monotonic()

        def settle(keep: int | None) -> None:
            """Move the cursor past the leading pages whose every event is acknowledged, waiting until at most `keep`
            pages are in flight (None: no waiting); a failed page raises its EndpointError."""
            nonlocal cursor, unsaved
            while in_flight:
                page, delivery = in_flight[0]
                while not delivery.done():
                    if keep is None or len(in_flight) <= keep or self.stopping.is_set():
                        return
                    futures_wait([delivery], timeout=IDLE_POLL_SECONDS)
                delivery.result()
                in_flight.popleft()
                if page.events:
                    self.audit.append(
                        AuditEvent.for_subject(
                            subject,
                            "route.deliver",
                            Decision.ALLOW,
                            rows_returned=len(page.events),
                            variables={"route": name, "from": page.first, "to": page.last},
                            policy_version=self.policy.version,
                            detail=redacted(route.endpoint),
                        )
                    )
                cursor, unsaved = page.last, unsaved + len(page.events)
                self._feed_status(name, route, page.last, failures=0, delivered=len(page.events))

        try:
            while not self.stopping.is_set():
                if not self.held(name):
                    restart()  # another runtime delivers; start afresh if it returns
                    unsaved = 0
                    self.stopping.wait(min(1.0, self.lease_seconds / 3))
                    continue
                try:
                    if cursor is None:
                        cursor, total = self.cursors.get(name)
                        stored = sent = cursor
                        self.update(name, cursor=cursor, delivered=total)
                    if ahead is None or ahead[0] != sent:  # a first page is small: publishing starts sooner
                        ahead = (sent, reader.submit(self._prepare, route, gate, sent, min(route.batch, FIRST_PAGE)))
                    if endpoint is None:  # connects while the first page is read
                        endpoint = open_route_endpoint(route)
                    settle(keep=ROUTE_WINDOW - 1)
                    if len(in_flight) >= ROUTE_WINDOW or cursor is None:
                        continue  # stopping, or a replay restarted delivery
                    page = ahead[1].result()
                    ahead = None
                    if not page.size:  # at the feed's head: let what is in flight land, then idle
                        at_head = True
                        settle(keep=0)
                        if in_flight or cursor is None:
                            continue
                        save()
                        if cursor is not None and cursor == stored:
                            rewound = self.cursors.get(name)[0]
                            if rewound != stored:  # a replay moved the cursor while the route was idle
                                cursor = stored = sent = rewound
                        self._feed_status(name, route, stored, failures=0)
                        failures = 0
                        self.stopping.wait(IDLE_POLL_SECONDS)
                        continue
                    # read on while this page publishes
                    ahead = (page.last, reader.submit(self._prepare, route, gate, page.last, route.batch))
                    in_flight.append((page, endpoint.submit(page.events) if page.events else delivered()))
                    sent = page.last
                    at_head = page.size < min(route.batch, FIRST_PAGE)
                    settle(keep=0 if at_head else None)
                    if cursor is not None and (
                        (at_head and not in_flight) or time.monotonic() - saved_at >= PERSIST_SECONDS
                    ):
                        save()
                    failures = 0
                except (EndpointError, GraphError, InvalidEventError, OSError, SQLAlchemyError) as exc:
                    failures += 1
                    with contextlib.suppress(EndpointError, OSError, SQLAlchemyError):
                        settle(keep=None)  # keep what was acknowledged before the failure; the rest is resent
                    try:
                        save()
                    except (OSError, SQLAlchemyError):
                        log.warning(
                            "route %s: cursor not written after a failure; it redelivers from the last written one",
                            name,
                        )
                    restart()  # resume from the stored cursor (redelivers, same ids)
                    unsaved = 0
                    if endpoint is not None:  # a fresh connection on the next try
                        _close_quietly(endpoint)
                        endpoint = None
                    self.update(
                        name,
                        failures=failures,
                        suspended=failures >= SUSPEND_AFTER,
                        last_error=f"{type(exc).__name__}: {str(exc)[:300]}",
                    )
                    self.stopping.wait(min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1)))
        finally:
            if self.held(name):
                try:
                    with contextlib.suppress(EndpointError):
                        settle(keep=None)  # what was acknowledged by now counts; the rest is resent
                    save()
                except (OSError, SQLAlchemyError) as exc:  # the next runtime redelivers from the stored cursor
                    log.warning("route %s: cursor not written on stop (%s)", name, type(exc).__name__)
            reader.shutdown(wait=True, cancel_futures=True)
            if endpoint is not None:
                _close_quietly(endpoint)

    def _feed_status(self, name: str, route: Route, cursor: int, *, failures: int, delivered: int = 0) -> None:
        """Record a successful step of a feed route in its status."""
        current = self.current(name)
        condition = route.filter.condition
        self.update(
            name,
            cursor=cursor,
            delivered=current.delivered + delivered,
            failures=failures,
            suspended=False,
            last_error=None,
            last_delivery=datetime.now(UTC) if delivered else current.last_delivery,
            condition_errors=condition.errors if condition is not None else 0,
        )

    def _deliver_lineage(self, name: str) -> None:
        """Send the START and final OpenLineage events of every connector run the route has not sent yet."""
        route = self.routes[name]
        subject = Subject(sub=f"route:{name}", roles=frozenset({route.role}))
        endpoint: OpenLineageEndpoint | None = None
        failures = 0
        try:
            while not self.stopping.is_set():
                if not self.held(name):
                    self.stopping.wait(min(1.0, self.lease_seconds / 3))
                    continue
                try:
                    problem = self._lineage_refusal(subject)
                    if problem is not None:  # fix routes.yaml or the policy; nothing is sent meanwhile
                        self.update(name, failures=SUSPEND_AFTER, suspended=True, last_error=problem)
                        self.stopping.wait(MAX_BACKOFF_SECONDS)
                        continue
                    unsent = self.cursors.unsent_runs(name, route.batch)
                    if not unsent:
                        self.update(
                            name, cursor=self.cursors.sent_runs(name), failures=0, suspended=False, last_error=None
                        )
                        self.stopping.wait(LINEAGE_POLL_SECONDS)
                        continue
                    events, sent = self._lineage_events(unsent)
                    if endpoint is None:
                        endpoint = OpenLineageEndpoint(
                            route.endpoint, api_key=route.api_key, client_name=f"enterprise-twin-route-{name}"
                        )
                    endpoint.send(events)
                    self.cursors.mark_sent(name, sent)
                    self.audit.append(
                        AuditEvent.for_subject(
                            subject,
                            "route.deliver",
                            Decision.ALLOW,
                            rows_returned=len(events),
                            variables={"route": name, "runs": sorted(sent)[:50]},
                            policy_version=self.policy.version,
                            detail=redacted(route.endpoint),
                        )
                    )
                    failures = 0
                    current = self.current(name)
                    self.update(
                        name,
                        cursor=self.cursors.sent_runs(name),
                        delivered=current.delivered + len(events),
                        failures=0,
                        suspended=False,
                        last_error=None,
                        last_delivery=datetime.now(UTC),
                    )
                except (EndpointError, LineageError, OSError, SQLAlchemyError) as exc:
                    failures += 1
                    if endpoint is not None:
                        endpoint.close()
                        endpoint = None
                    self.update(
                        name,
                        failures=failures,
                        suspended=failures >= SUSPEND_AFTER,
                        last_error=f"{type(exc).__name__}: {str(exc)[:300]}",
                    )
                    self.stopping.wait(min(MAX_BACKOFF_SECONDS, 2.0 ** (failures - 1)))
        finally:
            if endpoint is not None:
                endpoint.close()

    def _lineage_refusal(self, subject: Subject) -> str | None:
        """Why the route's role may not send lineage (None when it may)."""
        if self.lineage is None:
            return "this runtime was started without a lineage store"
        decision = self.policy.decide(subject, "operation", LINEAGE_OPERATION)
        if decision.allowed:
            return None
        return f"role {sorted(subject.roles)[0]!r} may not export lineage ({LINEAGE_OPERATION}): {decision.reason}"

    def _lineage_events(self, unsent: list[tuple[str, str | None]]) -> tuple[list[dict], dict[str, str]]:
        """The OpenLineage events still owed for these runs, and what each run's delivery record becomes."""
        assert self.lineage is not None
        events: list[dict] = []
        sent: dict[str, str] = {}
        for run_id, already in unsent:
            run = self.lineage.get_run(run_id)
            ended = run.status is not RunStatus.RUNNING and run.ended_at is not None
            records = self.lineage.records_of_run(run_id, limit=LINEAGE_RECORDS) if ended else []
            of_run = to_openlineage(run, records)
            events += of_run[1:] if already == "start" else of_run
            sent[run_id] = "final" if ended else "start"
        return events, sent


def open_route_endpoint(route: Route) -> EventEndpoint:
    """The route's endpoint, connected."""
    return open_endpoint(
        route.endpoint, EndpointOptions(webhook_secret=route.secret, client_name=f"enterprise-twin-route-{route.name}")
    )


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
