"""The embedded FalkorDB server of a data directory, shared by every process that opens that directory.

Ownership rule (robust to kill -9 of any client or of the server):

* `open_embedded(data_dir)` starts the server if none is running for `data_dir`, otherwise attaches to it.
  Start, attach and stop are serialised by an flock on `data_dir/server.lock`.
* Every open `EmbeddedHandle` holds a *shared* flock on `data_dir/clients.lock`. The kernel drops it when the
  holding process exits for any reason, so a killed client never leaks a reference.
* `EmbeddedHandle.close()` drops its hold; if no other holder remains (an exclusive flock succeeds), it stops the
  server: the last client out stops it. A server whose clients were all killed keeps running, is adopted by the
  next `open_embedded`, and stops when that client closes.
* `stop_embedded(data_dir)` stops the server now, whoever uses it (`twin graph stop`, test fixtures).
* A server from `start_tcp_server` is not reference counted: its `stop()` (or `stop_embedded`) ends it.
* Stale state left by a crashed server (dead or reused pid in `server.json`, stale socket or pid file, a server
  process the registry lost track of) is detected and cleaned up by the next open; nothing is left for the user.

The server runs with append-only persistence; with `fsync="always"` (the default) the server fsyncs each write
before it replies, so every acknowledged write survives kill -9 of the server and of the client.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import redis
from falkordb import FalkorDB

from graph.errors import GraphUnavailable
from graph.server_process import (
    DEFAULT_THREADS,
    FSYNC_POLICIES,
    FsyncPolicy,
    Listener,
    ServerBinaries,
    ServerFiles,
    check_fsync,
    connect,
    is_our_server,
    launch_server,
    no_retry,
    server_pids,
    terminate_server,
    wait_until_ready,
)

DEFAULT_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_TCP_HOST = "127.0.0.1"
_TCP_PORT_ATTEMPTS = 5


@dataclass(frozen=True)
class ServerRecord:
    """What `server.json` says about the running server of a data directory."""

    pid: int
    fsync: FsyncPolicy
    started_at: float
    socket: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def listener(self) -> Listener:
        """Where the server accepts clients."""
        if self.socket is not None:
            return Listener(socket=Path(self.socket))
        return Listener(host=self.host, port=self.port)


class EmbeddedHandle:
    """One process's use of the embedded server: a ready `falkordb.FalkorDB` client plus `close()`.

    The client never retries a command by itself: after a lost connection a write may or may not have been
    applied, and only the caller knows whether resending it is safe.
    """

    def __init__(self, files: ServerFiles, record: ServerRecord, hold_fd: int, started: bool) -> None:
        self.data_dir: Path = files.data_dir
        self.pid: int = record.pid
        self.fsync: FsyncPolicy = record.fsync
        self.socket_path: Path = Path(record.socket or "")
        self.started: bool = started
        self.client: FalkorDB = FalkorDB(unix_socket_path=str(self.socket_path), retry=no_retry())
        self._files = files
        self._hold_fd: int | None = hold_fd

    @property
    def closed(self) -> bool:
        """True once `close()` has run."""
        return self._hold_fd is None

    def close(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Release this client; if it was the last one, stop the server (idempotent)."""
        if self._hold_fd is None:
            return
        self.client.close()
        os.close(self._hold_fd)  # drops the shared flock (never LOCK_UN: a forked child may share the fd)
        self._hold_fd = None
        with _start_lock(self._files, timeout):
            if not _clients_remain(self._files):
                record = _live_record(self._files)
                if record is not None and record.socket is not None:
                    _stop(self._files, record)

    def __enter__(self) -> EmbeddedHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedHandle(data_dir={str(self.data_dir)!r}, pid={self.pid}, closed={self.closed})"


