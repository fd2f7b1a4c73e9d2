"""Shaping a plan's rows into the response: objects keyed by response key, twins masked by the policy, pages with
cursors. The masks are the policy's (`Policy.mask`, `Policy.mask_value`); which fields were masked goes into the
response's `extensions.masked`."""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from graphql import GraphQLID, GraphQLString
from graphql.pyutils import Undefined

from api.context import RequestContext
from api.graphql.naming import PropertyField, SchemaPlan
from api.graphql.planning import ConnectionShape, NodeShape, PageArgs
from api.graphql.scalars import STRING_LIKE
from api.graphql.selection import encode_cursor
from governance.identity import Subject
from governance.policy import Policy
from graph.model import TwinRecord
from graph.plan import EdgeRow, NodeRow


class MaskPlans:
    """Whether the policy masks any of a set of properties of a class for a caller's roles, worked out once.

    `Policy.mask` decides per role, class and field, never per value, so when it masks none of the fields a
    response selects for a class, every twin of that class is returned as stored and the call per twin is skipped.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._plans: weakref.WeakKeyDictionary[Policy, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()

    def may_mask(
        self, policy: Policy, subject: Subject, cls: str, labels: tuple[str, ...], props: Mapping[str, Any]
    ) -> bool:
        """False when `policy` shows every one of `props` of a `cls` twin to `subject`."""
        plans = self._plans.setdefault(policy, {})
        key = (policy.version, frozenset(subject.roles), subject.org_unit, cls, frozenset(props))
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= self.size:
                plans.clear()
            probe = policy.mask(subject, TwinRecord("", cls, labels, dict.fromkeys(props, "")))
            plan = plans[key] = bool(probe.masked) or probe.properties.keys() != props.keys()
        return plan


MASK_PLANS = MaskPlans()
_Typed = tuple[str, list[tuple[str, tuple[Any, ...]]], tuple[str, ...], tuple[str, ...], bool]
_UNKNOWN: Any = object()
_TEXT = (GraphQLString, GraphQLID)


class NotFinal(Exception):
    """A value the final shaping does not complete exactly as graphql-core would (one its scalar refuses, a field this
    API holds no value for): the field is shaped again for graphql-core's completion."""


