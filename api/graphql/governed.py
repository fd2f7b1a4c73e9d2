"""The wrapper of every GraphQL root resolver: text no store can hold is refused, domain errors become client errors
(policy refusals mark the request denied), and the result is marked for the fast completion."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from api.context import RequestContext
from api.errors import BadUserInput, Forbidden, api_error
from api.graphql.completion import Compiled, Completed
from api.graphql.selection import plain

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: Any, name: str) -> None:
    """Refuse text no store can hold as given, anywhere in argument `name`: a NUL (the graph and SQLite cut text
    there, so a uid or filter value would match another) or a lone surrogate (not encodable as UTF-8)."""
    if isinstance(value, str):
        problem = (
            "holds a NUL character"
            if "\x00" in value
            else "holds a lone surrogate (not valid Unicode text)"
            if _SURROGATE.search(value)
            else None
        )
        if problem:
            raise BadUserInput(f"argument `{name}` {problem}: {value[:40]!r}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_text(item, f"{name}.{key}")
            check_text(key, f"{name} (a key)")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{name}[{index}]")


def governed(resolver: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a root resolver: domain errors become client errors (policy refusals mark the request denied).

    The result is marked `Compiled` (its nested values are keyed by response key, so it is completed directly) unless
    the resolver returned it `Completed` (the response data itself).
    """

    async def wrapper(root: Any, info: Any, **args: Any) -> Any:
        ctx: RequestContext = info.context
        ctx.fields.append(info.field_name)
        try:
            for name, value in args.items():
                check_text(plain(value), name)
            result = await resolver(root, info, **args)
            return result if type(result) is Completed else Compiled(result)
        except Exception as exc:
            error = api_error(exc)
            if isinstance(error, Forbidden):
                ctx.denied = True
            if error is None or error is exc:
                raise
            raise error from exc

    wrapper.__name__ = getattr(resolver, "__name__", "resolver")
    return wrapper
