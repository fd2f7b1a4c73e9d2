"""Errors the API reports to clients: each carries a GraphQL `extensions.code`; lower layers' errors map onto them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from governance.errors import AuthenticationError, GovernanceError, IdentityProviderUnavailable, PolicyDenied
from graph.errors import (
    BackendRefused,
    BatchRejected,
    FieldNotReadable,
    GraphError,
    GraphUnavailable,
    QueryError,
    QueryTimedOut,
    TwinNotFound,
)
from ontology.errors import OntologyError


class ApiError(Exception):
    """An error whose message is safe and useful to show to the caller."""

    code = "BAD_REQUEST"
    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code, **details}


class BadUserInput(ApiError):
    """Arguments or variables that cannot be used (bad cursor, page too large, unknown field...)."""

    code = "BAD_USER_INPUT"


class Unauthenticated(ApiError):
    """No or an invalid bearer token."""

    code = "UNAUTHENTICATED"
    status = 401


class Forbidden(ApiError):
    """The policy refused the operation."""

    code = "FORBIDDEN"
    status = 403


class FieldForbidden(Forbidden):
    """A field the caller may not read was used to filter, sort, group, aggregate or write."""

    code = "FIELD_NOT_READABLE"


class NotFound(ApiError):
    """The named thing does not exist (or the caller may not see it)."""

    code = "NOT_FOUND"
    status = 404


class InvalidWrite(ApiError):
    """A write batch broke the ontology's rules; nothing was written."""

    code = "BATCH_REJECTED"
    status = 422


class QueryTimeout(ApiError):
    """The query ran longer than the configured time limit."""

    code = "TIMEOUT"
    status = 504


class ServiceUnavailable(ApiError):
    """A backend (graph, database, identity provider) cannot be reached."""

    code = "SERVICE_UNAVAILABLE"
    status = 503


def api_error(exc: BaseException) -> ApiError | None:
    """The client-facing error for a domain exception, or None when it is internal (and must stay masked)."""
    if isinstance(exc, ApiError):
        return exc
    message = str(exc)
    if isinstance(exc, PolicyDenied):
        return Forbidden(message)
    if isinstance(exc, FieldNotReadable):
        return FieldForbidden(message)
    if isinstance(exc, AuthenticationError):
        return Unauthenticated(message)
    if isinstance(exc, BatchRejected):
        return InvalidWrite(
            message,
            violations=[{"path": v.path, "rule": v.rule, "message": v.message} for v in exc.violations[:200]],
        )
    if isinstance(exc, TwinNotFound):
        return NotFound(message)
    if isinstance(exc, (GraphUnavailable, IdentityProviderUnavailable)):
        return ServiceUnavailable(message)
    if isinstance(exc, (OperationalError, InterfaceError)):  # the pool reconnects (pre-ping) once it is back
        return ServiceUnavailable("the relational store (history, audit, lineage) is not reachable; try again shortly")
    if isinstance(exc, QueryTimedOut):
        return QueryTimeout("the query exceeded its time limit; narrow it down (filters, smaller pages)")
    if isinstance(exc, BackendRefused):
        return None  # the read engine's query was refused: an internal error, masked
    if isinstance(exc, QueryError):
        return BadUserInput(message)
    if isinstance(exc, (OntologyError, GovernanceError, GraphError)):
        return BadUserInput(message)
    return None
