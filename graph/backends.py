"""Cypher backends chosen by URL: embedded FalkorDB, a FalkorDB server, Neo4j."""

from __future__ import annotations

import json
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

from redis.exceptions import WatchError

from graph.bulk import EdgeGroup, NodeGroup, bulk_commands
from graph.dialect import Dialect, FalkorDialect, Neo4jDialect
from graph.errors import BackendRefused, GraphError, GraphUnavailable, QueryError, QueryTimedOut, ReadOnlyViolation
from graph.urls import redact_url
from ontology.errors import quoted

Row = list[Any]
T = TypeVar("T")


class CypherBackend(ABC):
    """A graph database that runs Cypher: read and write entry points, schema set-up, a query counter."""

    dialect: Dialect
    url: str

    def __init__(self) -> None:
        self._count_lock = threading.Lock()
        self.queries = 0  # every round trip, so tests can catch N+1 patterns

    def _count(self) -> None:
        with self._count_lock:
            self.queries += 1

    @abstractmethod
    def read(self, cypher: str, params: dict[str, Any] | None = None, timeout_ms: int | None = None) -> list[Row]:
        """Run a read-only query; the backend itself refuses writes."""

    @abstractmethod
    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run a query that may change the graph, atomically."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the uid uniqueness constraint and indexes if missing."""

    def can_bulk_create(self) -> bool:
        """Whether `bulk_create` would write: this backend has a bulk path and the graph does not exist yet."""
        return False

    def bulk_create(self, nodes: Sequence[NodeGroup], edges: Sequence[EdgeGroup]) -> bool:
        """Create the graph, which must not exist yet, from node groups (ids 0, 1, ... in order) and edge groups in
        one write; False, with nothing written, when this backend cannot or the graph exists (then upsert)."""
        return False

    @abstractmethod
    def clear(self) -> None:
        """Delete every node and relationship (tests and `twin graph reset`)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (an embedded server stays up for other processes)."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the backend answers."""

    def compact_log(self) -> bool:
        """Rewrite the server's append-only log from the current data (erased values leave it); False if it has none."""
        return False


# Back-off between attempts to reach (or restart) a graph server that stopped answering: first retry at once, then
# doubling up to the maximum, so a restarted server is found within seconds and a dead one is not hammered.
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 3.0

Connect = Callable[[], tuple[Any, Callable[[], None] | None]]


