"""kill -9 of `twin run` in the middle of delivering a burst of changes to a NATS JetStream route, then a restart:
every sequence number arrives on the stream (no gap), and whatever was published twice is a redelivery of the same
event under the same id (the stream keeps one copy by Nats-Msg-Id)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.runtime import Runtime
from api.settings import Settings
from connectors.route_delivery import RouteCursors
from graph.embedded import stop_embedded
from graph.model import Twin
from tests.connectors.test_event_endpoints import HOST, jetstream_stream, read_jetstream  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition` holds within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class Wiretap:
    """A plain NATS subscriber on the route's subjects: sees every publish, including those JetStream dedups."""

    def __init__(self, subjects: str) -> None:
        self.received: list[tuple[str, dict]] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._listen(subjects),), daemon=True
        )
        self._thread.start()
        assert self._ready.wait(10), "the wiretap could not subscribe"

    async def _listen(self, subjects: str) -> None:
        import nats

        self._done = asyncio.Event()
        nc = await nats.connect(f"nats://{HOST}:4222")

        async def take(message) -> None:  # type: ignore[no-untyped-def]
            self.received.append((message.headers["Nats-Msg-Id"], json.loads(message.data)))

        await nc.subscribe(subjects, cb=take, pending_msgs_limit=1_000_000)
        await nc.flush()
        self._ready.set()
        await self._done.wait()
        await nc.drain()

    def close(self) -> None:
        """Stop listening."""
        assert self._done is not None
        self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(10)


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(settings=Settings(data_dir=tmp_path / "twin", runtime_lease_seconds=LEASE_SECONDS))
    try:
        yield runtime
    finally:
        runtime.close()
        stop_embedded(tmp_path / "twin" / "graph")


def _start(runtime: Runtime) -> subprocess.Popen:
    env = {
        **os.environ,
        "TWIN_DATA_DIR": str(runtime.settings.data_dir),
        "TWIN_RUNTIME_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "run", "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stored_ids(stream: str, prefix: str) -> list[int]:
    return [int(m.headers["Nats-Msg-Id"]) for m in read_jetstream(stream, f"{prefix}.>")]


def _burst_killed_and_restarted(
    twin: Runtime, stream: str, prefix: str, changes: int, batch: int, kill_after: int
) -> None:
    """Write `changes` changes, kill -9 the runtime once `kill_after` events were published, restart it, check."""
    twin.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (twin.settings.data_dir / "routes.yaml").write_text(
        f"routes:\n  bus:\n    endpoint: nats://{HOST}:4222/{stream}/{prefix}\n    role: architect\n"
        f"    batch: {batch}\n"
    )
    for start in range(0, changes, 1_000):  # the burst: bulk writes of up to 1,000 changes each
        twin.store.upsert_twins(
            [Twin(f"m{i}", "Machine", {"name": f"Machine {i}"}) for i in range(start, min(changes, start + 1_000))]
        )
    assert twin.store.feed.head() == changes
    tap = Wiretap(f"{prefix}.>")
    first = _start(twin)
    try:
        assert wait_for(lambda: len(tap.received) >= kill_after or first.poll() is not None, 120), "nothing delivered"
        deadline = time.monotonic() + 5
        while len(tap.received) % batch == 0 and len(tap.received) < kill_after + batch and time.monotonic() < deadline:
            time.sleep(0.0005)  # aim the kill at a batch half published: its cursor has not moved yet
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(0.3)  # whatever was in flight has landed
        at_kill = len(_stored_ids(stream, prefix))
        assert 0 < at_kill < changes, f"the kill must land in the middle of the burst, {at_kill} of {changes} stored"
        cursor_at_kill, _ = RouteCursors(twin.settings.resolved_database_url).get("bus")
        second = _start(twin)
        try:
            # the killed runtime's lease runs out first (one lease period), then the rest follows from the cursor
            assert wait_for(
                lambda: (
                    RouteCursors(twin.settings.resolved_database_url).get("bus")[0] == changes
                    or second.poll() is not None
                ),
                240,
            ), "the restarted runtime did not catch up"
            assert second.poll() is None, second.stderr.read().decode() if second.stderr else ""
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        tap.close()
    stored = _stored_ids(stream, prefix)
    missing = sorted(set(range(1, changes + 1)) - set(stored))
    assert not missing, f"sequence numbers missing on the stream: {missing[:20]}"
    assert sorted(stored) == list(range(1, changes + 1))
    assert len(stored) == len(set(stored)) == changes  # each id stored once (Nats-Msg-Id dedup)
    published: dict[str, list[dict]] = {}
    for msg_id, event in tap.received:
        published.setdefault(msg_id, []).append(event)
    assert set(published) == {str(seq) for seq in range(1, changes + 1)}
    uid_of = {
        change.seq: change.uid for start in range(0, changes, 5_000) for change in twin.store.feed.read(start, 5_000)
    }
    for msg_id, copies in published.items():  # a duplicate is the same event sent again, never another one
        assert all(copy == copies[0] for copy in copies), msg_id
        assert copies[0]["id"] == msg_id and copies[0]["subject"] == uid_of[int(msg_id)]
    redelivered = {int(msg_id) for msg_id, copies in published.items() if len(copies) > 1}
    assert all(seq > cursor_at_kill for seq in redelivered)  # only what the cursor had not yet passed
    # what was stored beyond the cursor when the runtime died was sent again after the restart, under the same id
    assert set(range(cursor_at_kill + 1, at_kill + 1)) <= redelivered


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_burst_of_10000_changes_loses_no_sequence_number(
    twin: Runtime, jetstream_stream: tuple[str, str]
) -> None:  # noqa: F811
    stream, prefix = jetstream_stream
    _burst_killed_and_restarted(twin, stream, prefix, changes=10_000, batch=200, kill_after=2_000)


def test_kill_9_after_the_first_batches_of_a_burst_loses_no_sequence_number(
    twin: Runtime, jetstream_stream: tuple[str, str]
) -> None:  # noqa: F811
    stream, prefix = jetstream_stream
    _burst_killed_and_restarted(twin, stream, prefix, changes=500, batch=2, kill_after=40)
