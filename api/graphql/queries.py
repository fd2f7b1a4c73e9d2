"""The root query fields over the twin graph: each translates its selection into one read plan, has the store run it
with the caller's scope (one round trip; impact one per level plus one), and shapes the rows into the response."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from graphql import get_named_type

from api.context import RequestContext
from api.errors import BadUserInput
from api.graphql.completion import Completed
from api.graphql.governed import governed
from api.graphql.naming import SchemaPlan
from api.graphql.planning import (
    DEFAULT_PAGE,
    CompiledPlans,
    ConnectionShape,
    NodeShape,
    PageArgs,
    Planner,
    canonical_value,
    require_readable,
)
from api.graphql.private_aggregate import PrivateRequest, private_aggregate
from api.graphql.selection import PAGE_MAX, list_limit, plain
from api.graphql.shaping import NotFinal, Shaper
from governance.errors import PolicyDenied
from graph.plan import (
    AggregateRead,
    ImpactRead,
    ListRead,
    NodeRow,
    PathRead,
    Projection,
    SearchRead,
    TwinRead,
    TwinsRead,
)
from graph.reads import TwinReader
from ontology.errors import quoted

T = TypeVar("T")
SEARCH_DEFAULT = 20


async def run_read(ctx: RequestContext, work: Callable[[], T], round_trips: int = 1) -> T:
    """Run a blocking graph read in a worker thread, within the caller's share of concurrent reads and the request's
    time limit."""
    gate = ctx.services.reads if ctx.services is not None else None
    ctx.round_trips += round_trips
    if gate is None:
        return await anyio.to_thread.run_sync(work)
    return await gate.run(ctx.subject.sub, work, ctx.timeout_ms)


async def reader_at(ctx: RequestContext, as_of: Any, valid_at: Any = None) -> TwinReader:
    """The store to read from: the live graph, or with `asOf` the graph as it was then, with `validAt` as valid then
    by the sources' effective dates (both need history.read: past states are history), built or found in the cache
    in a worker thread."""
    if as_of is None and valid_at is None:
        return ctx.store
    ctx.policy.require(ctx.subject, "operation", "history.read")
    when = None if as_of is None else as_of_time(plain(as_of), "asOf")
    valid = None if valid_at is None else as_of_time(plain(valid_at), "validAt")
    return await anyio.to_thread.run_sync(lambda: ctx.store.at(when, valid))


def as_of_time(value: Any, name: str) -> dt.datetime:
    """A DateTime argument as a datetime (naive means UTC)."""
    if isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise BadUserInput(f"argument `{name}` is not an ISO 8601 date and time: {quoted(str(value))}") from None


def shaped(ctx: RequestContext, schema: SchemaPlan, shape: Callable[[Shaper], Any]) -> Any:
    """The response data `shape` makes of a root field's rows (`Completed`); shaped for graphql-core's completion
    when a value needs it (NotFinal)."""
    shaper = Shaper(ctx, schema, final=True)
    try:
        result: Any = Completed(shape(shaper))
    except NotFinal:
        shaper = Shaper(ctx, schema)
        result = shape(shaper)
    shaper.finish()
    return result


class RootQueries:
    """Resolvers of the root fields read by plans."""

    def __init__(self, schema: SchemaPlan, plans: CompiledPlans | None = None) -> None:
        self.schema = schema
        self.plans = plans or CompiledPlans()

    @property
    def resolvers(self) -> dict[str, Callable[..., Any]]:
        """Root field name -> resolver."""
        result = {name: self.list_field(cls) for name, cls in self.schema.root_lists.items()}
        result.update(
            twin=governed(self.twin),
            search=governed(self.search),
            impact=governed(self.impact),
            path=governed(self.path),
            aggregate=governed(self.aggregate),
        )
        return result

    def list_field(self, cls: str) -> Callable[..., Any]:
        """The resolver of the root connection over `cls`."""

        async def resolve(
            root: Any,
            info: Any,
            asOf: Any = None,  # noqa: N803
            validAt: Any = None,  # noqa: N803
            includeRetired: Any = None,  # noqa: N803
            **args: Any,
        ) -> Any:
            ctx: RequestContext = info.context
            scope = ctx.scope.including_retired() if includeRetired else ctx.scope
            store = await reader_at(ctx, asOf, validAt)
            require_readable(ctx, cls)
            arguments = plain(args)

            def compile_() -> tuple[ListRead, PageArgs, ConnectionShape]:
                planner = Planner(info, ctx, self.schema)
                page = planner.page_args(cls, arguments, DEFAULT_PAGE)
                planner.estimated = page.limit
                node = Projection()
                shape = planner.connection(
                    get_named_type(info.return_type), info.field_nodes, None, node, max(page.limit, 1)
                )
                total = any(kind == "totalCount" for _, kind, _ in shape)
                return ListRead(cls, node, page.window, page.where, page.order, total=total), page, shape

            plan, page, shape = self.plans.compiled(info, ctx, (cls, canonical_value(arguments)), compile_)
            rows = await run_read(ctx, lambda: store.read_list(plan, scope, ctx.timeout_ms))
            return shaped(ctx, self.schema, lambda shaper: shaper.connection(rows.items, rows.total, page, shape))

        resolve.__name__ = f"resolve_{cls}"
        return governed(resolve)

    async def twin(
        self, root: Any, info: Any, uid: str, asOf: Any = None, validAt: Any = None, includeRetired: Any = None
    ) -> Any:  # noqa: N803
        """One twin by uid (null when absent, outside the caller's scope, or retired unless `includeRetired`)."""
        ctx: RequestContext = info.context
        scope = ctx.scope.including_retired() if includeRetired else ctx.scope
        store = await reader_at(ctx, asOf, validAt)

        def compile_() -> tuple[Projection, NodeShape]:
            node = Projection()
            return node, Planner(info, ctx, self.schema).node(info.return_type, info.field_nodes, node, 1)

        node, shape = self.plans.compiled(info, ctx, "twin", compile_)
        plan = TwinRead(uid, node)
        row = await run_read(ctx, lambda: store.read_twin(plan, scope, ctx.timeout_ms))
        return shaped(ctx, self.schema, lambda shaper: shaper.node(row, shape))

    async def search(
        self,
        root: Any,
        info: Any,
        text: str,
        classes: Any = None,
        first: Any = None,
        asOf: Any = None,  # noqa: N803
        validAt: Any = None,  # noqa: N803
    ) -> Any:
        """Full-text hits; a twin matched only through a field the caller may not read is not returned."""
        ctx: RequestContext = info.context
        store = await reader_at(ctx, asOf, validAt)
        planner, shaper = Planner(info, ctx, self.schema), Shaper(ctx, self.schema)
        limit = list_limit(first, SEARCH_DEFAULT)
        hit_type = get_named_type(info.return_type)
        node = Projection()
        twin_shape: NodeShape = {}
        hit_shape = planner.sel.fields(hit_type, info.field_nodes)
        for subs in hit_shape.values():
            if subs[0].name.value == "twin":
                twin_shape = planner.node(hit_type.fields["twin"].type, subs, node, limit * 3)
        plan = SearchRead(text, node, limit, tuple(self.schema.ontology.get(n).name for n in plain(classes or [])))
        rows = await run_read(ctx, lambda: store.read_search(plan, ctx.scope, ctx.timeout_ms))
        hits = []
        for row in rows:
            twin = shaper.node(row.node, twin_shape) if twin_shape else {"__typename": None}
            if twin is None:
                continue
            hits.append(
                {key: (row.score if subs[0].name.value == "score" else twin) for key, subs in hit_shape.items()}
            )
        shaper.finish()
        return hits

    async def impact(
        self, root: Any, info: Any, uid: str, maxDepth: Any = None, asOf: Any = None, validAt: Any = None
    ) -> Any:  # noqa: N803
        """What depends on `uid`, level by level (scope applied at every step), then one projection read."""
        ctx: RequestContext = info.context
        planner, shaper = Planner(info, ctx, self.schema), Shaper(ctx, self.schema)
        store = await reader_at(ctx, asOf, validAt)
        before = store.backend.queries
        hits = await run_read(
            ctx, lambda: store.read_impact(ImpactRead(uid, 3 if maxDepth is None else maxDepth), ctx.scope), 0
        )
        ctx.round_trips += store.backend.queries - before
        hit_type = get_named_type(info.return_type)
        hit_fields = planner.sel.fields(hit_type, info.field_nodes)
        node = Projection()
        twin_shape: NodeShape = {}
        for subs in hit_fields.values():
            if subs[0].name.value == "twin":
                twin_shape = planner.node(hit_type.fields["twin"].type, subs, node, max(len(hits), 1))
        twins: dict[str, NodeRow] = {}
        if hits and twin_shape:
            plan = TwinsRead(tuple(h.twin.uid for h in hits), node)
            twins = await run_read(ctx, lambda: store.read_twins(plan, ctx.scope, ctx.timeout_ms))
        result = []
        for hit in hits:
            twin = shaper.node(twins.get(hit.twin.uid), twin_shape) if twin_shape else None
            if twin_shape and twin is None:
                continue
            values = {"depth": hit.depth, "path": list(hit.path), "via": list(hit.via), "twin": twin}
            result.append({key: values.get(subs[0].name.value) for key, subs in hit_fields.items()})
        shaper.seen.update(h.twin.uid for h in hits)
        shaper.finish()
        return result

    async def path(
        self,
        root: Any,
        info: Any,
        source: str,
        target: str,
        types: Any = None,
        maxDepth: Any = None,  # noqa: N803
        directed: Any = None,
        asOf: Any = None,  # noqa: N803
        validAt: Any = None,  # noqa: N803
    ) -> Any:
        """One shortest path; null when none exists or it passes a twin the caller may not see."""
        ctx: RequestContext = info.context
        store = await reader_at(ctx, asOf, validAt)
        planner, shaper = Planner(info, ctx, self.schema), Shaper(ctx, self.schema)
        depth = 6 if maxDepth is None else maxDepth
        result_type = get_named_type(info.return_type)
        fields = planner.sel.fields(result_type, info.field_nodes)
        node = Projection()
        node_shape: NodeShape = {}
        for subs in fields.values():
            if subs[0].name.value == "nodes":
                node_shape = planner.node(result_type.fields["nodes"].type, subs, node, depth + 1)
        plan = PathRead(source, target, node, tuple(plain(types or [])), depth, directed is not False)
        found = await run_read(ctx, lambda: store.read_path(plan, ctx.scope, ctx.timeout_ms))
        if found is None:
            return None
        nodes = [shaper.node(row, node_shape) for row in found.nodes] if node_shape else []
        if node_shape and any(n is None for n in nodes):
            return None
        shaper.seen.update(row.uid for row in found.nodes)
        shaper.finish()
        values = {"length": len(found.types), "types": list(found.types), "nodes": nodes}
        return {key: values.get(subs[0].name.value) for key, subs in fields.items()}

    async def aggregate(
        self,
        root: Any,
        info: Any,
        className: Any,
        metrics: Any = None,  # noqa: N803
        groupBy: Any = None,
        where: Any = None,
        epsilon: float | None = None,
        asOf: Any = None,  # noqa: N803
        validAt: Any = None,  # noqa: N803
    ) -> Any:  # noqa: N803
        """Grouped metrics over a class; hidden fields may be neither grouped, aggregated nor filtered on. Over a
        sensitive class the policy decides: exact, differentially private (api/graphql/private_aggregate.py), none."""
        ctx: RequestContext = info.context
        store = await reader_at(ctx, asOf, validAt)
        planner = Planner(info, ctx, self.schema)
        cls = plain(className)
        mode = ctx.policy.aggregate_mode(ctx.subject, cls)
        if mode.scope is None:  # else a class the caller may only aggregate (privately), not read
            planner.require_readable(cls)
        if mode.mode == "none":
            raise PolicyDenied(mode.reason)
        if mode.mode == "private":
            assert mode.budget is not None
            return await private_aggregate(
                PrivateRequest(
                    ctx, planner, info, self.schema.classes[cls], cls, mode.budget, mode.scope or ctx.scope, store
                ),
                plain(metrics) or [{"fn": "count"}],
                list(plain(groupBy or [])),
                where,
                epsilon,
            )
        if epsilon is not None:
            raise BadUserInput(f"aggregates over {cls} are exact for this caller; epsilon applies only to noisy ones")
        class_plan = self.schema.classes[cls]
        names = list(plain(groupBy or []))
        group_by = tuple(planner.group_field(class_plan, name, "grouped by").prop.name for name in names)
        wanted = plain(metrics) or [{"fn": "count"}]
        measured: list[tuple[Any, str | None]] = []
        described: list[tuple[str, Any, Any]] = []
        for metric in wanted:
            fn, name = metric.get("fn"), metric.get("field")
            if name is None:
                if fn != "count":
                    raise BadUserInput(f"aggregate {fn.upper()} needs a field")
                measured.append((fn, None))
            else:
                prop = class_plan.properties.get(name)
                if prop is None or not prop.filterable:
                    raise BadUserInput(f"{cls} has no field {quoted(name)} to aggregate")
                if fn in ("sum", "avg") and prop.scalar not in ("Int", "Float"):
                    raise BadUserInput(f"{fn.upper()} needs a numeric field; {name!r} is {prop.scalar}")
                measured.append((fn, prop.prop.name))
            described.append((f"{fn}_{name}" if name else fn, fn, name))
        planner.check_filter_shape(where)
        plan = AggregateRead(
            cls, tuple(measured), group_by, planner.where(cls, where) if where else None, limit=PAGE_MAX * 10
        )
        rows = await run_read(ctx, lambda: store.read_aggregate(plan, ctx.scope, ctx.timeout_ms))
        row_type = get_named_type(info.return_type)
        metric_type = get_named_type(row_type.fields["metrics"].type)
        selected = planner.sel.fields(row_type, info.field_nodes)
        result = []
        for row in rows:
            group = {name: row.group.get(prop) for name, prop in zip(names, group_by, strict=True)}
            metric_values = []
            for (label, fn, name), value in zip(described, row.metrics, strict=True):
                number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                metric_values.append({"name": label, "fn": fn, "field": name, "value": number})
            out: dict[str, Any] = {}
            for key, subs in selected.items():
                if subs[0].name.value == "metrics":
                    out[key] = [planner.sel.flat(metric_type, subs, m) for m in metric_values]
                else:
                    out[key] = {"group": group}.get(subs[0].name.value)
            result.append(out)
        ctx.rows += len(rows)
        return result
