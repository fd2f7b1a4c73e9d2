"""ISO 8601 durations, the one reader and writer: ontology checks, the graph's stored form, GraphQL's Duration
scalar and the connectors' casts all read and write duration text here.

The written form is the canonical one of XML Schema's dayTimeDuration: days, hours, minutes and seconds with the
zero parts left out ('P1DT2H', 'PT0.5S', '-PT15M', 'PT0S'), exact to the microsecond. Any ISO 8601 duration text is
read, years, months and weeks included; only text without years and months (whose length varies) and with at most
six decimals converts exactly to a `timedelta`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ontology.errors import OntologyError, quoted

_DURATION = re.compile(
    r"(?P<sign>-)?P(?=\d|T\d)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)(?:\.(?P<fraction>\d+))?S)?)?"
)
_MICROSECOND = dt.timedelta(microseconds=1)


class DurationError(OntologyError, ValueError):
    """Text that is not an ISO 8601 duration, or one that no `timedelta` holds exactly."""


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration as written: its sign and parts (`fraction`: the digits after the seconds' point)."""

    negative: bool = False
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0
    fraction: str = ""

    def to_timedelta(self, text: str) -> dt.timedelta:
        """The exact `timedelta` of this duration; DurationError naming `text` (what was read) when there is none."""
        if self.years or self.months:
            raise DurationError(
                f"{quoted(text)} has years or months, which have no fixed length; give the duration "
                "in weeks, days, hours, minutes and seconds"
            )
        if len(self.fraction.rstrip("0")) > 6:
            raise DurationError(f"{quoted(text)} is finer than a microsecond (at most 6 decimals of a second)")
        try:
            delta = dt.timedelta(
                weeks=self.weeks,
                days=self.days,
                hours=self.hours,
                minutes=self.minutes,
                seconds=self.seconds,
                microseconds=int(self.fraction[:6].ljust(6, "0")),
            )
        except OverflowError:
            raise DurationError(
                f"{quoted(text)} is longer than any duration held here ({dt.timedelta.max.days} days)"
            ) from None
        return -delta if self.negative else delta


def read_duration(text: str) -> Duration:
    """The parts of ISO 8601 duration text ('P1DT2H', '-PT15M', 'P1Y2M', 'PT0.5S'); DurationError naming the text."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise DurationError(f"{quoted(text)} is not an ISO 8601 duration such as 'P1DT2H', 'PT0.5S' or '-PT15M'")
    parts = match.groupdict()
    try:
        numbers = {
            name: int(parts[name] or 0) for name in ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
        }
    except ValueError:  # a part of thousands of digits (past the interpreter's limit for int())
        raise DurationError(f"{quoted(text)} has a part too long to be a number") from None
    return Duration(negative=parts["sign"] is not None, fraction=parts["fraction"] or "", **numbers)


def is_duration(text: object) -> bool:
    """Whether `text` is ISO 8601 duration text (any parts, years and months included)."""
    return isinstance(text, str) and _DURATION.fullmatch(text) is not None


def parse_duration(text: str) -> dt.timedelta:
    """The exact `timedelta` of ISO 8601 duration text; DurationError naming the text when it is not one, or has
    years or months, or is finer than a microsecond (refused rather than approximated)."""
    return read_duration(text).to_timedelta(text)


def format_duration(delta: dt.timedelta) -> str:
    """The canonical ISO 8601 text of `delta` ('P1DT2H30M', 'PT0.5S', '-PT15M', 'PT0S'), exact to the microsecond."""
    sign = "-" if delta < dt.timedelta(0) else ""
    seconds, micros = divmod(abs(delta) // _MICROSECOND, 1_000_000)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds or micros:
        time += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    if not days and not time:
        return "PT0S"
    return f"{sign}P{f'{days}D' if days else ''}{f'T{time}' if time else ''}"


def canonical_duration(text: str) -> str:
    """ISO 8601 duration text in the canonical form when it converts exactly ('PT90M' -> 'PT1H30M'), else as written
    (years and months stay as they are); DurationError naming the text when it is not a duration."""
    duration = read_duration(text)
    try:
        return format_duration(duration.to_timedelta(text))
    except DurationError:
        return text
