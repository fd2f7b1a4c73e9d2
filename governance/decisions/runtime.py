"""The decisions runtime: follows the change feed from a persisted cursor and evaluates the automations watching
each change, runs schedule rules when due, expires proposals and executes approved ones — one thread.

The cursor moves only by compare-and-set after a page's firings are stored, so a crash re-evaluates the page; the
deduplication keys (one open alert per key, one open proposal per automation and twin) keep that from doubling
anything, and so do they when two runtimes follow one store. A new runtime starts at the feed's head.
A reload of automations.yaml (when the file changes) that fails keeps the previous set running.

With a `lease` (the runtime's holder takes a lease in the relational store, connectors/leases.py), only the runtime
that holds it evaluates automations and expires proposals; the others wait, and take over within one lease period
when the holder dies. Executions run in every runtime: each is claimed by one worker at a time (execution.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from governance.decisions.automations import AutomationError, AutomationRegistry
from governance.decisions.evaluation import EvaluationReport, Evaluator
from governance.decisions.execution import Executor
from governance.decisions.service import DecisionService
from graph.feed import FeedChange
from graph.relational import create_tables, relational_engine
from graph.store import GraphStore

logger = logging.getLogger(__name__)
PAGE = 1_000
IDLE_POLL_SECONDS = 0.2

metadata = MetaData()
cursor_table = Table(
    "decision_cursor",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class DecisionCursor:
    """Where the automations stand in the change feed."""

    def __init__(self, url: str, name: str = "automations") -> None:
        self.engine = relational_engine(url)
        self.name = name
        create_tables(self.engine, metadata)

    def get(self, start: int) -> int:
        """The last sequence number dealt with (`start` is stored for a cursor that does not exist yet)."""
        t = cursor_table
        with self.engine.begin() as conn:
            row = conn.execute(select(t.c.seq).where(t.c.name == self.name)).first()
            if row is not None:
                return int(row.seq)
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(name=self.name, seq=start, updated_at=datetime.now(UTC)))
            except IntegrityError:
                return int(conn.execute(select(t.c.seq).where(t.c.name == self.name)).scalar_one())
        return start

    def advance(self, seen: int, to: int) -> bool:
        """Move from `seen` to `to`; False when another runtime moved it meanwhile."""
        t = cursor_table
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(t).where(t.c.name == self.name, t.c.seq == seen).values(seq=to, updated_at=datetime.now(UTC))
                ).rowcount
                == 1
            )


@dataclass
class DecisionStatus:
    """What the runtime has done so far."""

    cursor: int = 0
    evaluated: int = 0
    firings: int = 0
    executed: int = 0
    errors: list[str] = field(default_factory=list)
    last_reload_error: str | None = None
    leading: bool = True  # holds the evaluation lease (always, without one)


class DecisionRuntime:
    """Evaluates automations over the feed and on schedules, expires and executes proposals, in one thread."""

    def __init__(
        self,
        registry: AutomationRegistry,
        store: GraphStore,
        evaluator: Evaluator,
        service: DecisionService,
        executor: Executor,
        cursor: DecisionCursor,
        lease: Callable[[], bool] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        """`lease()` takes or renews the evaluation lease (False while another runtime holds it); `release()` gives
        it up when the runtime stops."""
        self.registry = registry
        self.store = store
        self.evaluator = evaluator
        self.service = service
        self.executor = executor
        self.cursor = cursor
        self.lease = lease
        self.release = release
        self.status = DecisionStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mtime: float | None = None
        self._next_run: dict[str, float] = {}
        self._failures = 0  # turns in a row that raised (back-off)

    def start(self) -> None:
        """Load the automations (an error is raised: a runtime never starts on a wrong file) and start the thread."""
        self.registry.reload()
        self._mtime = self._file_time()
        self.status.cursor = self.cursor.get(self.store.feed.head())  # a new cursor starts here, not at the first turn
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Finish the step under way and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        if self.release is not None:
            self.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception as exc:  # noqa: BLE001 - a store that is down, a bad page: report it, try again later
                self.status.errors = (self.status.errors + [f"{type(exc).__name__}: {str(exc)[:300]}"])[-20:]
                logger.warning("decisions runtime: %s", self.status.errors[-1])
                self._stop.wait(min(30.0, 2.0 ** min(5, self._failures)))
                self._failures += 1
                continue
            self._failures = 0
            if not busy:
                self._stop.wait(IDLE_POLL_SECONDS)

    def step(self) -> bool:
        """One turn: reload if the file changed, one feed page, due schedules, expiry, due executions. Whether there
        was work (so the loop does not sleep)."""
        self._maybe_reload()
        self.status.leading = self.lease is None or self.lease()
        page = self._evaluate() if self.status.leading else []
        outcomes = self.executor.run_and_record(self.service.executed)
        self.status.executed += sum(outcome.state == "done" for outcome in outcomes)
        return bool(page) or bool(outcomes)

    def _evaluate(self) -> list[FeedChange]:
        """One feed page and the due schedules evaluated, expired proposals marked; the page."""
        rules = self.registry.current
        seen = self.cursor.get(self.store.feed.head())
        page = self.store.feed.read(seen, PAGE)
        if page:
            self._handle(self.evaluator.changes(rules, page))
            self.cursor.advance(seen, page[-1].seq)
            self.status.cursor = page[-1].seq
        now = time.monotonic()
        for rule in rules.scheduled():
            if self._next_run.get(rule.name, 0.0) <= now:
                self._next_run[rule.name] = now + (rule.every_seconds or 60.0)
                self._handle(self.evaluator.scheduled(rule))
        self.service.expire()
        return page

    def _handle(self, report: EvaluationReport) -> None:
        self.status.evaluated += report.evaluated
        self.status.firings += len(report.firings)
        if report.errors:
            self.status.errors = (self.status.errors + report.errors)[-20:]
        for firing in report.firings:
            self.service.fire(firing)
        if report.cleared:
            self.service.clear(report.cleared)

    def _file_time(self) -> float | None:
        try:
            return self.registry.path.stat().st_mtime
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        mtime = self._file_time()
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self.registry.reload()
            self.status.last_reload_error = None
        except AutomationError as exc:
            self.status.last_reload_error = str(exc)
            logger.warning("automations.yaml not reloaded, the previous set keeps running: %s", exc)
