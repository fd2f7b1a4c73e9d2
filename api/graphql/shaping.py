"""Shaping a plan's rows into the response: objects keyed by response key, twins masked by the policy, pages with
cursors. The masks are the policy's (`Policy.mask`, `Policy.mask_value`); which fields were masked goes into the
response's `extensions.masked`."""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

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


class Shaper:
    """Shapes the rows of one root field for one request, and counts the twins it returned."""

    def __init__(self, ctx: RequestContext, schema: SchemaPlan) -> None:
        self.ctx = ctx
        self.schema = schema
        self.ontology = schema.ontology
        self.seen: set[str] = set()

    def node(self, row: NodeRow | None, shape: NodeShape) -> dict[str, Any] | None:
        """The response object of one returned twin, masked by the policy (None for a class the schema lacks)."""
        if row is None:
            return None
        cls = row.cls
        type_name = self.schema.object_type(cls) if isinstance(cls, str) else None
        items = shape.get(type_name) if type_name else None
        if items is None:
            return None
        uid = row.uid
        self.seen.add(uid)
        labels = self.ontology.labels(cls)
        props = {item[1].prop.name: row.values.get(item[1].prop.name) for _, item in items if item[0] == "prop"}
        masked: Mapping[str, str] = {}
        if props and MASK_PLANS.may_mask(self.ctx.policy, self.ctx.subject, cls, labels, props):
            view = self.ctx.policy.mask(self.ctx.subject, TwinRecord(uid, cls, labels, props))
            if view.masked:
                masked = view.masked
                self.ctx.note_masked(cls, view.masked)
                props = view.properties
        out: dict[str, Any] = {"__typename": type_name}
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
                out[key] = value
            else:
                _, conn, page, conn_shape = item
                found = row.connections.get(conn)
                out[key] = self.connection(
                    found.items if found else [], found.total if found else None, page, conn_shape
                )
        return out

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
                    "hasNextPage": len(items) > page.limit,
                    "hasPreviousPage": page.offset > 0,
                    "startCursor": encode_cursor(page.offset) if rows else None,
                    "endCursor": encode_cursor(page.offset + len(rows) - 1) if rows else None,
                }
                out[key] = {k: values.get(name) for k, name in payload}
            elif kind == "nodes":
                out[key] = [n for n in (self.node(_node(r), payload) for r in rows) if n is not None]
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
                        else:
                            prop, mode, rel_type = edge_payload
                            value = r.edge.get(prop.prop.name) if isinstance(r, EdgeRow) else None
                            if mode != "show" and value is not None:
                                self.ctx.note_masked(rel_type, {prop.prop.name: mode})
                                value = self.ctx.policy.mask_value(value, mode)
                            edge[edge_key] = value
                    else:
                        edges.append(edge)
                out[key] = edges
        return out

    def finish(self) -> None:
        """Count the twins this field returned into the request."""
        self.ctx.rows += len(self.seen)


def _node(item: EdgeRow | NodeRow) -> NodeRow:
    return item.node if isinstance(item, EdgeRow) else item
