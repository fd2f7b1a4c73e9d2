"""Messages arriving from a stream (MQTT, OPC-UA) gathered into the batches a sync takes.

A batch closes as soon as the flow goes quiet for `quiet` seconds, `max_delay` seconds after its first message at
the latest, or at `size` messages, so a lone reading is synced within `quiet` seconds instead of waiting for the
read to end. The read ends once no message came for `idle_timeout` seconds or `duration` seconds passed (the run
then completes and, on a `continuous` schedule, the next one starts). Waiting is blocking (no polling), so an idle
stream costs no CPU beyond one wake-up per `idle_timeout`.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
QUIET_SECONDS = 0.02  # default: a batch closes once no message came for this long
MAX_DELAY_SECONDS = 0.25  # default: and at the latest this long after its first message


class BatchWindowError(ValueError):
    """A batch window option is out of range; names the option."""


@dataclass(frozen=True)
class BatchWindow:
    """When a stream's messages are handed to the sync as a batch, and when the read ends."""

    size: int = 500
    quiet: float = QUIET_SECONDS
    max_delay: float = MAX_DELAY_SECONDS
    idle_timeout: float = 1.0
    duration: float = 30.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise BatchWindowError(f"batch_size must be at least 1, not {self.size}")
        for name in ("quiet", "max_delay", "idle_timeout", "duration"):
            value = getattr(self, name)
            if not value > 0:
                raise BatchWindowError(f"{_OPTION_NAMES[name]} must be a positive number of seconds, not {value!r}")

    def batches(self, inbox: queue.Queue[T]) -> Iterator[list[T]]:
        """Batches of what arrives in `inbox` until the stream is idle for `idle_timeout` or `duration` passed."""
        deadline = time.monotonic() + self.duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                batch = [inbox.get(timeout=min(self.idle_timeout, remaining))]
            except queue.Empty:
                return
            closes = time.monotonic() + self.max_delay
            while len(batch) < self.size:
                wait = min(self.quiet, closes - time.monotonic())
                if wait <= 0:
                    break
                try:
                    batch.append(inbox.get(timeout=wait))
                except queue.Empty:
                    break
            yield batch


_OPTION_NAMES = {
    "quiet": "batch_quiet",
    "max_delay": "max_batch_delay",
    "idle_timeout": "idle_timeout",
    "duration": "duration",
}
