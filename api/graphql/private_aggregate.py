"""The `aggregate` root field answered with differential privacy: for a caller whose policy gives it a privacy budget
over a class with personal or confidential properties. The budget is spent before anything is read (a refused
answer spends nothing), the graph computes exact counts and clamped sums under the caller's scope, and
governance/differential_privacy.py adds the noise. A field the caller may not read can be measured (SUM/AVG) when the
role's privacy settings give it clamp bounds — the answer is noisy — but never grouped by or filtered on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import get_named_type

from api.context import RequestContext
from api.errors import BadUserInput
from api.graphql.naming import ClassPlan
from api.graphql.planning import Planner
from api.graphql.selection import PAGE_MAX
from governance.differential_privacy import MIN_EPSILON, ExactGroup, MetricRequest, check_private, release
from governance.policy import PrivacyBudgetRule
from graph.errors import FieldNotReadable
from graph.model import Metric, ReadScope
from graph.plan import AggregateRead
from ontology.errors import quoted


@dataclass(frozen=True)
class PrivateRequest:
    """What a private aggregate needs from the resolver: the request, its planner, the class and the role's budget."""

    ctx: RequestContext
    planner: Planner
    info: Any
    class_plan: ClassPlan
    cls: str
    budget: PrivacyBudgetRule
    scope: ReadScope  # the caller's, or for a class it may only aggregate the policy's aggregate scope
    store: Any  # the graph read: live, or as of a time (graph/as_of.py)


def _mentioned(where: Any) -> set[str]:
    """Every key a where-input names, at any depth."""
    found: set[str] = set()
    pending = [where]
    while pending:
        node = pending.pop()
        if isinstance(node, Mapping):
            found.update(str(k) for k in node)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