class Shaper:
    """Shapes the rows of one root field for one request, and counts the twins it returned.

    With `final`, the result is the response data itself (leaves coerced by the schema's scalars, `__typename` where
    selected), handed back as `Completed`; otherwise it is completed by api/graphql/completion.py. Final shaping
    raises NotFinal for anything it cannot complete exactly; the masks noted so far reach the request only at
    `finish`, so the field can be shaped again.
    """

    def __init__(self, ctx: RequestContext, schema: SchemaPlan, *, final: bool = False) -> None:
        self.ctx = ctx
        self.schema = schema
        self.ontology = schema.ontology
        self.final = final
        self.seen: set[str] = set()
        self.masked: Counter[tuple[str, str, str]] = Counter()
        # (class, position shape) -> what shaping a twin of that class there needs, worked out once per request
        self._typed: dict[tuple[Any, int], _Typed | None] = {}

    def node(self, row: NodeRow | None, shape: NodeShape) -> dict[str, Any] | None:
        """The response object of one returned twin, masked by the policy (None for a class the schema lacks)."""
        if row is None:
            return None
        cls = row.cls
        typed = self._typed.get((cls, id(shape)), _UNKNOWN)
        if typed is _UNKNOWN:
            typed = self._typed[(cls, id(shape))] = self._typed_shape(cls, shape)
        if typed is None:
            return None
        type_name, items, labels, names, may_mask = typed
        uid = row.uid
        self.seen.add(uid)
        values = row.values
        props = {name: values.get(name) for name in names}
        masked: Mapping[str, str] = {}
        if may_mask:
            view = self.ctx.policy.mask(self.ctx.subject, TwinRecord(uid, cls, labels, props))
            if view.masked:
                masked = view.masked
                self._note(cls, view.masked)
                props = view.properties
        final = self.final
        if final and uid is None:
            raise NotFinal("a twin without uid")
        out: dict[str, Any] = {} if final else {"__typename": type_name}
        for key, item in items:
            kind = item[0]
            if kind == "uid":
                out[key] = uid
            elif kind == "className":
                out[key] = cls
            elif kind == "labels":
                out[key] = list(labels)
            elif kind == "prop":
                prop: PropertyField = item[1]
                value = props.get(prop.prop.name)
                if prop.prop.name in masked and not (
                    prop.scalar in STRING_LIKE and not prop.is_list and (value is None or isinstance(value, str))
                ):
                    value = None  # a masked value that no longer fits the field's type is left out
                if final and value is not None:
                    value = _leaf(item[2], value, prop.is_list)
                out[key] = value
            elif kind == "conn":
                _, conn, page, conn_shape = item
                found = row.connections.get(conn)
                out[key] = self.connection(
                    found.items if found else [], found.total if found else None, page, conn_shape
                )
            elif kind == "typename":
                out[key] = type_name
            elif final:
                raise NotFinal(f"field {key!r}")
        return out

    def _typed_shape(self, cls: Any, shape: NodeShape) -> _Typed | None:
        """The type name, items, labels and property names of a `cls` twin at a position, and whether the policy may
        mask any of those properties for this caller; None when the position has no type for the class."""
        type_name = self.schema.object_type(cls) if isinstance(cls, str) else None
        items = shape.get(type_name) if type_name else None
        if type_name is None or items is None:
            return None
        labels = self.ontology.labels(cls)
        names = tuple(dict.fromkeys(item[1].prop.name for _, item in items if item[0] == "prop"))
        probe = dict.fromkeys(names)
        may_mask = bool(names) and MASK_PLANS.may_mask(self.ctx.policy, self.ctx.subject, cls, labels, probe)
        return type_name, items, labels, names, may_mask

    def connection(
        self, items: Sequence[EdgeRow | NodeRow], total: int | None, page: PageArgs, shape: ConnectionShape
    ) -> dict[str, Any]:
        """The response object of a connection page (`items` holds one extra row when there is a next page)."""
        rows = list(items[: page.limit])
        out: dict[str, Any] = {}
        for key, kind, payload in shape:
            if kind == "totalCount":
                out[key] = int(total or 0)
            elif kind == "pageInfo":
                values = {
                    "__typename": "PageInfo",
                    "hasNextPage": len(items) > page.limit,
                    "hasPreviousPage": page.offset > 0,
                    "startCursor": encode_cursor(page.offset) if rows else None,
                    "endCursor": encode_cursor(page.offset + len(rows) - 1) if rows else None,
                }
                out[key] = {k: values.get(name) for k, name in payload}
            elif kind == "nodes":
                out[key] = [n for n in (self.node(_node(r), payload) for r in rows) if n is not None]
            elif kind == "typename":
                out[key] = payload
            else:
                edges = []
                for i, r in enumerate(rows):
                    edge: dict[str, Any] = {}
                    for edge_key, edge_kind, edge_payload in payload:
                        if edge_kind == "cursor":
                            edge[edge_key] = encode_cursor(page.offset + i)
                        elif edge_kind == "node":
                            edge[edge_key] = self.node(_node(r), edge_payload)
                            if edge[edge_key] is None:
                                break
                        elif edge_kind == "typename":
                            edge[edge_key] = edge_payload
                        else:
                            prop, mode, rel_type, leaf = edge_payload
                            value = r.edge.get(prop.prop.name) if isinstance(r, EdgeRow) else None
                            if mode != "show" and value is not None:
                                self._note(rel_type, {prop.prop.name: mode})
                                value = self.ctx.policy.mask_value(value, mode)
                            if self.final and value is not None:
                                value = _leaf(leaf, value, prop.is_list)
                            edge[edge_key] = value
                    else:
                        edges.append(edge)
                out[key] = edges
        return out

    def _note(self, cls: str, masked: Mapping[str, str]) -> None:
        for name, mode in masked.items():
            self.masked[(cls, name, mode)] += 1

    def finish(self) -> None:
        """Count the twins this field returned, and the values it masked, into the request."""
        self.ctx.rows += len(self.seen)
        self.ctx.masked.update(self.masked)


def _leaf(leaf: Any, value: Any, is_list: bool) -> Any:
    """A property value as the field's scalar writes it (text passes as it is); NotFinal when the scalar refuses it."""
    if is_list:
        if not isinstance(value, (list, tuple)):
            raise NotFinal("a list field whose value is not a list")
        return [None if item is None else _leaf(leaf, item, False) for item in value]
    if type(value) is str and leaf in _TEXT:
        return value
    if leaf is None:
        raise NotFinal("a field without a GraphQL type")
    try:
        coerced = leaf.coerce_output_value(value)
    except Exception:
        raise NotFinal("a value the field's scalar refuses") from None
    if coerced is None or coerced is Undefined:
        raise NotFinal("a value the field's scalar writes as nothing")
    return coerced


def _node(item: EdgeRow | NodeRow) -> NodeRow:
    return item.node if isinstance(item, EdgeRow) else item
