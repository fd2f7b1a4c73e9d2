"""The relational side store of the twin (history, audit, lineage, sync state, results): engines by URL."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from graph.errors import GraphError
from graph.store_schema import ensure_current, head_revision
from graph.urls import redact_url


class RelationalStoreError(GraphError):
    """The relational store URL is malformed or the database cannot be reached."""


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
# the tables created (or found) through each engine, by metadata: a store opened again at the same URL (a sync engine
# per run, six stores at one URL) does not inspect the database again
_schema_checked: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines whose schema revision was checked
_tables_made: weakref.WeakKeyDictionary[Engine, weakref.WeakKeyDictionary[MetaData, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def relational_engine(url: str) -> Engine:
    """A shared SQLAlchemy engine for `url` (sqlite:///PATH or postgresql://...), configured for safe concurrent use."""
    with _engines_lock:  # two threads asking at once must share one engine (and one pool)
        if url not in _engines:
            _engines[url] = _new_engine(url)
        return _engines[url]


def _new_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise RelationalStoreError(f"relational store URL {redact_url(url)!r} is not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=True)
    else:
        raise RelationalStoreError(
            f"relational store URL scheme {parsed.drivername!r} is not supported; use sqlite:/// or postgresql://"
        )
    return engine


def create_tables(engine: Engine, table_metadata: MetaData) -> None:
    """Make sure the store at `engine` has `table_metadata`'s tables at the code's schema revision: a database without
    the twin's tables is created at head (graph/store_schema.py); an older one is refused with StoreOutdated naming
    `twin db upgrade`. Checked once per engine and set of tables in this process (the stores at one URL share the
    engine)."""
    tables = frozenset(table_metadata.tables)
    with _engines_lock:
        made = _tables_made.get(engine)
        if made is not None and made.get(table_metadata) == tables:
            return
        checked = engine in _schema_checked
    if not checked:
        ensure_current(engine)
        with _engines_lock:
            _schema_checked.add(engine)
    missing = sorted(tables - set(inspect(engine).get_table_names()))
    if missing:
        raise RelationalStoreError(
            f"table(s) {', '.join(missing)} are not in the relational store's schema at revision {head_revision()}: "
            "the code defines them without an Alembic revision; write one with `twin db revision MESSAGE` "
            "(CONTRIBUTING.md, 'A relational table')"
        )
    with _engines_lock:
        _tables_made.setdefault(engine, weakref.WeakKeyDictionary())[table_metadata] = tables


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Lineage, history and audit append to several indexes at once: a 32 MB page cache (default 2 MB) keeps their
    # B-trees in memory, and checkpointing the WAL every 40 MB (default 4 MB) writes each hot page back less often.
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def dispose_engines() -> None:
    """Close every pooled connection (tests and shutdown)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _tables_made.clear()
    _schema_checked.clear()