async def private_aggregate(
    req: PrivateRequest, wanted: list[dict[str, Any]], names: list[str], where: Any, epsilon: float | None
) -> list[dict[str, Any]]:
    """Noisy metrics per group, the epsilon spent from the role's budget and noted in the response's extensions."""
    from api.graphql.queries import run_read  # the shared read gate; imported here to keep the module graph acyclic

    ctx, planner, budget = req.ctx, req.planner, req.budget
    epsilon = budget.epsilon_per_query if epsilon is None else epsilon
    if not isinstance(epsilon, (int, float)) or not MIN_EPSILON <= epsilon <= budget.epsilon_per_query:
        raise BadUserInput(
            f"`epsilon` must be between {MIN_EPSILON:g} and {budget.epsilon_per_query:g} for role {budget.role}"
        )
    group_by = tuple(planner.group_field(req.class_plan, name, "grouped by").prop.name for name in names)
    requests: list[MetricRequest] = []
    for metric in wanted:
        fn, name = metric.get("fn"), metric.get("field")
        if name is None:
            if fn != "count":
                raise BadUserInput(f"aggregate {str(fn).upper()} needs a field")
            requests.append(MetricRequest("count", None))
            continue
        prop = req.class_plan.properties.get(name)
        if prop is None or not prop.filterable:
            raise BadUserInput(f"{req.cls} has no field {quoted(name)} to aggregate")
        if fn in ("sum", "avg") and prop.scalar not in ("Int", "Float"):
            raise BadUserInput(f"{str(fn).upper()} needs a numeric field; {name!r} is {prop.scalar}")
        requests.append(MetricRequest(str(fn), prop.prop.name, budget.bounds.get(prop.prop.name)))
    relaxed = {r.field for r in requests if r.field is not None and r.bounds is not None} - _mentioned(where)
    hidden = _hidden_fields(ctx, req.scope, req.cls)
    for name in group_by:
        if name in hidden:
            raise FieldNotReadable(f"field {quoted(name)} of {req.cls} may not be grouped by by this caller")
    for r in requests:
        if r.field in hidden and r.field not in relaxed:
            raise FieldNotReadable(f"field {quoted(r.field)} of {req.cls} may not be aggregated by this caller")
    check_private(requests)
    planner.check_filter_shape(where)
    filter_ = planner.where(req.cls, where) if where else None

    # what the graph computes: the twin count per group, then per metric a count, a clamped sum, or both for a mean
    measured: list[tuple[Metric, str | None]] = [("count", None)]
    for r in requests:
        if r.fn == "count":
            measured.append(("count", r.field))
        elif r.fn == "sum":
            measured.append(("sum", r.field))
        else:
            measured += [("sum", r.field), ("count", r.field)]
    clamps = tuple(sorted({(r.field, *r.bounds) for r in requests if r.field is not None and r.bounds is not None}))
    plan = AggregateRead(req.cls, tuple(measured), group_by, filter_, limit=PAGE_MAX * 10, clamps=clamps)
    scope = _measuring_scope(req.scope, relaxed)
    # read first (a refused or failed read spends nothing), then spend; exact rows never leave unless paid for
    rows = await run_read(ctx, lambda: req.store.read_aggregate(plan, scope, ctx.timeout_ms))
    query = f"aggregate {req.cls} {[f'{r.fn}({r.field or ""})' for r in requests]} by {list(names)}"
    state = ctx.services.runtime.privacy_budget.spend(budget, float(epsilon), ctx.subject.sub, query)

    exact: list[ExactGroup] = []
    for row in rows:
        values = list(row.metrics)
        twins, rest, per_metric = int(values[0] or 0), values[1:], []
        for r in requests:
            if r.fn == "avg":
                per_metric.append((rest[0], rest[1]))
                rest = rest[2:]
            else:
                per_metric.append(rest[0])
                rest = rest[1:]
        group = {name: row.group.get(prop) for name, prop in zip(names, group_by, strict=True)}
        exact.append(ExactGroup(group, twins, tuple(per_metric)))
    answer = release(exact, requests, float(epsilon), grouped=bool(group_by))
    ctx.privacy.append(
        {
            "className": req.cls,
            "role": budget.role,
            "epsilon": float(epsilon),
            "remaining": round(state.remaining, 9),
            "period": budget.period,
        }
    )

    row_type = get_named_type(req.info.return_type)
    metric_type = get_named_type(row_type.fields["metrics"].type)
    selected = planner.sel.fields(row_type, req.info.field_nodes)
    result = []
    for released in answer.groups:
        metric_values = []
        for r, noisy in zip(requests, released.metrics, strict=True):
            label = f"{r.fn}_{r.field}" if r.field else r.fn
            note = {"epsilon": noisy.epsilon, "accuracy95": noisy.accuracy95, "mechanism": noisy.mechanism}
            metric_values.append({"name": label, "fn": r.fn, "field": r.field, "value": noisy.value, "privacy": note})
        out: dict[str, Any] = {}
        for key, subs in selected.items():
            if subs[0].name.value == "metrics":
                out[key] = [_metric(planner, metric_type, subs, m) for m in metric_values]
            else:
                out[key] = {"group": released.group}.get(subs[0].name.value)
        result.append(out)
    ctx.rows += len(result)
    return result


def _metric(planner: Planner, metric_type: Any, nodes: Any, values: dict[str, Any]) -> dict[str, Any]:
    """One MetricValue by response key, its `privacy` note too."""
    note_type = metric_type.fields["privacy"].type
    out: dict[str, Any] = {}
    for key, subs in planner.sel.fields(metric_type, nodes).items():
        name = subs[0].name.value
        out[key] = planner.sel.flat(note_type, subs, values[name]) if name == "privacy" else values.get(name)
    return out


def _hidden_fields(ctx: RequestContext, scope: ReadScope, cls: str) -> frozenset[str]:
    """Fields `scope` hides on twins of `cls` or a subclass it may read."""
    if not scope.hidden:
        return frozenset()
    readable = scope.readable_classes
    names = ctx.store.names_under(cls)
    return frozenset().union(
        *(h for name, h in scope.hidden.items() if name in names and (readable is None or name in readable))
    )


def _measuring_scope(scope: ReadScope, names: set[str]) -> ReadScope:
    """`scope` with `names` readable for measuring only: the answer carries noise, never the values."""
    if not names:
        return scope
    hidden = {cls: frozenset(h - names) for cls, h in scope.hidden.items()}
    return dataclasses.replace(scope, hidden=hidden)
