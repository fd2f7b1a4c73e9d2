"""Graph errors become API errors by their type, decided where the backend knows what happened."""

from __future__ import annotations

from api.errors import BadUserInput, QueryTimeout, api_error
from graph.errors import BackendRefused, QueryError, QueryTimedOut


def test_timeouts_refusals_and_bad_values_are_told_apart_by_type() -> None:
    assert isinstance(api_error(QueryTimedOut("query timed out: Query timed out")), QueryTimeout)
    assert api_error(BackendRefused("FalkorDB refused the query: Invalid input")) is None  # masked: internal
    assert isinstance(api_error(QueryError("limit must be between 0 and 1000, got 5000")), BadUserInput)
    # a caller's value that merely mentions a timeout is still the caller's problem, not a time limit
    assert isinstance(api_error(QueryError("'timeout' cannot be used as a parameter")), BadUserInput)
