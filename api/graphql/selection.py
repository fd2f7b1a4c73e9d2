"""Reading a GraphQL operation: selection sets per concrete type (fragments, @skip/@include), arguments as plain
values, and the paging arguments every list field shares (`first`, opaque `after` cursors)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
    is_abstract_type,
    is_object_type,
)
from graphql.execution.values import (
    VariableValues,
    get_argument_values,
    get_directive_values,
)

from api.errors import BadUserInput
from ontology.errors import quoted

PAGE_MAX = 1000
CURSOR_MAX = 2**31  # offsets this API could issue; larger ones would overflow the graph's SKIP arithmetic
_CURSOR_PREFIX = "twin-cursor:"


def list_limit(first: Any, default: int) -> int:
    """The `first` of a plain list field (search, history, lineage, audit, scenarios): 1 to PAGE_MAX, else `default`."""
    limit = default if first is None else first
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= PAGE_MAX:
        raise BadUserInput(f"`first` must be between 1 and {PAGE_MAX}, got {quoted(limit)}")
    return limit


def encode_cursor(offset: int) -> str:
    """The opaque cursor of the item at `offset`."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The offset a cursor stands for; BadUserInput when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        offset = int(text[len(_CURSOR_PREFIX) :])
        if not 0 <= offset < CURSOR_MAX:
            raise ValueError(text)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput(f"`after` cursor {quoted(cursor)} is not a cursor this API issued") from None
    return offset


def plain(value: Any) -> Any:
    """Argument values as plain dicts, lists and scalars (Strawberry inputs and enums unwrapped, UNSET dropped)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if not _unset(v)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not _unset(getattr(value, f.name))
        }
    return value


def _unset(value: Any) -> bool:
    return type(value).__name__ == "UnsetType"


class Selection:
    """Reads the operation's selection sets: fields per concrete type (fragments, @skip/@include) and arguments."""

    def __init__(self, info: Any) -> None:
        self.schema = info.schema
        self.fragments = info.fragments
        # Strawberry hands resolvers the coerced variables as a plain dict; graphql-core's argument and directive
        # coercion wants its VariableValues (the sources only matter for fragment variables, which are not enabled).
        variables = info.variable_values
        self.variables = (
            variables
            if isinstance(variables, VariableValues)
            else VariableValues(sources={}, coerced=dict(variables or {}))
        )
        self._untyped: dict[tuple[int, ...], dict[str, list[FieldNode]]] = {}

    def fields(self, type_: GraphQLObjectType, nodes: Sequence[FieldNode]) -> dict[str, list[FieldNode]]:
        """Response key -> field nodes selected under `nodes` for an object of `type_` (do not modify it).

        Without fragments the answer is the same for every type, so it is worked out once per selection.
        """
        key = tuple(map(id, nodes))
        cached = self._untyped.get(key)
        if cached is not None:
            return cached
        result: dict[str, list[FieldNode]] = {}
        for node in nodes:
            if node.selection_set is not None:
                self._collect(type_, node.selection_set, result, set())
        if all(
            isinstance(sel, FieldNode)
            for node in nodes
            if node.selection_set is not None
            for sel in node.selection_set.selections
        ):
            self._untyped[key] = result
        return result

    def shaped(self, type_: Any, nodes: Sequence[FieldNode], values: dict[str, Any]) -> dict[str, Any]:
        """`values` (keyed by field name) keyed by response key at every level of object types, as the completed
        result expects; scalar values (JSON included) are left as they are."""
        named = get_named_type(type_)
        result: dict[str, Any] = {}
        for key, sub in self.fields(named, nodes).items():
            name = sub[0].name.value
            value = values.get(name)
            field_type = get_named_type(named.fields[name].type) if name in named.fields else None
            if isinstance(field_type, GraphQLObjectType):
                if isinstance(value, dict):
                    value = self.shaped(field_type, sub, value)
                elif isinstance(value, list):
                    value = [self.shaped(field_type, sub, item) if isinstance(item, dict) else item for item in value]
            result[key] = value
        return result

    def _collect(
        self,
        type_: GraphQLObjectType,
        selection_set: SelectionSetNode,
        result: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                result.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._matches(selection.type_condition, type_):
                    self._collect(type_, selection.selection_set, result, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if self._matches(fragment.type_condition, type_):
                    self._collect(type_, fragment.selection_set, result, visited)

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip.get("if"):
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and not include.get("if"))

    def _matches(self, condition: Any, type_: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        wanted = self.schema.get_type(condition.name.value)
        if wanted is type_:
            return True
        return bool(wanted is not None and is_abstract_type(wanted) and self.schema.is_sub_type(wanted, type_))

    def args(self, parent: GraphQLObjectType, node: FieldNode) -> dict[str, Any]:
        """The coerced arguments of `node` as plain values."""
        return plain(get_argument_values(parent.fields[node.name.value], node, self.variables))

    def possible(self, type_: Any) -> list[GraphQLObjectType]:
        """The object types a value of `type_` can have."""
        named = get_named_type(type_)
        if is_object_type(named):
            return [named]
        return list(self.schema.get_possible_types(named))

    def flat(self, type_: Any, nodes: Sequence[FieldNode], values: Mapping[str, Any]) -> dict[str, Any]:
        """A result object of a plain type: each selected response key gets the value of its field."""
        named = get_named_type(type_)
        return {key: values.get(sub[0].name.value) for key, sub in self.fields(named, nodes).items()}