class FalkorBackend(CypherBackend):
    """FalkorDB through its Python client, over a unix socket (embedded) or TCP (server).

    When the server stops answering (killed, `twin graph stop`, restarted), the failing call raises GraphUnavailable
    and the backend reconnects with back-off: `connect` (given for the embedded server) opens the data directory's
    server again, starting it when none runs (one owner per data directory, as `graph.embedded` arranges); a server
    at a URL is waited for until it answers. A write is never resent (it may have been applied); a read is, once.
    """

    dialect = FalkorDialect()

    def __init__(
        self, client: Any, graph_name: str, url: str, on_close: Any = None, connect: Connect | None = None
    ) -> None:
        super().__init__()
        self.graph_name = graph_name
        self.url = url
        self._connect = connect
        self._use(client, on_close)
        self._health = threading.Lock()
        self._down = False
        self._next_attempt = 0.0
        self._backoff = _BACKOFF_FIRST

    def _use(self, client: Any, on_close: Any) -> None:
        self._client = client
        self._graph = client.select_graph(self.graph_name)
        self._on_close = on_close

    def read(self, cypher: str, params: dict[str, Any] | None = None, timeout_ms: int | None = None) -> list[Row]:
        """Run through GRAPH.RO_QUERY, which FalkorDB refuses to execute when the query writes."""
        query = falkor_params(params) + cypher
        try:
            return self._call(lambda: self._graph.ro_query(query, None, timeout=timeout_ms).result_set, cypher)
        except GraphUnavailable:
            if not self._recover(wait=False):
                raise
        return self._call(lambda: self._graph.ro_query(query, None, timeout=timeout_ms).result_set, cypher)

    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run through GRAPH.QUERY (each query is atomic in FalkorDB)."""
        query = falkor_params(params) + cypher
        return self._call(lambda: self._graph.query(query).result_set, cypher)

    def _call(self, action: Callable[[], T], cypher: str) -> T:
        """One round trip: refused at once while the server is down and not due for another attempt."""
        self._count()
        if self._down and not self._recover(wait=False):
            raise GraphUnavailable(
                f"FalkorDB at {redact_url(self.url)} is not reachable; reconnecting "
                f"(next attempt in {max(self._next_attempt - time.monotonic(), 0):.1f} s)"
            )
        try:
            return action()
        except Exception as exc:  # the client raises redis errors; translate once, here
            error = self._translate(exc, cypher)
            if isinstance(error, GraphUnavailable):
                self._mark_down()
            raise error from None

    def _mark_down(self) -> None:
        with self._health:
            if not self._down:
                self._down, self._next_attempt, self._backoff = True, time.monotonic(), _BACKOFF_FIRST

    def _recover(self, *, wait: bool) -> bool:
        """Try to reach the server again (restarting an embedded one) if an attempt is due; True once it answers."""
        if not self._health.acquire(blocking=wait):
            return False  # another thread is reconnecting right now
        try:
            if not self._down:
                return True
            if time.monotonic() < self._next_attempt:
                return False
            try:
                if self._connect is not None:
                    old_close = self._on_close
                    client, on_close = self._connect()  # starts the data directory's server when none runs
                    self._use(client, on_close)
                    if old_close is not None:
                        old_close()  # after the new hold: the server this process now uses is never stopped here
                if not self._client.connection.ping():
                    raise GraphUnavailable("no answer to PING")
            except Exception:
                self._next_attempt = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
                return False
            self._down, self._backoff = False, _BACKOFF_FIRST
            return True
        finally:
            self._health.release()

    def _translate(self, exc: Exception, cypher: str) -> GraphError:
        message = str(exc)
        kind = type(exc).__name__
        if (
            "ConnectionError" in kind
            or "Connection refused" in message
            or "No such file" in message
            or "BusyLoading" in kind
            or "Connection reset" in message
            or "Broken pipe" in message
        ):
            return GraphUnavailable(f"FalkorDB at {redact_url(self.url)} is not reachable: {message}")
        if "read-only" in message.lower() or "RO_QUERY" in message:
            return ReadOnlyViolation(f"query tries to write: {message}")
        if "timed out" in message.lower() or "timeout" in message.lower():
            return QueryTimedOut(f"query timed out: {message}")
        return BackendRefused(f"FalkorDB refused the query: {message}")

    def can_bulk_create(self) -> bool:
        """True while the graph key does not exist."""
        return not self._call(lambda: self._client.connection.exists(self.graph_name), "EXISTS")

    def bulk_create(self, nodes: Sequence[NodeGroup], edges: Sequence[EdgeGroup]) -> bool:
        """GRAPH.BULK in one MULTI/EXEC, watched: if the graph key exists, or comes to exist before EXEC, nothing
        runs (node ids are only predictable in a graph the load itself creates)."""
        commands = bulk_commands(self.graph_name, nodes, edges)
        self._count()
        if self._down and not self._recover(wait=False):
            raise GraphUnavailable(f"FalkorDB at {redact_url(self.url)} is not reachable; reconnecting")
        with self._client.connection.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.graph_name)
                if pipe.exists(self.graph_name):
                    return False
                pipe.multi()
                for command in commands:
                    pipe.execute_command(*command)
                pipe.execute()
            except WatchError:
                return False
            except Exception as exc:
                error = self._translate(exc, "GRAPH.BULK")
                if isinstance(error, GraphUnavailable):
                    self._mark_down()
                raise error from None
        return True

    def sibling(self, graph_name: str) -> FalkorBackend:
        """A backend for another graph on the same server and connection (closing it leaves the connection open)."""
        return FalkorBackend(self._client, graph_name, self.url, on_close=lambda: None)

    def graph_names(self) -> list[str]:
        """The names of every graph on the server."""
        names = self._call(lambda: self._client.connection.execute_command("GRAPH.LIST"), "GRAPH.LIST")
        return [name.decode() if isinstance(name, bytes) else str(name) for name in names]

    def drop_graph(self) -> None:
        """Delete this graph from the server (scratch graphs only: the live graph is cleared, never deleted)."""
        try:
            self._call(lambda: self._client.connection.execute_command("GRAPH.DELETE", self.graph_name), "GRAPH.DELETE")
        except QueryError as exc:
            if "empty key" not in str(exc).lower() and "does not exist" not in str(exc).lower():
                raise

    def ensure_schema(self) -> None:
        """Create indexes and the unique constraint on :Twin(uid); existing ones are left alone."""
        try:  # graphs made by earlier builds carry a _class index that slows every guarded link write
            self.write("DROP INDEX FOR (n:Twin) ON (n._class)")
        except QueryError as exc:
            if "no such index" not in str(exc):
                raise
        self._create_indexes()
        try:
            self._graph.create_node_unique_constraint("Twin", "uid")
        except Exception as exc:
            if "already" not in str(exc).lower() and "exists" not in str(exc).lower():
                raise QueryError(f"cannot create the uid uniqueness constraint: {exc}") from None
        self._await_schema()

    def ensure_indexes(self, full_text: bool = True) -> None:
        """The uid index (and the full-text index) without the uniqueness constraint, for a graph that is only read
        (a scratch graph: FalkorDB 4 cannot replay a log in which a graph with a constraint is deleted)."""
        self._create_indexes(full_text)
        self._await_schema()

    def _create_indexes(self, full_text: bool = True) -> None:
        for statement in self.dialect.schema_statements():
            if not full_text and "fulltext" in statement:
                continue
            try:
                self.write(statement)
            except QueryError as exc:
                if "already" not in str(exc).lower():
                    raise

    def _await_schema(self, timeout: float = 600.0) -> None:
        """Wait until FalkorDB has built the indexes and the constraint (it does so in the background).

        A query planned while an index is under construction scans instead, and FalkorDB keeps that plan in its
        cache: uid lookups then cost a label scan each, for as long as the server runs.
        """
        deadline = time.monotonic() + timeout
        while True:
            states = [row[0] for row in self.read("CALL db.indexes() YIELD status RETURN status")]
            states += [row[0] for row in self.read("CALL db.constraints() YIELD status RETURN status")]
            if "FAILED" in states:
                raise QueryError("FalkorDB could not build the uid uniqueness constraint: some uids are not unique")
            if all(state == "OPERATIONAL" for state in states):
                return
            if time.monotonic() > deadline:
                raise QueryError(f"FalkorDB was still building the graph's indexes after {timeout:.0f} s")
            time.sleep(0.02)

    def clear(self) -> None:
        """Delete every node and relationship, keeping the graph, its indexes and its constraint.

        Not GRAPH.DELETE: FalkorDB 4 crashes replaying an append-only file in which a deleted graph is created
        again (GraphContext_GetSchemaByID), which would leave the data directory unopenable.
        """
        self.write("MATCH (n) DETACH DELETE n")

    def close(self) -> None:
        """Close the client connection; the embedded server's lifetime is managed by graph.embedded."""
        self._connect = None
        if self._on_close is not None:
            self._on_close()
        else:
            self._client.close()

    def ping(self) -> bool:
        """PING the server; a server found down is reconnected (restarted, if embedded) as the back-off allows."""
        if self._down:
            return self._recover(wait=True)
        try:
            return bool(self._client.connection.ping())
        except Exception:
            self._mark_down()
            return self._recover(wait=True)

    def compact_log(self, timeout: float = 60.0) -> bool:
        """BGREWRITEAOF, waiting until the rewritten log has replaced the old one (which held overwritten values)."""
        connection = self._client.connection
        if not int(connection.info("persistence").get("aof_enabled", 0)):
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                connection.execute_command("BGREWRITEAOF")
                break
            except Exception as exc:  # a rewrite or a snapshot is already running: wait for it and try again
                if time.monotonic() > deadline:
                    raise GraphError(f"the graph server did not rewrite its append-only log: {exc}") from None
                time.sleep(0.05)
        while time.monotonic() < deadline:
            info = connection.info("persistence")
            if not int(info.get("aof_rewrite_in_progress", 0)) and not int(info.get("aof_rewrite_scheduled", 0)):
                return True
            time.sleep(0.05)
        raise GraphError("the graph server's append-only log rewrite did not finish in time")


