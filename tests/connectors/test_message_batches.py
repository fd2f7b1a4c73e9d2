"""Stream messages become batches when the flow goes quiet or a batch has waited long enough, not when the read ends;
wrong batch options are refused naming the option."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest

from connectors.message_batches import BatchWindow, BatchWindowError
from connectors.registry import ConnectorRegistry, RegistryError
from ontology.core import load_core


def _feed(inbox: queue.Queue[int], count: int, every: float) -> threading.Thread:
    def put() -> None:
        for i in range(count):
            inbox.put(i)
            time.sleep(every)

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    return thread


def test_a_quiet_gap_closes_a_batch_and_a_steady_flow_is_cut_by_the_max_delay() -> None:
    inbox: queue.Queue[int] = queue.Queue()
    for i in (1, 2, 3):
        inbox.put(i)
    threading.Timer(0.5, inbox.put, (4,)).start()  # after a gap far longer than `quiet`, far shorter than idle
    window = BatchWindow(size=100, quiet=0.05, max_delay=5, idle_timeout=3, duration=10)
    batches = window.batches(inbox)
    assert next(batches) == [1, 2, 3] and next(batches) == [4]

    steady: queue.Queue[int] = queue.Queue()  # a message every 10 ms for ~1.5 s never goes quiet for 0.2 s
    _feed(steady, 150, 0.01)
    cut = list(BatchWindow(size=1000, quiet=0.2, max_delay=0.3, idle_timeout=1, duration=10).batches(steady))
    assert sum(len(b) for b in cut) == 150 and len(cut) >= 3  # one batch if only quiet or the read's end closed it


def test_size_bounds_a_batch_and_an_idle_stream_ends_the_read() -> None:
    inbox: queue.Queue[int] = queue.Queue()
    for i in range(7):
        inbox.put(i)
    assert list(BatchWindow(size=3, idle_timeout=0.2).batches(inbox)) == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"quiet": 0}, "batch_quiet must be a positive number of seconds"),
        ({"max_delay": -1}, "max_batch_delay must be a positive"),
        ({"size": 0}, "batch_size must be at least 1"),
    ],
)
def test_wrong_window_options_are_refused_by_name(options: dict, says: str) -> None:
    with pytest.raises(BatchWindowError, match=says):
        BatchWindow(**options)


def test_a_wrong_mqtt_batch_option_names_the_connector(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "system: t\nentities:\n  - name: readings\n    class: Machine\n"
        "    uid: 'm:{topic_1}'\n    update_only: true\n    ledger: false\n"
        "    properties: {status: state}\n"
    )
    (tmp_path / "connectors.yaml").write_text(
        "connectors:\n  t:\n    mapping: t.yaml\n    source: {kind: mqtt, host: 127.0.0.1, batch_quiet: 0}\n"
    )
    registry = ConnectorRegistry.load(load_core(), data_dir=tmp_path)
    connector = registry.connector("t")
    with pytest.raises(RegistryError, match="connector t, entity readings: batch_quiet must be a positive"):
        connector.open_source(connector.mapping.entities[0])
