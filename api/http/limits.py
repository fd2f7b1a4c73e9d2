"""Limits and error masking of the GraphQL endpoint: depth, tokens, aliases, cached parsing, masked internal errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, parse, visit
from graphql.language import Visitor
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from api.errors import ApiError, api_error

log = logging.getLogger(__name__)
INTERNAL_ERROR = "internal error: the request could not be completed (it has been logged)"


def should_mask(error: GraphQLError) -> bool:
    """Mask an error unless its message is meant for the caller.

    Errors without a path (syntax, validation, bad variables) and domain errors are shown; anything else raised
    while resolving is logged with its traceback and replaced by a neutral message.
    """
    original = error.original_error
    if original is None or error.path is None:
        return False
    if isinstance(original, ApiError) or api_error(original) is not None:
        return False
    log.error("masked internal error at %s", error.path, exc_info=original)
    return True


def limit_extensions(
    max_depth: int = 15, max_tokens: int = 5000, max_aliases: int = 30, cache_size: int = 512
) -> list[Callable[[], SchemaExtension]]:
    """Factories of the extensions every request runs with.

    The depth and alias limits are validation rules; their rule classes are made once so that the validation cache
    (keyed by document and rules) hits across requests. Strawberry keeps the parse/validation caches global.
    """
    rules = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    return [
        lambda: ParserCache(maxsize=cache_size),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=cache_size),
        lambda: MaskErrors(should_mask_error=should_mask, error_message=INTERNAL_ERROR),
    ]


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_input(query: str, variables: dict[str, Any]) -> str | None:
    """Where a request holds text no store keeps (NUL or a lone surrogate), e.g. "variable `u`"; None if nowhere.

    Such text can match nothing stored and would be cut or refused by the databases, so it is refused up front.
    """
    for path, value in _strings(variables, ()):
        if _UNSTORABLE.search(value):
            return f"variable `{'.'.join(map(str, path))}`"
    if not _UNSTORABLE.search(query) and "\\u" not in query:
        return None
    if _UNSTORABLE.search(query):
        return "the query text"
    try:
        document = parse(query)
    except GraphQLError:
        return None  # the syntax error is reported by the executor
    return "a string in the query" if _literal_unstorable(document) else None


def describe_unstorable(where: str) -> str:
    """The message of a request refused by `unstorable_input`."""
    return f"{where} holds a NUL character or a lone surrogate, which no stored text can contain"


def _strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(str(key), (*path, "<key>"))
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _literal_unstorable(document: DocumentNode) -> bool:
    found = []

    class _Strings(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
            if _UNSTORABLE.search(node.value):
                found.append(node)

    visit(document, _Strings())
    return bool(found)


class _BodyTooLarge(Exception):
    """The request body grew past the limit while it was read."""


class BodyLimit:
    """ASGI middleware: a request body larger than `max_bytes` is refused with 413, whether it declares its length
    (Content-Length) or streams (chunked); nothing past the limit is read."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Pass the request on, counting its body bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = (
            f'{{"errors":[{{"message":"the request body is larger than {self.max_bytes} bytes '
            f'(TWIN_API_MAX_BODY_BYTES)","extensions":{{"code":"PAYLOAD_TOO_LARGE"}}}}]}}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