def falkor_params(params: dict[str, Any] | None) -> str:
    """The `CYPHER name=value ...` header through which FalkorDB takes parameters (a faster, stricter encoder
    than the client's: bulk writes spend much of their time here)."""
    if not params:
        return ""
    return "CYPHER " + " ".join(f"{_key(k)}={_parameter(v)}" for k, v in params.items()) + " "


# A number of 19 or more digits in the JSON of a list (it may not fit 64 bits); text that looks alike only costs
# the slower literal writer, which checks every integer.
_LONG_NUMBER = re.compile(r"(?:\[|, )-?\d{19}")


def _parameter(value: Any) -> str:
    """A list of rows of text and numbers goes through the C JSON encoder when its output is also valid Cypher
    (no escapes, no maps, no integer that might not fit 64 bits); anything else through the literal writer."""
    if type(value) is list:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, check_circular=False)
        except (TypeError, ValueError):
            return _literal(value)
        if "\\" not in text and "{" not in text and not _LONG_NUMBER.search(text):
            return text
    return _literal(value)


_KEYS: dict[str, str] = {}  # map keys already checked


def _known_key(name: str) -> str:
    _KEYS[name] = _key(name)
    return name


def _key(name: str) -> str:
    if not name or "`" in name:
        raise QueryError(f"{quoted(name)} cannot be used as a parameter or map key")
    return name


