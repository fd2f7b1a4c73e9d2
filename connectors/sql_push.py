"""Push for PostgreSQL sources: a committed row wakes the runtime's incremental run of its entity at once.

A statement-level trigger on each source table calls ``pg_notify(channel, <table name>)`` (`trigger_sql`;
`twin connect push-sql CONNECTOR` prints it, `--install` installs it). PostgreSQL delivers a notification only when
the writing transaction commits, and folds identical ones of one transaction into one. The runtime LISTENs on the
connector's channel (`ChangeListener`, one connection per connector) and runs the entities reading the notified
table; a table no entity names (a `query:` entity's joins, say) runs the whole connector. The connector's schedule
keeps polling meanwhile, so a lost connection costs latency, never changes: the listener reconnects with back-off
and, once back, asks for one run of every entity (changes committed while it was away sent no notification it
heard).

In `connectors.yaml`::

    source: {kind: sql, url: "postgresql://...", push: true}          # channel twin_<connector>
    source: {kind: sql, url: "postgresql://...", push: {channel: erp_changes}}
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.mapping import SourceMapping
from graph.urls import redact_url

FUNCTION = "twin_notify_change"
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


class PushError(ValueError):
    """A push option is malformed or names a database that cannot push; names the connector."""


@dataclass(frozen=True)
class SqlPush:
    """Where a SQL connector's change notifications come from: its PostgreSQL database and channel."""

    connector: str
    url: str  # the source's URL (SQLAlchemy form); credentials stay out of messages (redact_url)
    channel: str

    @property
    def conninfo(self) -> str:
        """The URL as libpq reads it (no SQLAlchemy driver suffix)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def entities_for(self, table: str, mapping: SourceMapping) -> tuple[str, ...] | None:
        """The entities reading `table` (a notification's payload); None (run them all) when none names it."""
        wanted = table.rsplit(".", 1)[-1].strip('"').lower()
        found = tuple(e.name for e in mapping.entities if _table_of(e.source, e.name) == wanted)
        return found or None

    def tables(self, mapping: SourceMapping) -> list[tuple[str | None, str]]:
        """(schema, table) of every entity reading a table, for the trigger SQL (query entities are left out)."""
        found: list[tuple[str | None, str]] = []
        for entity in mapping.entities:
            table = _table_of(entity.source, entity.name, lower=False)
            if table is not None and (entity.source.get("schema"), table) not in found:
                found.append((entity.source.get("schema"), table))
        return found


def _table_of(source: Mapping[str, Any], entity: str, *, lower: bool = True) -> str | None:
    """The table an entity reads (its name when it gives neither table nor query), None for a query."""
    if "query" in source:
        return None
    table = str(source.get("table", entity))
    return table.lower() if lower else table


def parse_push(raw: Any, connector: str, url: str | None, where: str) -> SqlPush | None:
    """A SQL connector's `push:` option read into a SqlPush (None when off); PushError naming `where` when wrong."""
    if raw is None or raw is False:
        return None
    if raw is True:
        channel = f"twin_{connector}"
    elif isinstance(raw, dict) and set(raw) <= {"channel"}:
        channel = str(raw.get("channel", f"twin_{connector}"))
    else:
        raise PushError(f"{where}: push must be true, false or {{channel: NAME}}; got {str(raw)[:60]!r}")
    if not _CHANNEL.match(channel):
        raise PushError(
            f"{where}: push channel {channel[:70]!r} must be 1-63 letters, digits, _ or -, starting with a letter or _"
        )
    try:
        backend = make_url(url or "").get_backend_name()
    except (ArgumentError, ValueError):
        backend = None
    if backend != "postgresql":
        raise PushError(
            f"{where}: push (LISTEN/NOTIFY) needs a postgresql:// source URL; this source is {redact_url(url or '')!r}"
        )
    assert url is not None
    return SqlPush(connector, url, channel)


def trigger_sql(push: SqlPush, tables: Sequence[tuple[str | None, str]]) -> str:
    """The SQL that makes every commit on `tables` notify the connector's channel (idempotent: re-running it
    replaces the function and triggers)."""
    channel = push.channel.replace("'", "''")
    parts = [
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);\n"
        "  RETURN NULL;\n"
        "END $$;"
    ]
    for schema, table in tables:
        qualified = f"{_quoted(schema)}.{_quoted(table)}" if schema else _quoted(table)
        trigger = _quoted(f"twin_push_{push.connector}_{table}"[:63])
        parts.append(
            f"DROP TRIGGER IF EXISTS {trigger} ON {qualified};\n"
            f"CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {qualified}\n"
            f"  FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}('{channel}');"
        )
    return "\n".join(parts) + "\n"


def _quoted(name: str) -> str:
    """An SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def install_triggers(push: SqlPush, tables: Sequence[tuple[str | None, str]]) -> None:
    """Run `trigger_sql` in the source database, in one transaction."""
    with psycopg.connect(push.conninfo, connect_timeout=10) as conn:
        conn.execute(trigger_sql(push, tables).encode("utf-8"))


class ChangeListener:
    """A thread LISTENing on one connector's channel: each notification calls `on_change(table)`; after the
    connection was lost and came back, `on_change(None)` (run everything). `on_state` hears 'listening' or
    'reconnecting: <reason>'."""

    def __init__(
        self,
        push: SqlPush,
        on_change: Callable[[str | None], None],
        on_state: Callable[[str], None] = lambda state: None,
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self.push = push
        self.on_change = on_change
        self.on_state = on_state
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend_pid: int | None = None  # the listening session's server process (for tests and diagnosis)

    def start(self) -> None:
        """Start listening (a daemon thread; returns at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name=f"sql-push-{self.push.connector}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop listening (within one poll interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _listen(self) -> None:
        delay = FIRST_RETRY_SECONDS
        lost = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.push.conninfo,
                    autocommit=True,
                    connect_timeout=5,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                    application_name=f"twin-push:{self.push.connector}"[:63],
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.push.channel)))
                    self.backend_pid = conn.info.backend_pid
                    self.on_state(f"listening on {self.push.channel}")
                    if lost:  # what was committed while the connection was down notified nobody
                        self.on_change(None)
                    delay = FIRST_RETRY_SECONDS
                    while not self._stop.is_set():
                        for notification in conn.notifies(timeout=self.poll_seconds):
                            self.on_change(notification.payload)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                lost = True
                self.backend_pid = None
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                self.on_state(f"reconnecting: {reason.replace(self.push.conninfo, redact_url(self.push.url))}")
                self._stop.wait(delay)
                delay = min(MAX_RETRY_SECONDS, delay * 2)
