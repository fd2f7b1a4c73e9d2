"""Limits and error masking of the GraphQL endpoint: depth, tokens, aliases, cached parsing, masked internal errors."""

from __future__ import annotations

import logging
from collections.abc import Callable

from graphql import GraphQLError
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
    rules = [*QueryDepthLimiter(max_depth=max_depth).validation_rules,
             *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules]
    return [
        lambda: ParserCache(maxsize=cache_size),
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=cache_size),
        lambda: MaskErrors(should_mask_error=should_mask, error_message=INTERNAL_ERROR),
    ]