def _literal(value: Any) -> str:
    kind = type(value)
    if kind is str:
        text: str = value
        if "\x00" in text:
            raise QueryError(f"text with a NUL character cannot be stored in the graph: {quoted(value)}")
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if kind is int:
        return str(value) if -9223372036854775808 <= value <= 9223372036854775807 else _integer(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise QueryError(f"{value} cannot be stored in the graph")
        return repr(value)
    if value is None:
        return "null"
    if kind is list or kind is tuple:
        return "[" + ",".join([_literal(v) for v in value]) + "]"
    if kind is dict:
        # rows of a batch: text values inline, the rest through the general path; keys checked once each
        return (
            "{"
            + ",".join(
                [
                    f"`{_KEYS.get(k) or _known_key(k)}`:"
                    + (
                        '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                        if type(v) is str and "\x00" not in v
                        else _literal(v)
                    )
                    for k, v in value.items()
                ]
            )
            + "}"
        )
    if isinstance(value, dict):
        return "{" + ",".join([f"`{_key(k)}`:{_literal(v)}" for k, v in value.items()]) + "}"
    if isinstance(value, Enum):
        return _literal(value.value)
    if isinstance(value, int):
        return _integer(int(value))
    if isinstance(value, float):
        return _literal(float(value))
    if isinstance(value, str):
        return _literal(str.__str__(value))
    raise QueryError(f"a {kind.__name__} value cannot be sent to the graph")


def _integer(value: int) -> str:
    """Cypher text of an integer the graph can hold: FalkorDB would clamp one beyond 64 bits to the nearest end."""
    if not -(2**63) <= value < 2**63:
        raise QueryError(f"{value} does not fit a 64-bit integer and cannot be stored in the graph")
    return str(value)


class Neo4jBackend(CypherBackend):
    """Neo4j 5 through the official driver; reads in READ transactions, writes in WRITE transactions."""

    dialect = Neo4jDialect()

    def __init__(self, url: str, user: str | None, password: str | None, database: str | None) -> None:
        super().__init__()
        import neo4j

        self.url = url
        self._database = database
        auth = (user, password or "") if user else None
        try:
            self._driver = neo4j.GraphDatabase.driver(url, auth=auth)
        except Exception as exc:
            raise GraphUnavailable(
                f"cannot create a Neo4j driver for {redact_url(url)}: {type(exc).__name__}"
            ) from None

    def _run(self, cypher: str, params: dict[str, Any] | None, access: str, timeout_ms: int | None) -> list[Row]:
        import neo4j
        from neo4j.exceptions import ClientError, ServiceUnavailable

        self._count()

        # the timeout goes on the transaction function: `tx.run` refuses a `neo4j.Query` (only `session.run` takes one)
        @neo4j.unit_of_work(timeout=timeout_ms / 1000 if timeout_ms else None)
        def work(tx: neo4j.ManagedTransaction) -> list[Row]:
            return [list(r.values()) for r in tx.run(cypher, params or {})]

        try:
            with self._driver.session(database=self._database, default_access_mode=access) as session:
                runner = session.execute_read if access == neo4j.READ_ACCESS else session.execute_write
                return runner(work)
        except ServiceUnavailable as exc:
            raise GraphUnavailable(f"Neo4j at {redact_url(self.url)} is not reachable: {exc}") from None
        except ClientError as exc:
            if "AccessMode" in (exc.code or "") or "read access mode" in str(exc).lower():
                raise ReadOnlyViolation(f"query tries to write: {exc.message}") from None
            if "TimedOut" in (exc.code or ""):
                raise QueryTimedOut(f"query timed out ({exc.code}): {exc.message}") from None
            raise BackendRefused(f"Neo4j refused the query ({exc.code}): {exc.message}") from None

    def read(self, cypher: str, params: dict[str, Any] | None = None, timeout_ms: int | None = None) -> list[Row]:
        """Run in a READ transaction, which Neo4j refuses to let write."""
        import neo4j

        return [_neo4j_values(r) for r in self._run(cypher, params, neo4j.READ_ACCESS, timeout_ms)]

    def write(self, cypher: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run in a WRITE transaction."""
        import neo4j

        return [_neo4j_values(r) for r in self._run(cypher, params, neo4j.WRITE_ACCESS, None)]

    def ensure_schema(self) -> None:
        """Create the constraint and indexes (IF NOT EXISTS)."""
        for statement in self.dialect.schema_statements():
            self.write(statement)

    def clear(self) -> None:
        """Delete every node in batches (CALL ... IN TRANSACTIONS needs an auto-commit transaction)."""
        self._count()
        with self._driver.session(database=self._database) as session:
            session.run("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()

    def close(self) -> None:
        """Close the driver."""
        self._driver.close()

    def ping(self) -> bool:
        """Verify connectivity."""
        try:
            self._driver.verify_connectivity()
            return True
        except Exception:
            return False


def _neo4j_values(row: list[Any]) -> list[Any]:
    """Convert neo4j temporal and path values into the plain Python values the store expects."""
    return [v.to_native() if hasattr(v, "to_native") else v for v in row]


def _tls_options(scheme: str, query: str) -> dict[str, Any]:
    """TLS keyword arguments of the FalkorDB client for a rediss:// (falkordbs://) URL: the server certificate is
    verified (against `?ca=PATH` when given, else the system's CAs) and its host name checked."""
    if scheme not in ("falkordbs", "rediss"):
        return {}
    ca = parse_qs(query).get("ca")
    return {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": ca[0] if ca else None}


def open_backend(
    url: str,
    *,
    graph_name: str = "twin",
    user: str | None = None,
    password: str | None = None,
    fsync: str = "always",
    threads: int | None = None,
) -> CypherBackend:
    """Open the backend a URL names: falkordb+embedded:///PATH, falkordb://host:port, neo4j://, bolt://.

    `threads`: query threads of an embedded server this process starts (default: graph.server_process's).
    """
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "falkordb+embedded":
        from graph.embedded import open_embedded
        from graph.server_process import DEFAULT_THREADS

        data_dir = Path(unquote(parsed.path))

        def connect() -> tuple[Any, Callable[[], None] | None]:
            handle = open_embedded(data_dir, fsync=fsync, threads=threads or DEFAULT_THREADS)  # type: ignore[arg-type]
            return handle.client, handle.close

        client, on_close = connect()
        return FalkorBackend(client, graph_name, url, on_close=on_close, connect=connect)
    if scheme in ("falkordb", "redis", "falkordbs", "rediss"):
        import falkordb

        from graph.server_process import no_retry

        try:
            client = falkordb.FalkorDB(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or 6379,
                username=parsed.username or user,
                password=parsed.password or password,
                retry=no_retry(),  # a resent write could apply twice; the backend reconnects, and retries reads
                **_tls_options(scheme, parsed.query),
            )
        except Exception as exc:  # the client connects at once: refused, unknown host, bad credentials
            raise GraphUnavailable(
                f"FalkorDB server at {redact_url(url)} is not reachable: {type(exc).__name__}"
            ) from None
        backend = FalkorBackend(client, graph_name, url)
        if not backend.ping():
            backend.close()
            raise GraphUnavailable(f"FalkorDB server at {redact_url(url)} does not answer")
        return backend
    if scheme in ("neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s", "bolt+ssc"):
        return Neo4jBackend(
            url, parsed.username or user, parsed.password or password, None if graph_name == "twin" else graph_name
        )
    raise GraphError(
        f"graph URL {redact_url(url)!r}: unknown scheme {scheme!r} (use falkordb+embedded://, falkordb://, neo4j://)"
    )
