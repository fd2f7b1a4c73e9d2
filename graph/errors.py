"""Domain exceptions of the graph layer."""

from __future__ import annotations

from ontology.errors import Violation


class GraphError(Exception):
    """Base of every error raised by the twin graph."""


class GraphUnavailable(GraphError):
    """The graph backend cannot be started or reached."""


class BatchRejected(GraphError):
    """A write batch broke the ontology's rules; nothing of it was written. Lists every offending item."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        shown = "".join(f"\n  - {v}" for v in violations[:25])
        more = f"\n  ... and {len(violations) - 25} more" if len(violations) > 25 else ""
        super().__init__(f"batch rejected, nothing written: {len(violations)} violation(s){shown}{more}")


class HistoryUnavailable(GraphError):
    """The store was opened without a relational history store."""


class TwinNotFound(GraphError):
    """No twin has the given uid (or the caller may not see it)."""


class ReadOnlyViolation(GraphError):
    """A query given to the read-only entry point tries to change the graph."""


class FieldNotReadable(GraphError):
    """A read tried to filter, sort, aggregate or search on a field the caller may not read."""


class QueryError(GraphError):
    """The backend refused a query (syntax, timeout, bad parameters)."""


class QueryTimedOut(QueryError):
    """The query ran past its time limit."""


class BackendRefused(QueryError):
    """The graph database refused a query: the query's own fault, not a value the caller gave."""
