"""When the runtime syncs a connector by itself: every N seconds, on a cron expression, continuously, or never.

In `connectors.yaml`, per connector::

    schedule: 30s                    # or 5m, 1h, a number of seconds, {every: 30s}
    schedule: {cron: "*/5 * * * *"}  # five-field cron, in UTC
    schedule: continuous             # start the next run as soon as one ends (MQTT: keep listening)
    schedule: off                    # only `twin connect run` and the API run it

Without `schedule:`, SQL, file, REST and Tryton sources are synced every 30 s and MQTT and OPC-UA sources
continuously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from croniter import croniter

from connectors.errors import ConnectorError

DEFAULT_INTERVAL_SECONDS = 30.0
MIN_INTERVAL_SECONDS = 1.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


class ScheduleError(ConnectorError, ValueError):
    """A schedule is malformed; the message names the connector and quotes what was given."""


@dataclass(frozen=True)
class Schedule:
    """How often a connector runs by itself."""

    kind: Literal["every", "cron", "continuous", "off"]
    seconds: float | None = None
    cron: str | None = None

    def next_run(self, after: datetime) -> datetime | None:
        """The first time a run is due after `after` (aware UTC); None when the connector never runs by itself."""
        if self.kind == "off":
            return None
        if self.kind == "continuous":
            return after
        if self.kind == "every":
            assert self.seconds is not None
            return after + timedelta(seconds=self.seconds)
        assert self.cron is not None
        due: datetime = croniter(self.cron, after.astimezone(UTC)).get_next(datetime)
        return due if due.tzinfo is not None else due.replace(tzinfo=UTC)

    def describe(self) -> str:
        """The schedule as `twin connect list` prints it."""
        if self.kind == "every":
            return f"every {self.seconds:g} s"
        if self.kind == "cron":
            return f"cron {self.cron}"
        return self.kind


OFF = Schedule("off")
CONTINUOUS = Schedule("continuous")


def default_schedule(source_kind: str) -> Schedule:
    """The schedule of a connector that names none: MQTT and OPC-UA listen continuously, the other kinds poll."""
    return CONTINUOUS if source_kind in ("mqtt", "opcua") else Schedule("every", DEFAULT_INTERVAL_SECONDS)


def parse_schedule(raw: Any, source_kind: str, where: str) -> Schedule:
    """A connector's `schedule:` value read into a Schedule; ScheduleError naming `where` when it is malformed."""
    if raw is None:
        return default_schedule(source_kind)
    if raw is False or (isinstance(raw, str) and raw.strip().lower() in ("off", "never", "manual")):
        return OFF
    if isinstance(raw, str) and raw.strip().lower() == "continuous":
        return CONTINUOUS
    if isinstance(raw, dict):
        if set(raw) == {"every"}:
            return Schedule("every", _seconds(raw["every"], where))
        if set(raw) == {"cron"}:
            return _cron(raw["cron"], where)
        raise ScheduleError(f"{where}: schedule takes one key, `every` or `cron`; got {sorted(map(str, raw))}")
    return Schedule("every", _seconds(raw, where))


def _seconds(raw: Any, where: str) -> float:
    """An interval such as 30, '30s', '5m', '1.5h' in seconds, at least MIN_INTERVAL_SECONDS."""
    if isinstance(raw, bool):
        raise ScheduleError(f"{where}: schedule must be an interval, cron, continuous or off; got {raw!r}")
    if isinstance(raw, (int, float)):
        seconds = float(raw)
    else:
        match = _INTERVAL.match(str(raw))
        if match is None:
            raise ScheduleError(
                f"{where}: schedule {str(raw)[:40]!r} is not an interval such as 30s, 5m, 1h, "
                f"{{cron: '*/5 * * * *'}}, continuous or off"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not seconds >= MIN_INTERVAL_SECONDS:
        raise ScheduleError(f"{where}: schedule interval {seconds:g} s is shorter than {MIN_INTERVAL_SECONDS:g} s")
    return seconds


def _cron(raw: Any, where: str) -> Schedule:
    """A five-field cron expression, checked."""
    if not isinstance(raw, str) or len(raw.split()) != 5 or not croniter.is_valid(raw):
        raise ScheduleError(
            f"{where}: cron {str(raw)[:60]!r} is not a five-field cron expression (minute hour day month weekday)"
        )
    return Schedule("cron", cron=raw.strip())
