"""Completing compiled root-field results straight into response data, without graphql-core's per-field machinery.

A root field read by a plan (api/graphql/queries.py) already returns its whole subtree as dicts keyed by response key,
so every nested field's resolver only reads `source[key]` (`by_response_key`). graphql-core still builds a
resolve-info object, coerces (empty) arguments, checks awaitables and tracks a path for each of the hundreds of values
of such a response; that dominated the cost of a request.

`CompletedExecutionContext` keeps graphql-core for everything else (parsing, validation, variable coercion, root field
execution, errors, mutations) and only changes how a root field's `Compiled` result is completed: it walks the
selection set with graphql-core's own (memoised) field collection, coerces every leaf with the schema's own scalar
serialisers and resolves abstract types by `__typename` with `resolve_twin_type`'s rule. Anything this
walk does not cover — a null for a non-null field, a value a scalar refuses, a field with another resolver, an
unknown runtime type, field middleware — makes it give up, and graphql-core completes the same value the normal way,
so the response (errors included) is the one it would have produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLID,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLString,
    GraphQLUnionType,
)
from graphql.pyutils import Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


def by_response_key(source: Any, info: Any, **_: Any) -> Any:
    """Default resolver of every non-root field: read results are dicts keyed by response key (alias or field name)."""
    if isinstance(source, Mapping):
        return source.get(info.path.key)
    return getattr(source, info.field_name, None)


def resolve_twin_type(value: Any, info: Any, abstract_type: Any) -> str | None:
    """The concrete GraphQL type of a shaped twin (its `__typename` key, set when it was shaped)."""
    return value.get("__typename") if isinstance(value, Mapping) else None


class Compiled:
    """A root field's result whose nested values are all keyed by response key (completed by the fast walk)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Completed:
    """A root field's result that is already the response data (api/graphql/shaping.py's final shaping): its leaves
    are coerced by the schema's scalars and it holds exactly the selected keys, so it is returned as it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _GiveUp(Exception):
    """The fast walk met something only graphql-core's completion handles exactly."""


_TEXT = (GraphQLString, GraphQLID)
_NULLABLE, _REQUIRED = "nullable", "required"
_LEAVES = (GraphQLScalarType, GraphQLEnumType)
_ABSTRACT = (GraphQLInterfaceType, GraphQLUnionType)


class CompletedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core execution whose `complete_value` turns a `Compiled` root result into response data directly."""

    def complete_value(
        self, return_type: Any, field_details_list: Any, info: Any, path: Any, result: Any, position_context: Any
    ) -> Any:
        """Complete `result`: a `Completed` one is the data already, a `Compiled` one is completed by the fast walk,
        falling back to graphql-core's completion."""
        if type(result) is Completed:
            return result.value
        if type(result) is Compiled:
            value = result.value
            if not (self.middleware_manager and self.middleware_manager.middlewares):
                try:
                    return self._walk(return_type, field_details_list, value, {})
                except _GiveUp:
                    result = value  # a shape the fast walk does not cover: graphql-core completes it below
                    return super().complete_value(return_type, field_details_list, info, path, result, position_context)
            result = value
        return super().complete_value(return_type, field_details_list, info, path, result, position_context)

    def _walk(self, type_: Any, details: Any, value: Any, plans: dict[Any, Any]) -> Any:
        kind = type(type_)
        if kind is GraphQLNonNull:
            completed = self._walk(type_.of_type, details, value, plans)
            if completed is None:
                raise _GiveUp
            return completed
        if value is None:
            return None
        if kind is GraphQLList:
            if not isinstance(value, (list, tuple)):
                raise _GiveUp
            item_type = type_.of_type
            return [self._walk(item_type, details, item, plans) for item in value]
        if kind is GraphQLScalarType or kind is GraphQLEnumType or isinstance(type_, _LEAVES):
            try:
                coerced = type_.coerce_output_value(value)
            except Exception:
                raise _GiveUp from None
            if coerced is None or coerced is Undefined:
                raise _GiveUp
            return coerced
        if not isinstance(value, Mapping):
            raise _GiveUp
        if isinstance(type_, _ABSTRACT):
            if type_.resolve_type is not resolve_twin_type:
                raise _GiveUp
            runtime = self.schema.get_type(value.get("__typename") or "")
            if not isinstance(runtime, GraphQLObjectType) or not self.schema.is_sub_type(type_, runtime):
                raise _GiveUp
            type_ = runtime
        elif not isinstance(type_, GraphQLObjectType):
            raise _GiveUp
        plan = plans.get((type_, id(details)))
        if plan is None:
            plan = self._plan(type_, details)
            plans[(type_, id(details))] = plan
        out: dict[str, Any] = {}
        for key, field_type, sub_details, text in plan:
            item = value.get(key)
            if text and (type(item) is str or (item is None and text is _NULLABLE)):
                out[key] = item  # String/ID output coercion returns a str unchanged
            elif field_type is None:
                out[key] = type_.name
            else:
                out[key] = self._walk(field_type, sub_details, item, plans)
        return out

    def _plan(self, type_: GraphQLObjectType, details: Any) -> list[tuple[str, Any, Any, Any]]:
        """Per field selected on `type_`: response key, field type (None: __typename), field details, text kind."""
        if type_.is_type_of is not None:
            raise _GiveUp
        grouped, new_defer_usages, forbidden = self.collect_subfields(type_, details)
        if new_defer_usages or forbidden:
            raise _GiveUp
        plan: list[tuple[str, Any, Any, Any]] = []
        for key, sub_details in grouped.items():
            name = sub_details[0].node.name.value
            if name == "__typename":
                plan.append((key, None, sub_details, None))
                continue
            field_def = type_.fields.get(name)
            if field_def is None or field_def.resolve is not by_response_key:
                raise _GiveUp
            field_type = field_def.type
            text = None
            if field_type in _TEXT:
                text = _NULLABLE
            elif type(field_type) is GraphQLNonNull and field_type.of_type in _TEXT:
                text = _REQUIRED
            plan.append((key, field_type, sub_details, text))
        return plan