@dataclass(frozen=True)
class TcpServer:
    """A FalkorDB server of a data directory listening on 127.0.0.1 (for `falkordb://host:port` tests)."""

    data_dir: Path
    host: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        """The `falkordb://host:port` URL of this server."""
        return f"falkordb://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the server (graceful: the append-only file is fsynced)."""
        stop_embedded(self.data_dir)

    def __enter__(self) -> TcpServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def open_embedded(
    data_dir: Path,
    *,
    fsync: FsyncPolicy = "always",
    binaries: ServerBinaries | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    threads: int = DEFAULT_THREADS,
) -> EmbeddedHandle:
    """Start or attach to the embedded server of `data_dir` and return a handle with a connected client (a server
    this call starts gets `threads` query threads; a running one keeps its own)."""
    check_fsync(fsync)
    files = _prepare(data_dir)
    with _start_lock(files, start_timeout):
        record = _live_record(files)
        started = False
        if record is not None and record.socket is None:
            raise GraphUnavailable(
                f"data dir {files.data_dir} is served over TCP at {record.host}:{record.port} "
                f"(pid {record.pid}); stop that server before opening it embedded"
            )
        if record is None:
            record, started = _launch_embedded(files, binaries, fsync, start_timeout, threads), True
        else:
            try:
                wait_until_ready(files, record.listener, start_timeout, pid=record.pid)
            except GraphUnavailable:
                if is_our_server(record.pid, files):
                    raise
                # it died as we attached (killed a moment ago): clear its state and start a server afresh
                _clear_state(files, record)
                record, started = _launch_embedded(files, binaries, fsync, start_timeout, threads), True
            if FSYNC_POLICIES.index(fsync) > FSYNC_POLICIES.index(record.fsync):
                record = _raise_fsync(files, record, fsync)
        hold_fd = _hold_clients_lock(files)
        try:
            return EmbeddedHandle(files, record, hold_fd, started)
        except redis.RedisError as exc:
            os.close(hold_fd)
            raise GraphUnavailable(f"cannot connect to the FalkorDB server of {files.data_dir}: {exc}") from None


def _launch_embedded(
    files: ServerFiles, binaries: ServerBinaries | None, fsync: FsyncPolicy, start_timeout: float, threads: int
) -> ServerRecord:
    """Start the data directory's server on its unix socket and record it (the start lock is held)."""
    listener = Listener(socket=files.socket)
    pid = launch_server(files, binaries or ServerBinaries.bundled(), listener, fsync, start_timeout, threads)
    record = ServerRecord(pid=pid, fsync=fsync, started_at=time.time(), socket=str(listener.socket))
    _write_record(files, record)
    return record


def stop_embedded(data_dir: Path, *, timeout: float = _STOP_TIMEOUT) -> bool:
    """Stop the server of `data_dir` (embedded or TCP) whoever uses it; True if one was running."""
    files = ServerFiles(Path(data_dir).resolve())
    if not files.data_dir.is_dir():
        return False
    with _start_lock(files, timeout):
        record = _live_record(files)
        if record is None:
            return False
        _stop(files, record, timeout)
        return True


def embedded_status(data_dir: Path) -> ServerRecord | None:
    """The record of the live server of `data_dir`, or None if none runs (stale state is not touched)."""
    files = ServerFiles(Path(data_dir).resolve())
    record = _read_record(files)
    if record is not None and is_our_server(record.pid, files):
        return record
    return None


def start_tcp_server(
    data_dir: Path,
    port: int = 0,
    *,
    fsync: FsyncPolicy = "always",
    binaries: ServerBinaries | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
) -> TcpServer:
    """Start a FalkorDB server for `data_dir` on 127.0.0.1:`port` (0 = a free port); stop it with `.stop()`."""
    check_fsync(fsync)
    files = _prepare(data_dir)
    with _start_lock(files, start_timeout):
        record = _live_record(files)
        if record is not None:
            raise GraphUnavailable(
                f"data dir {files.data_dir} already has a running server ({record.listener.describe()}, "
                f"pid {record.pid}); stop it first"
            )
        attempts = _TCP_PORT_ATTEMPTS if port == 0 else 1
        for attempt in range(attempts):
            chosen = port or _free_tcp_port()
            listener = Listener(host=_TCP_HOST, port=chosen)
            try:
                pid = launch_server(files, binaries or ServerBinaries.bundled(), listener, fsync, start_timeout)
            except GraphUnavailable as exc:
                # Another process may grab the probed port before the server binds it: probe again.
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    continue
                raise
            _write_record(
                files, ServerRecord(pid=pid, fsync=fsync, started_at=time.time(), host=_TCP_HOST, port=chosen)
            )
            return TcpServer(data_dir=files.data_dir, host=_TCP_HOST, port=chosen, pid=pid)
    raise GraphUnavailable(f"could not find a free TCP port for the FalkorDB server of {files.data_dir}")


