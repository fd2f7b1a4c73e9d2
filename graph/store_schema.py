"""The version of the relational store's schema: Alembic revisions (graph/migrations/) over every store's tables.

All stores of a deployment (history, lineage, audit, sync state, identity, quarantine, telemetry, leases, routes,
decisions, results) share one database per data directory, so one Alembic environment versions them together, in its
own version table. A database without any of the twin's tables is created at the newest revision when a store first
opens it; a database at an older revision (or from the release before Alembic, which has the tables but no version
table) is refused with `StoreOutdated` until `twin db upgrade` has run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from graph.errors import GraphError
from graph.urls import redact_url

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "twin_schema_version"
BASELINE = "0001"
"""The revision that creates the schema of the release before Alembic (whose stores ran `create_all`)."""
BASELINE_TABLES = frozenset(
    {
        "audit_checkpoint",
        "audit_head",
        "audit_log",
        "connector_lease",
        "decision_alert",
        "decision_approval",
        "decision_cursor",
        "decision_execution",
        "decision_proposal",
        "identity_block",
        "identity_key",
        "identity_links",
        "lineage_record",
        "lineage_run",
        "openlineage_delivery",
        "route_cursor",
        "sim_run",
        "sim_study",
        "sim_summary",
        "sync_batch",
        "sync_pending_link",
        "sync_quarantine",
        "sync_record",
        "sync_run",
        "sync_watermark",
        "telemetry",
        "twin_history",
        "twin_history_sequence",
        "twin_history_write",
    }
)
_ADVISORY_LOCK = 0x7477696E  # "twin": serialises schema changes of concurrent processes on PostgreSQL
_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


class StoreOutdated(GraphError):
    """The relational store's schema is not the one this code needs (older: run `twin db upgrade`; newer: a newer
    release wrote it)."""


@dataclass(frozen=True)
class SchemaState:
    """Where a relational store stands: its revision (None: unversioned), the code's head, and whether it holds
    none of the twin's tables yet."""

    revision: str | None
    head: str
    empty: bool

    @property
    def current(self) -> bool:
        """Whether the store is at the code's revision."""
        return self.revision == self.head

    @property
    def describe(self) -> str:
        """One line for `twin db current`."""
        if self.empty:
            return f"empty (created at {self.head} when a store first opens it)"
        if self.revision is None:
            return f"unversioned (the release before Alembic); head is {self.head}: run `twin db upgrade`"
        if self.current:
            return f"{self.revision} (head)"
        return f"{self.revision}; head is {self.head}: run `twin db upgrade`"


def alembic_config(engine: Engine | None = None, connection: Connection | None = None) -> Config:
    """The Alembic configuration of the twin's stores, without an ini file (`connection`: run on it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def newest_revision() -> str | None:
    """The newest revision under graph/migrations/versions (None: none yet)."""
    return _scripts().get_current_head()


def head_revision() -> str:
    """The newest revision this code knows."""
    head = newest_revision()
    if head is None:
        raise GraphError(f"no Alembic revision under {MIGRATIONS}")
    return head


def known_revision(revision: str) -> bool:
    """Whether `revision` is one of this code's revisions."""
    return any(script.revision == revision for script in _scripts().walk_revisions())


def schema_state(engine: Engine) -> SchemaState:
    """Where the store at `engine` stands (reads only)."""
    with engine.connect() as connection:
        return _state(connection)


def _state(connection: Connection) -> SchemaState:
    tables = set(inspect(connection).get_table_names())
    revision = None
    if VERSION_TABLE in tables:
        revision = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    empty = revision is None and not (tables & BASELINE_TABLES)
    return SchemaState(revision, head_revision(), empty)


def ensure_current(engine: Engine) -> None:
    """Create the schema at head in a store without the twin's tables; StoreOutdated naming `twin db upgrade` when the
    store is older than the code, or naming the revision when it is newer."""
    state = schema_state(engine)
    if state.current:
        return
    if state.empty:
        with _exclusive(engine) as connection:
            state = _state(connection)  # another process may have created it meanwhile
            if state.empty:
                command.upgrade(alembic_config(engine, connection), "head")
                return
    _refuse(engine, state)


def refuse_outdated(engine: Engine) -> None:
    """StoreOutdated when the store holds the twin's tables at another revision than the code's (reads only)."""
    state = schema_state(engine)
    if not state.empty:
        _refuse(engine, state)


def _refuse(engine: Engine, state: SchemaState) -> None:
    if state.current:
        return
    where = redact_url(engine.url.render_as_string(hide_password=False))
    if state.revision is not None and not known_revision(state.revision):
        raise StoreOutdated(
            f"the relational store at {where} is at revision {state.revision!r}, which this code does not know "
            f"(its newest is {state.head!r}): a newer release wrote it; run that release"
        )
    found = (
        "has no schema version (it was created before Alembic)"
        if state.revision is None
        else (f"is at revision {state.revision!r}")
    )
    raise StoreOutdated(
        f"the relational store at {where} {found}; this code needs revision {state.head!r}: "
        "run `twin db upgrade` (back the database up first)"
    )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the store to head: an unversioned store of the release before Alembic is stamped at the baseline first.
    Returns the revision before and after. StoreOutdated when the store is newer than the code."""
    with _exclusive(engine) as connection:
        state = _state(connection)
        if state.revision is not None and not known_revision(state.revision):
            _refuse(engine, state)
        config = alembic_config(engine, connection)
        before = state.revision
        if state.revision is None and not state.empty:
            missing = sorted(BASELINE_TABLES - set(inspect(connection).get_table_names()))
            if missing:
                raise StoreOutdated(
                    f"the unversioned relational store lacks tables of the release before Alembic "
                    f"({', '.join(missing)}); open it once with that release, or restore it, then run `twin db upgrade`"
                )
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        return before, state.head


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the store's schema lock (threads of this process, and other processes
    through the database: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL); committed on success."""
    with _locks_guard:
        lock = _locks.setdefault(id(engine), threading.Lock())
    with lock, engine.connect() as raw:
        if engine.dialect.name == "sqlite":
            # the driver would begin transactions only before DML and commit DDL at once: begin one explicitly
            connection = raw.execution_options(isolation_level="AUTOCOMMIT")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
        else:
            with raw.begin():
                raw.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
                yield raw
