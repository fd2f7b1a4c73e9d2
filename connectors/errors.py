"""The connector layer's errors: one `ConnectorError` base that every connector-layer exception derives from, so an
edge can translate them once; and the errors of a sync run itself."""

from __future__ import annotations

from typing import Any


def _rebuilt(cls: type[ConnectorError], args: tuple[Any, ...], state: dict[str, Any]) -> ConnectorError:
    """A connector error as pickled: its class, its message arguments and its attributes (no `__init__` call)."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConnectorError(Exception):
    """Something in the connector layer (a source, a mapping, the registry, a schedule, a sync run) went wrong; the
    message names the input and the problem. Every one pickles with its attributes, whatever its `__init__` takes:
    a sync worker process (connectors/sync/workers.py) hands it back to the run as it was raised."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


class SyncError(ConnectorError, RuntimeError):
    """A sync could not run at all (bad configuration, unreachable source); names the connector and entity."""


class MassDeletion(SyncError):
    """A run would delete more of an entity's records than allowed (or all of them after reading none); it stopped
    before deleting anything."""
