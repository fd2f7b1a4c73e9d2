"""The embedded FalkorDB server: start/attach/stop, sharing between processes, crash recovery, durability, TCP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from falkordb import FalkorDB

from graph.embedded import (
    embedded_status,
    open_embedded,
    start_tcp_server,
    stop_embedded,
)
from graph.errors import GraphError, GraphUnavailable
from graph.server_process import ServerBinaries, ServerFiles, server_pids
from tests.graph.conftest import falkordb_processes_under

REPO = Path(__file__).resolve().parents[2]

# A writer process: opens the data dir, creates one :W {i} node per GRAPH.QUERY and prints each acknowledged index.
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from graph.embedded import open_embedded

    data_dir, count, label = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    handle = open_embedded(data_dir)
    print(f"pid {handle.pid}", flush=True)
    graph = handle.client.select_graph("crash")
    for i in range(count):
        graph.query(f"CREATE (:{label} {{i: $i}})", {"i": i})
        print(i, flush=True)
    handle.close()
    """
)

# A concurrent worker: creates distinct nodes and increments a shared counter, one query at a time.
WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from graph.embedded import open_embedded

    data_dir, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    handle = open_embedded(data_dir)
    print(f"pid {handle.pid}", flush=True)
    graph = handle.client.select_graph("shared")
    for i in range(count):
        graph.query("CREATE (:Item {worker: $w, i: $i})", {"w": name, "i": i})
        graph.query("MERGE (c:Counter {id: 1}) ON CREATE SET c.n = 1 ON MATCH SET c.n = c.n + 1")
    handle.close()
    print("done", flush=True)
    """
)


def spawn(script: str, *args: object) -> subprocess.Popen[str]:
    """Run `script` in a fresh interpreter with the repo importable; stdout is a text pipe."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def read_until_acknowledged(writer: subprocess.Popen[str], at_least: int) -> tuple[int, list[int]]:
    """Read the writer's server pid line and acknowledged indices until `at_least` have been acknowledged."""
    assert writer.stdout is not None
    first = writer.stdout.readline()
    assert first.startswith("pid "), (
        f"writer failed to start: {first!r} {writer.stderr.read() if writer.stderr else ''}"
    )
    acknowledged: list[int] = []
    while len(acknowledged) < at_least:
        line = writer.stdout.readline()
        assert line, f"writer ended early: {writer.stderr.read() if writer.stderr else ''}"
        acknowledged.append(int(line))
    return int(first.split()[1]), acknowledged


def rest_of_acknowledged(writer: subprocess.Popen[str]) -> list[int]:
    """Indices the writer printed after we stopped reading (each was acknowledged before it died)."""
    out, _ = writer.communicate(timeout=30)
    return [int(line) for line in out.split() if line.isdigit()]


def stored_indices(data_dir: Path, label: str) -> set[int]:
    """The `i` of every node with `label` in graph 'crash', read through a fresh open of the data dir."""
    with open_embedded(data_dir) as handle:
        rows = handle.client.select_graph("crash").query(f"MATCH (n:{label}) RETURN n.i").result_set
    return {row[0] for row in rows}


