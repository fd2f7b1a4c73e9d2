"""The connector layer's errors: one `ConnectorError` base that every connector-layer exception derives from, so an
edge can translate them once; and the errors of a sync run itself."""

from __future__ import annotations


class ConnectorError(Exception):
    """Something in the connector layer (a source, a mapping, the registry, a schedule, a sync run) went wrong; the
    message names the input and the problem."""


class SyncError(ConnectorError, RuntimeError):
    """A sync could not run at all (bad configuration, unreachable source); names the connector and entity."""


class MassDeletion(SyncError):
    """A run would delete more of an entity's records than allowed (or all of them after reading none); it stopped
    before deleting anything."""