def _prepare(data_dir: Path) -> ServerFiles:
    """Resolve and create the data directory, proving it is writable."""
    resolved = Path(data_dir).expanduser().resolve()
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        files = ServerFiles(resolved)
        files.start_lock.touch()
        files.clients_lock.touch()
    except OSError as exc:
        raise GraphUnavailable(f"graph data dir {resolved} is not a writable directory: {exc.strerror}") from None
    return files


@contextmanager
def _start_lock(files: ServerFiles, timeout: float) -> Iterator[None]:
    """Hold the exclusive start/stop lock of the data dir, waiting at most `timeout` seconds."""
    fd = os.open(files.start_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GraphUnavailable(
                        f"timed out after {timeout:.0f}s waiting for another process to start or stop the "
                        f"FalkorDB server of {files.data_dir}"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _hold_clients_lock(files: ServerFiles) -> int:
    """Open the clients lock and hold it shared; the returned fd is this client's reference."""
    fd = os.open(files.clients_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # only a closer under the start lock (which we hold) ever takes it exclusive
    return fd


def _clients_remain(files: ServerFiles) -> bool:
    """True if any process still holds the clients lock shared."""
    fd = os.open(files.clients_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _read_record(files: ServerFiles) -> ServerRecord | None:
    """Parse `server.json`; None if it is absent or unreadable."""
    try:
        data = json.loads(files.registry.read_text())
        return ServerRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_record(files: ServerFiles, record: ServerRecord) -> None:
    """Atomically replace `server.json`."""
    temporary = files.registry.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(record)))
    os.replace(temporary, files.registry)


def _live_record(files: ServerFiles) -> ServerRecord | None:
    """The record of our live server; clears stale state (dead pid, stale files, untracked servers) otherwise."""
    record = _read_record(files)
    if record is not None and is_our_server(record.pid, files):
        return record
    for pid in server_pids(files):  # a server we lost track of (registry deleted or corrupt): stop it cleanly
        terminate_server(pid, files, _STOP_TIMEOUT)
    _clear_state(files, record)
    return None


def _clear_state(files: ServerFiles, record: ServerRecord | None) -> None:
    """Remove the registry, pid file and socket files of a server that no longer runs."""
    files.registry.unlink(missing_ok=True)
    files.pidfile.unlink(missing_ok=True)
    files.socket.unlink(missing_ok=True)
    if record is not None and record.socket is not None:
        Path(record.socket).unlink(missing_ok=True)


def _stop(files: ServerFiles, record: ServerRecord, timeout: float = _STOP_TIMEOUT) -> None:
    """Stop the recorded server and clear its state."""
    terminate_server(record.pid, files, timeout)
    _clear_state(files, record)


def _raise_fsync(files: ServerFiles, record: ServerRecord, fsync: FsyncPolicy) -> ServerRecord:
    """Make the running server's fsync policy at least as strict as a newly attaching client asks."""
    admin = connect(record.listener, timeout=10.0)
    try:
        admin.config_set("appendfsync", fsync)
    except redis.RedisError as exc:
        raise GraphUnavailable(f"cannot set appendfsync={fsync} on the server of {files.data_dir}: {exc}") from None
    finally:
        admin.close()
    updated = ServerRecord(
        pid=record.pid,
        fsync=fsync,
        started_at=record.started_at,
        socket=record.socket,
        host=record.host,
        port=record.port,
    )
    _write_record(files, updated)
    return updated


def _free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_TCP_HOST, 0))
        return int(probe.getsockname()[1])