def wait_dead(pid: int) -> None:
    """Wait until `pid` is gone or a zombie."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not die")


# --- lifecycle -------------------------------------------------------------------------------------------------


def test_open_starts_server_with_append_only_persistence_inside_data_dir(graph_data_dir: Path) -> None:
    with open_embedded(graph_data_dir) as handle:
        assert handle.started
        config = handle.client.connection.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "always"
        assert config["port"] == "0"  # no TCP listener for the embedded server
        assert Path(config["dir"]) == graph_data_dir.resolve()
        assert handle.socket_path.parent == graph_data_dir.resolve()
        result = handle.client.select_graph("g").query("UNWIND range(1, 3) AS i CREATE (:N {i: i}) RETURN count(*)")
        assert result.result_set == [[3]]
        record = json.loads((graph_data_dir / "server.json").read_text())
        assert record["pid"] == handle.pid
        assert (graph_data_dir / "appendonly").is_dir()
        assert (graph_data_dir / "falkordb.log").is_file()
    # last client closed: the server stopped and its state files are gone
    assert embedded_status(graph_data_dir) is None
    assert not (graph_data_dir / "server.json").exists()
    assert not handle.socket_path.exists()
    assert falkordb_processes_under(graph_data_dir) == []


def test_data_survives_clean_restart(graph_data_dir: Path) -> None:
    with open_embedded(graph_data_dir) as handle:
        handle.client.select_graph("g").query("UNWIND range(1, 100) AS i CREATE (:N {i: i})")
        first_pid = handle.pid
    with open_embedded(graph_data_dir) as handle:
        assert handle.started and handle.pid != first_pid
        assert handle.client.select_graph("g").query("MATCH (n:N) RETURN sum(n.i)").result_set == [[5050]]


def test_second_open_attaches_and_last_close_stops(graph_data_dir: Path) -> None:
    first = open_embedded(graph_data_dir)
    second = open_embedded(graph_data_dir)
    assert first.started and not second.started
    assert first.pid == second.pid
    first.close()
    assert embedded_status(graph_data_dir) is not None, "server stopped while a client was still open"
    assert second.client.select_graph("g").query("RETURN 1").result_set == [[1]]
    second.close()
    second.close()  # idempotent
    assert embedded_status(graph_data_dir) is None


def test_another_process_attaches_to_the_running_server(embedded_graph, graph_data_dir: Path) -> None:
    writer = spawn(WRITER, graph_data_dir, 5, "W")
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert out.splitlines()[0] == f"pid {embedded_graph.pid}"
    assert embedded_status(graph_data_dir) is not None, "the other process's close stopped a server still in use"
    rows = embedded_graph.client.select_graph("crash").query("MATCH (n:W) RETURN count(n)").result_set
    assert rows == [[5]]


def test_stop_embedded_stops_server_even_with_open_clients(graph_data_dir: Path) -> None:
    handle = open_embedded(graph_data_dir)
    pid = handle.pid
    assert stop_embedded(graph_data_dir) is True
    wait_dead(pid)
    assert stop_embedded(graph_data_dir) is False
    handle.close()  # closing after a forced stop is harmless
    assert falkordb_processes_under(graph_data_dir) == []


def test_killed_client_leaves_server_that_next_client_adopts_and_stops(graph_data_dir: Path) -> None:
    writer = spawn(WRITER, graph_data_dir, 100_000, "W")
    server_pid, _ = read_until_acknowledged(writer, 10)
    writer.kill()
    writer.communicate(timeout=30)
    assert embedded_status(graph_data_dir).pid == server_pid  # type: ignore[union-attr]
    with open_embedded(graph_data_dir) as handle:
        assert not handle.started and handle.pid == server_pid
    wait_dead(server_pid)
    assert embedded_status(graph_data_dir) is None


def test_relative_and_absolute_paths_share_one_server(graph_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph_data_dir.mkdir(parents=True)
    monkeypatch.chdir(graph_data_dir.parent)
    with open_embedded(Path(graph_data_dir.name)) as relative, open_embedded(graph_data_dir) as absolute:
        assert relative.pid == absolute.pid


def test_attaching_with_a_stricter_fsync_policy_raises_the_servers(graph_data_dir: Path) -> None:
    with open_embedded(graph_data_dir, fsync="everysec") as lax:
        assert lax.client.connection.config_get("appendfsync") == {"appendfsync": "everysec"}
        with open_embedded(graph_data_dir, fsync="always") as strict:
            assert strict.fsync == "always"
            assert lax.client.connection.config_get("appendfsync") == {"appendfsync": "always"}
        with open_embedded(graph_data_dir, fsync="no") as weaker:
            assert weaker.fsync == "always"  # never weakened by a later client


def test_long_data_dir_path_uses_a_private_short_socket(tmp_path: Path) -> None:
    data_dir = tmp_path / ("deep-" * 12) / ("nested-" * 6) / "graph"
    assert len(str(data_dir / "falkordb.sock")) > 107
    try:
        with open_embedded(data_dir) as handle:
            assert len(str(handle.socket_path)) < 100
            assert handle.socket_path.parent.stat().st_mode & 0o077 == 0
            assert handle.client.select_graph("g").query("RETURN 42").result_set == [[42]]
    finally:
        stop_embedded(data_dir)
    assert falkordb_processes_under(tmp_path) == []


# --- stale state from crashes ----------------------------------------------------------------------------------


def test_recovers_from_killed_server_with_stale_registry_socket_and_pidfile(graph_data_dir: Path) -> None:
    with open_embedded(graph_data_dir) as handle:
        handle.client.select_graph("g").query("CREATE (:N {i: 1})")
        old_pid = handle.pid
        os.kill(old_pid, signal.SIGKILL)
        wait_dead(old_pid)
        files = ServerFiles(graph_data_dir.resolve())
        assert files.registry.exists() and files.socket.exists() and files.pidfile.exists()  # stale leftovers
        with open_embedded(graph_data_dir) as reopened:
            assert reopened.started and reopened.pid != old_pid
            assert reopened.client.select_graph("g").query("MATCH (n:N) RETURN n.i").result_set == [[1]]


def test_registry_naming_an_unrelated_live_process_is_stale_and_that_process_is_spared(graph_data_dir: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        graph_data_dir.mkdir(parents=True)
        (graph_data_dir / "server.json").write_text(
            json.dumps(
                {
                    "pid": bystander.pid,
                    "fsync": "always",
                    "started_at": 0.0,
                    "socket": str(graph_data_dir / "falkordb.sock"),
                }
            )
        )
        (graph_data_dir / "falkordb.sock").write_text("not a socket")
        with open_embedded(graph_data_dir) as handle:
            assert handle.started and handle.pid != bystander.pid
            assert handle.client.select_graph("g").query("RETURN 1").result_set == [[1]]
        assert bystander.poll() is None, "an unrelated process was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_corrupt_registry_is_recovered(graph_data_dir: Path) -> None:
    graph_data_dir.mkdir(parents=True)
    (graph_data_dir / "server.json").write_text("{not json")
    with open_embedded(graph_data_dir) as handle:
        assert handle.started
    assert not (graph_data_dir / "server.json").exists()


def test_lost_registry_with_running_server_is_replaced_without_losing_data(graph_data_dir: Path) -> None:
    handle = open_embedded(graph_data_dir)
    handle.client.select_graph("g").query("CREATE (:N {i: 7})")
    orphan = handle.pid
    (graph_data_dir / "server.json").unlink()
    with open_embedded(graph_data_dir) as reopened:
        assert reopened.pid != orphan
        assert server_pids(ServerFiles(graph_data_dir.resolve())) == [reopened.pid]
        assert reopened.client.select_graph("g").query("MATCH (n:N) RETURN n.i").result_set == [[7]]
    handle.close()
    wait_dead(orphan)


# --- durability under kill -9 ----------------------------------------------------------------------------------


def test_acknowledged_writes_survive_kill_9_of_the_server(graph_data_dir: Path) -> None:
    holder = open_embedded(graph_data_dir)  # keeps the server up independently of the writer
    writer = spawn(WRITER, graph_data_dir, 20_000, "W")
    server_pid, acknowledged = read_until_acknowledged(writer, 1500)
    os.kill(server_pid, signal.SIGKILL)
    acknowledged += rest_of_acknowledged(writer)
    assert writer.returncode != 0, "the writer should have failed when its server died"
    wait_dead(server_pid)
    holder.close()
    stored = stored_indices(graph_data_dir, "W")
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
    assert len(acknowledged) >= 1500


def test_acknowledged_writes_survive_kill_9_of_writer_and_server(graph_data_dir: Path) -> None:
    writer = spawn(WRITER, graph_data_dir, 20_000, "W")
    server_pid, acknowledged = read_until_acknowledged(writer, 1500)
    writer.kill()
    acknowledged += rest_of_acknowledged(writer)
    os.kill(server_pid, signal.SIGKILL)
    wait_dead(server_pid)
    stored = stored_indices(graph_data_dir, "W")
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"


# --- concurrency -----------------------------------------------------------------------------------------------


def test_two_processes_writing_at_once_share_one_server_and_lose_nothing(graph_data_dir: Path) -> None:
    count = 300
    workers = [spawn(WORKER, graph_data_dir, name, count) for name in ("a", "b")]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    server_pids_seen = {out.splitlines()[0] for out, _ in outputs}
    assert len(server_pids_seen) == 1, f"two servers were started: {server_pids_seen}"
    assert embedded_status(graph_data_dir) is None, "the last worker to close should have stopped the server"
    with open_embedded(graph_data_dir) as handle:
        graph = handle.client.select_graph("shared")
        per_worker = graph.query("MATCH (n:Item) RETURN n.worker, count(DISTINCT n.i) ORDER BY n.worker").result_set
        assert per_worker == [["a", count], ["b", count]]
        assert graph.query("MATCH (c:Counter) RETURN count(c), sum(c.n)").result_set == [[1, 2 * count]]


# --- errors ----------------------------------------------------------------------------------------------------


def test_missing_binary_is_a_clear_error(graph_data_dir: Path, tmp_path: Path) -> None:
    bogus = ServerBinaries(redis_server=tmp_path / "no-redis-server", falkordb_module=tmp_path / "no.so")
    with pytest.raises(GraphUnavailable, match="no-redis-server.*does not exist"):
        open_embedded(graph_data_dir, binaries=bogus)
    assert not (graph_data_dir / "server.json").exists()


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(GraphUnavailable, match="a-file/graph is not a writable directory"):
        open_embedded(blocker / "graph")


def test_server_failing_to_start_reports_the_log_tail(graph_data_dir: Path) -> None:
    with open_embedded(graph_data_dir):
        pass
    (graph_data_dir / "appendonly" / "graph.aof.manifest").write_text("garbage line\n")
    with pytest.raises(GraphUnavailable, match=r"(?s)exited during start-up.*log tail.*Invalid AOF manifest"):
        open_embedded(graph_data_dir, start_timeout=20)
    assert isinstance(GraphUnavailable("x"), GraphError)


def test_unknown_fsync_policy_is_rejected(graph_data_dir: Path) -> None:
    with pytest.raises(ValueError, match="'sometimes'"):
        open_embedded(graph_data_dir, fsync="sometimes")  # type: ignore[arg-type]


# --- TCP server for falkordb:// contract tests -----------------------------------------------------------------


def test_tcp_server_serves_on_loopback_and_persists(graph_data_dir: Path) -> None:
    with start_tcp_server(graph_data_dir) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert server.url == f"falkordb://127.0.0.1:{server.port}"
        listening = [c.laddr for c in psutil.Process(server.pid).net_connections("tcp") if c.status == "LISTEN"]
        assert listening and all(address.ip == "127.0.0.1" for address in listening)
        client = FalkorDB(host=server.host, port=server.port)
        client.select_graph("g").query("CREATE (:N {i: 1})")
        client.close()
        with pytest.raises(GraphUnavailable, match="served over TCP"):
            open_embedded(graph_data_dir)
    assert falkordb_processes_under(graph_data_dir) == []
    with open_embedded(graph_data_dir) as handle:  # same data, now embedded
        assert handle.client.select_graph("g").query("MATCH (n:N) RETURN n.i").result_set == [[1]]


def test_tcp_server_refuses_a_data_dir_already_served(embedded_graph, graph_data_dir: Path) -> None:
    with pytest.raises(GraphUnavailable, match="already has a running server"):
        start_tcp_server(graph_data_dir)


# --- reconnecting backends (issue 23 item 3) ---------------------------------------------------------------------


def _until(condition, seconds: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def _answers(backend) -> bool:  # type: ignore[no-untyped-def]
    try:
        return backend.read("MATCH (n:N) RETURN count(n)") == [[1]]
    except GraphUnavailable:
        return False


def test_the_embedded_backend_restarts_its_killed_server(graph_data_dir: Path) -> None:
    from graph.backends import open_backend

    backend = open_backend(f"falkordb+embedded://{graph_data_dir}")
    try:
        backend.write("CREATE (:N {i: 1})")
        old = embedded_status(graph_data_dir)
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)
        with pytest.raises(GraphUnavailable):
            backend.write("CREATE (:N {i: 2})")  # a write is never resent: it fails, clearly
        print(f"\n  embedded server back after {_until(lambda: _answers(backend)):.2f} s")
        new = embedded_status(graph_data_dir)
        assert new is not None and new.pid != old.pid and backend.ping()
    finally:
        backend.close()
    assert falkordb_processes_under(graph_data_dir) == []  # the last client out still stops the restarted server


def test_a_server_backend_reconnects_to_its_restarted_server(graph_data_dir: Path) -> None:
    from graph.backends import open_backend

    server = start_tcp_server(graph_data_dir)
    backend = open_backend(server.url)
    try:
        backend.write("CREATE (:N {i: 1})")
        server.stop()
        with pytest.raises(GraphUnavailable):
            backend.read("MATCH (n) RETURN count(n)")
        assert not backend.ping()
        server = start_tcp_server(graph_data_dir, port=server.port)
        print(f"\n  server backend answers again after {_until(lambda: _answers(backend)):.2f} s")
        assert backend.ping()
    finally:
        backend.close()
        server.stop()


def test_a_server_that_dies_while_a_client_attaches_is_replaced(graph_data_dir: Path) -> None:
    """The server is alive when a client finds its record and dies before it answers (killed a moment ago): the
    client starts a new one instead of failing with 'exited during start-up'."""
    import threading

    first = open_embedded(graph_data_dir)
    first.client.select_graph("g").query("CREATE (:N {i: 1})")
    os.kill(first.pid, signal.SIGSTOP)  # alive, but not answering
    killer = threading.Timer(0.5, os.kill, (first.pid, signal.SIGKILL))
    killer.start()
    try:
        with open_embedded(graph_data_dir) as second:
            assert second.pid != first.pid and second.started
            assert second.client.select_graph("g").query("MATCH (n:N) RETURN n.i").result_set == [[1]]
    finally:
        killer.join()
        first.close()
    assert falkordb_processes_under(graph_data_dir) == []
