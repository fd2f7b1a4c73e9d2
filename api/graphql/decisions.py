"""Decisions over GraphQL: the `alerts`, `proposals` and `automations` queries (filtered, paged, the policy's filter
before the page cut), the mutations that acknowledge, snooze and resolve alerts and approve, reject and override
proposals, the mutations that create, update, enable, disable and delete automations (governance/decisions/
management.py: the policy's `automation.manage`, checked whole, audited, in force at once), and the `decisions`
subscription of new and changed alerts and proposals for roles that may see them, pushed as they are written.

Everything goes through the decisions service (governance/decisions/service.py), which applies the policy — an
alert about a twin the caller may not read is not shown, evidence values are masked by the caller's field modes —
and audits every read and transition. The builder (api/graphql/builder.py) declares the fields from the tables
here; the app binds the resolvers (`QUERY_RESOLVERS`, `MUTATION_RESOLVERS`); the WebSocket route
(api/graphql/subscriptions.py) streams `decisions` with `stream_decisions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import strawberry
from strawberry.scalars import JSON

from api.context import RequestContext
from api.errors import BadUserInput
from api.graphql.governed import governed
from api.graphql.scalars import DateTime
from api.graphql.selection import Selection
from api.graphql.types import PageInfo
from governance.audit import Decision
from governance.decisions.alerts import Alert
from governance.decisions.automations import TRIGGER_KINDS, Automation
from governance.decisions.management import AutomationChanged, AutomationManager
from governance.decisions.paging import Page, decode_position, encode_position
from governance.decisions.proposals import Proposal
from governance.identity import Subject
from ontology.errors import quoted

FALLBACK_SECONDS = 2.0  # a `decisions` subscription wakes on each write's notice (governance/decisions/notices.py);
# it also looks this often, for alerts and proposals another process wrote (`twin decisions approve`, `twin run`)
DEFAULT_PAGE = 50


@strawberry.type(description="An alert an automation raised: open -> acknowledged -> resolved, snoozable.")
class DecisionAlert:
    """An alert as the caller may see it: evidence values masked by the caller's field modes."""

    id: strawberry.ID
    automation: str
    ruleVersion: str
    severity: str
    key: str = strawberry.field(description="The deduplication key: one open alert per key.")
    state: str
    twin: strawberry.ID
    className: str
    message: str
    evidence: JSON = strawberry.field(description="The twins, values and lineage that made the condition true.")
    fired: int
    snoozed: bool
    snoozedUntil: DateTime | None
    createdAt: DateTime
    updatedAt: DateTime
    updatedBy: str


@strawberry.type(description="A proposed action: proposed -> approved -> executed | failed, or rejected, or expired.")
class ProposedAction:
    """A proposal as the caller may see it (parameters and evidence masked)."""

    id: strawberry.ID
    automation: str
    ruleVersion: str
    actionType: str
    parameters: JSON
    twin: strawberry.ID
    className: str
    state: str
    proposer: str
    reason: str
    evidence: JSON
    result: str | None
    approvedBy: list[str]
    createdAt: DateTime
    expiresAt: DateTime
    updatedAt: DateTime
    mayApprove: bool = strawberry.field(description="Whether the caller may approve (or reject, override) it now.")


@strawberry.type(description="An automation of automations.yaml: what it watches, its condition, what follows.")
class AutomationRule:
    """One loaded automation."""

    name: str
    version: str
    description: str
    enabled: bool
    role: str
    className: str
    trigger: str = strawberry.field(description="change, schedule, anomaly, forecast or study.")
    properties: list[str] | None
    kinds: list[str]
    everySeconds: float | None
    condition: str
    alertSeverity: str | None
    actionType: str | None
    approval: str | None
    metrics: list[str] | None = strawberry.field(description="An anomaly trigger's metrics (null: every metric).")
    series: list[str] | None = strawberry.field(description="A forecast trigger's series (null: every series).")
    studies: list[str] | None = strawberry.field(description="A study trigger's studies (null: every study).")
    definition: JSON | None = strawberry.field(
        description="The automation as written in automations.yaml (its action's parameters and alert text "
        "included): null unless the caller may manage automations (automation.manage)."
    )


@strawberry.type(description="What a change of the automations did.")
class AutomationChange:
    """The automation as it now stands (null once deleted) and its versions before and after the change."""

    name: str
    change: str
    versionBefore: str | None
    versionAfter: str | None
    automation: AutomationRule | None


@strawberry.type(description="A page of alerts.")
class DecisionAlertPage:
    """Alerts and where the next page starts."""

    nodes: list[DecisionAlert]
    pageInfo: PageInfo


@strawberry.type(description="A page of proposed actions.")
class ProposedActionPage:
    """Proposals and where the next page starts."""

    nodes: list[ProposedAction]
    pageInfo: PageInfo


@strawberry.type(description="A page of automations.")
class AutomationRulePage:
    """Automations and where the next page starts."""

    nodes: list[AutomationRule]
    pageInfo: PageInfo


@strawberry.type(description="An alert or a proposal that was created or changed.")
class DecisionEvent:
    """What the `decisions` subscription streams: `kind` says which of `alert` and `proposal` is set."""

    kind: str
    created: bool
    alert: DecisionAlert | None
    proposal: ProposedAction | None


TYPES: dict[str, Any] = {
    "DecisionAlert": DecisionAlert,
    "ProposedAction": ProposedAction,
    "AutomationRule": AutomationRule,
    "DecisionAlertPage": DecisionAlertPage,
    "ProposedActionPage": ProposedActionPage,
    "AutomationRulePage": AutomationRulePage,
    "AutomationChange": AutomationChange,
    "DecisionEvent": DecisionEvent,
}
_PAGE_ARGS = [("first", "Optional[int]"), ("after", "Optional[str]")]
QUERY_FIELDS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "alerts",
        "DecisionAlertPage",
        [
            ("states", "Optional[List[str]]"),
            ("severities", "Optional[List[str]]"),
            ("automation", "Optional[str]"),
            ("twin", "Optional[strawberry.ID]"),
            *_PAGE_ARGS,
        ],
        "Alerts about twins the caller may read, newest first, evidence masked; filtered, then paged.",
    ),
    (
        "proposals",
        "ProposedActionPage",
        [
            ("states", "Optional[List[str]]"),
            ("actionTypes", "Optional[List[str]]"),
            ("automation", "Optional[str]"),
            ("twin", "Optional[strawberry.ID]"),
            *_PAGE_ARGS,
        ],
        "Proposed actions on twins the caller may read, newest first, masked; filtered, then paged.",
    ),
    (
        "automations",
        "AutomationRulePage",
        [("className", "Optional[str]"), ("trigger", "Optional[str]"), *_PAGE_ARGS],
        "The automations in force whose trigger class the caller may read, by name.",
    ),
]
_REASON = ("reason", "Optional[str]")
MUTATION_FIELDS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    ("acknowledgeAlert", "DecisionAlert", [("id", "strawberry.ID"), _REASON], "Acknowledge an open alert."),
    (
        "snoozeAlert",
        "DecisionAlert",
        [("id", "strawberry.ID"), ("until", "DateTime"), _REASON],
        "Snooze an alert until a time in the future.",
    ),
    ("resolveAlert", "DecisionAlert", [("id", "strawberry.ID"), _REASON], "Resolve an alert."),
    (
        "approveProposal",
        "ProposedAction",
        [("id", "strawberry.ID"), _REASON],
        "Approve a proposal (an approver role of its action type; never the proposer; four eyes where the policy "
        "asks for two approvals). The last approval queues its execution.",
    ),
    ("rejectProposal", "ProposedAction", [("id", "strawberry.ID"), ("reason", "str")], "Reject, with a reason."),
    (
        "overrideProposal",
        "ProposedAction",
        [("id", "strawberry.ID"), ("parameters", "JSON"), ("reason", "str")],
        "Change a proposal's parameters (checked against its action type), with a reason; approvals so far are "
        "withdrawn.",
    ),
    (
        "createAutomation",
        "AutomationChange",
        [("name", "str"), ("definition", "JSON")],
        "Add an automation (the operation automation.manage; acting as one of the caller's roles): `definition` is "
        "what automations.yaml holds under its name, checked like the file; in force at once.",
    ),
    (
        "updateAutomation",
        "AutomationChange",
        [("name", "str"), ("changes", "JSON")],
        "Change an automation: each top-level key of `changes` (trigger, condition, alert, action, ...) replaces "
        "the automation's, a null removes it; checked like the file; in force at once.",
    ),
    (
        "setAutomationEnabled",
        "AutomationChange",
        [("name", "str"), ("enabled", "bool")],
        "Enable or disable an automation (a disabled one is kept and evaluated by nothing).",
    ),
    ("deleteAutomation", "AutomationChange", [("name", "str")], "Remove an automation (its alerts stay)."),
]
SUBSCRIPTION_FIELDS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "decisions",
        "DecisionEvent",
        [("kinds", "Optional[List[str]]")],
        "Alerts and proposals as they are created or change (over WebSocket, graphql-transport-ws), those the "
        "caller may see, masked like `alerts` and `proposals`; `kinds` keeps `alert` or `proposal` only.",
    ),
]


def alert_values(alert: Alert) -> dict[str, Any]:
    """An alert keyed by GraphQL field name."""
    return {
        "id": alert.id,
        "automation": alert.automation,
        "ruleVersion": alert.rule_version,
        "severity": alert.severity,
        "key": alert.key,
        "state": alert.state,
        "twin": alert.twin_uid,
        "className": alert.twin_class,
        "message": alert.message,
        "evidence": alert.evidence.to_dict(),
        "fired": alert.fired,
        "snoozed": alert.snoozed(),
        "snoozedUntil": alert.snoozed_until.isoformat() if alert.snoozed_until else None,
        "createdAt": alert.created_at.isoformat(),
        "updatedAt": alert.updated_at.isoformat(),
        "updatedBy": alert.updated_by,
    }


def proposal_values(proposal: Proposal, may_approve: bool) -> dict[str, Any]:
    """A proposal keyed by GraphQL field name."""
    return {
        "id": proposal.id,
        "automation": proposal.automation,
        "ruleVersion": proposal.rule_version,
        "actionType": proposal.action_type,
        "parameters": proposal.parameters,
        "twin": proposal.twin_uid,
        "className": proposal.twin_class,
        "state": proposal.state,
        "proposer": proposal.proposer,
        "reason": proposal.reason,
        "evidence": proposal.evidence.to_dict(),
        "result": proposal.result,
        "approvedBy": list(proposal.approved_by),
        "createdAt": proposal.created_at.isoformat(),
        "expiresAt": proposal.expires_at.isoformat(),
        "updatedAt": proposal.updated_at.isoformat(),
        "mayApprove": may_approve,
    }


def automation_values(rule: Automation, *, manages: bool) -> dict[str, Any]:
    """An automation keyed by GraphQL field name; its whole definition only for those who may manage automations."""
    return {
        "name": rule.name,
        "version": rule.version,
        "description": rule.description,
        "role": rule.role,
        "className": rule.cls,
        "trigger": rule.trigger,
        "properties": sorted(rule.properties) if rule.properties is not None else None,
        "kinds": sorted(rule.kinds),
        "everySeconds": rule.every_seconds,
        "condition": rule.condition.source,
        "alertSeverity": rule.alert.severity if rule.alert else None,
        "actionType": rule.action.type if rule.action else None,
        "approval": ("automatic" if rule.action.automatic else "manual") if rule.action else None,
        "enabled": rule.enabled,
        "metrics": sorted(rule.metrics) if rule.metrics is not None else None,
        "series": sorted(rule.series) if rule.series is not None else None,
        "studies": sorted(rule.studies) if rule.studies is not None else None,
        "definition": dict(rule.definition) if manages else None,
    }


def _page_info(page: Page[Any], after: str | None, first_cursor: str | None) -> dict[str, Any]:
    return {
        "hasNextPage": page.has_next,
        "hasPreviousPage": after is not None,
        "startCursor": first_cursor,
        "endCursor": page.end_cursor,
    }


def _first(first: Any) -> int:
    if first is None:
        return DEFAULT_PAGE
    if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= 1000:
        raise BadUserInput(f"`first` must be between 1 and 1000, got {quoted(first)}")
    return first


def _service(ctx: RequestContext) -> Any:
    return ctx.services.runtime.decisions


async def alerts(
    root: Any,
    info: Any,
    states: Any = None,
    severities: Any = None,
    automation: Any = None,
    twin: Any = None,
    first: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """A page of the alerts the caller may see."""
    ctx: RequestContext = info.context
    size = _first(first)
    page: Page[Alert] = await anyio.to_thread.run_sync(
        lambda: _service(ctx).page_alerts(
            ctx.subject,
            states=states,
            severities=severities,
            automations=[automation] if automation else None,
            twin_uid=twin,
            first=size,
            after=after,
        )
    )
    ctx.rows += len(page.items)
    start = encode_position(page.items[0].created_at, page.items[0].id) if page.items else None
    values = {"nodes": [alert_values(a) for a in page.items], "pageInfo": _page_info(page, after, start)}
    return Selection(info).shaped(info.return_type, info.field_nodes, values)


async def proposals(
    root: Any,
    info: Any,
    states: Any = None,
    actionTypes: Any = None,  # noqa: N803 - the GraphQL argument's name
    automation: Any = None,
    twin: Any = None,
    first: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """A page of the proposals the caller may see, each saying whether the caller may approve it."""
    ctx: RequestContext = info.context
    size = _first(first)
    service = _service(ctx)

    def load() -> tuple[Page[Proposal], list[bool]]:
        page = service.page_proposals(
            ctx.subject,
            states=states,
            action_types=actionTypes,
            automations=[automation] if automation else None,
            twin_uid=twin,
            first=size,
            after=after,
        )
        return page, [service.may_decide(ctx.subject, p) for p in page.items]

    page, may = await anyio.to_thread.run_sync(load)
    ctx.rows += len(page.items)
    start = encode_position(page.items[0].created_at, page.items[0].id) if page.items else None
    values = {
        "nodes": [proposal_values(p, m) for p, m in zip(page.items, may, strict=True)],
        "pageInfo": _page_info(page, after, start),
    }
    return Selection(info).shaped(info.return_type, info.field_nodes, values)


async def automations(
    root: Any,
    info: Any,
    className: Any = None,  # noqa: N803 - the GraphQL argument's name
    trigger: Any = None,
    first: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """The automations in force whose trigger class the caller may read, by name, paged by name."""
    ctx: RequestContext = info.context
    size = _first(first)
    if trigger is not None and trigger not in TRIGGER_KINDS:
        raise BadUserInput(f"`trigger` must be one of {', '.join(TRIGGER_KINDS)}, got {quoted(trigger)}")
    running = ctx.services.decisions
    rules: tuple[Automation, ...] = (
        running.registry.current.automations
        if running is not None
        else (await anyio.to_thread.run_sync(ctx.services.runtime.automations)).automations
    )
    start_after = decode_position(after)[1] if after else ""
    shown = sorted(
        (
            rule
            for rule in rules
            if ctx.policy.decide(ctx.subject, "read", rule.cls).allowed
            and (className is None or rule.cls == className)
            and (trigger is None or rule.trigger == trigger)
            and rule.name > start_after
        ),
        key=lambda rule: rule.name,
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    kept = shown[:size]
    page: Page[Automation] = Page(kept, encode_position(epoch, kept[-1].name) if kept else after, len(shown) > size)
    ctx.services.trail.record(
        ctx.subject,
        "decision.automations.read",
        decision=Decision.ALLOW,
        policy_version=ctx.policy.version,
        variables={"className": className, "trigger": trigger},
    )
    ctx.rows += len(kept)
    start = encode_position(epoch, kept[0].name) if kept else None
    manages = ctx.policy.decide(ctx.subject, "operation", "automation.manage").allowed
    values = {
        "nodes": [automation_values(r, manages=manages) for r in kept],
        "pageInfo": _page_info(page, after, start),
    }
    return Selection(info).shaped(info.return_type, info.field_nodes, values)


def _alert_mutation(action: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def resolver(root: Any, info: Any, id: str, reason: Any = None, until: Any = None) -> dict[str, Any]:
        ctx: RequestContext = info.context
        moment = None
        if action == "snooze":
            moment = datetime.fromisoformat(until)
            moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        alert = await anyio.to_thread.run_sync(
            lambda: _service(ctx).update_alert(ctx.subject, id, action, moment, reason or "")
        )
        ctx.rows += 1
        return Selection(info).shaped(info.return_type, info.field_nodes, alert_values(alert))

    resolver.__name__ = f"{action}_alert"
    return resolver


def _proposal_mutation(action: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def resolver(root: Any, info: Any, id: str, reason: Any = None, parameters: Any = None) -> dict[str, Any]:
        ctx: RequestContext = info.context
        service = _service(ctx)

        def run() -> tuple[Proposal, bool]:
            if action == "approve":
                updated = service.approve(ctx.subject, id, reason or "")
            elif action == "reject":
                updated = service.reject(ctx.subject, id, reason or "")
            else:
                if not isinstance(parameters, dict) or not parameters:
                    raise BadUserInput("`parameters` must be a non-empty JSON object of the parameters to change")
                updated = service.override(ctx.subject, id, parameters, reason or "")
            return updated, service.may_decide(ctx.subject, updated)

        updated, may = await anyio.to_thread.run_sync(run)
        ctx.rows += 1
        return Selection(info).shaped(info.return_type, info.field_nodes, proposal_values(updated, may))

    resolver.__name__ = f"{action}_proposal"
    return resolver


def automation_manager(services: Any) -> AutomationManager:
    """The manager of DATA_DIR/automations.yaml, reloading the set this app's runtime evaluates (when it runs one)."""
    runtime = services.runtime
    running = services.decisions
    return AutomationManager(
        runtime.settings.data_dir / "automations.yaml",
        runtime.ontology,
        runtime.policy,
        runtime.decisions.action_types,
        runtime.audit,
        running.registry if running is not None else None,
    )


_STARTING = threading.Lock()


def _start_runtime(services: Any) -> None:
    """Start the decisions runtime when the first automation was just written and this app runs the runtimes but had
    no automations.yaml to start one with (the app's lifespan stops it)."""
    with _STARTING:
        if services.decisions is not None or services.live is None:
            return
        created = services.runtime.decision_runtime(holder=services.live.holder)
        if created is not None:
            created.start()
            services.decisions = created


def _change_values(changed: AutomationChanged) -> dict[str, Any]:
    return {
        "name": changed.name,
        "change": changed.change,
        "versionBefore": changed.version_before,
        "versionAfter": changed.version_after,
        "automation": automation_values(changed.automation, manages=True) if changed.automation is not None else None,
    }


def _automation_mutation(change: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def resolver(
        root: Any, info: Any, name: str, definition: Any = None, changes: Any = None, enabled: Any = None
    ) -> dict[str, Any]:
        ctx: RequestContext = info.context
        services = ctx.services
        body = definition if change == "create" else changes
        if change in ("create", "update") and not isinstance(body, dict):
            raise BadUserInput(
                f"`{'definition' if change == 'create' else 'changes'}` must be a JSON object, got {quoted(body)}"
            )

        def run() -> AutomationChanged:
            manager = automation_manager(services)
            if change == "create":
                done = manager.create(ctx.subject, name, body)
                _start_runtime(services)
                return done
            if change == "update":
                return manager.update(ctx.subject, name, body)
            if change == "enabled":
                return manager.set_enabled(ctx.subject, name, bool(enabled))
            return manager.delete(ctx.subject, name)

        changed = await anyio.to_thread.run_sync(run)
        ctx.rows += 1
        return Selection(info).shaped(info.return_type, info.field_nodes, _change_values(changed))

    resolver.__name__ = f"{change}_automation"
    return resolver


QUERY_RESOLVERS = {
    "alerts": governed(alerts),
    "proposals": governed(proposals),
    "automations": governed(automations),
}
MUTATION_RESOLVERS = {
    "acknowledgeAlert": governed(_alert_mutation("acknowledge")),
    "snoozeAlert": governed(_alert_mutation("snooze")),
    "resolveAlert": governed(_alert_mutation("resolve")),
    "approveProposal": governed(_proposal_mutation("approve")),
    "rejectProposal": governed(_proposal_mutation("reject")),
    "overrideProposal": governed(_proposal_mutation("override")),
    "createAutomation": governed(_automation_mutation("create")),
    "updateAutomation": governed(_automation_mutation("update")),
    "setAutomationEnabled": governed(_automation_mutation("enabled")),
    "deleteAutomation": governed(_automation_mutation("delete")),
}


async def stream_decisions(
    services: Any,
    subject: Subject,
    sub_id: str,
    request: Any,
    emit: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Stream the alerts and proposals created or changed from now on that `subject` may see, masked (the
    `decisions` subscription; `request` is the checked subscribe request of api/graphql/subscriptions.py)."""
    schema = services.schema.graphql
    args = request.selection.args(schema.subscription_type, request.root)
    kinds = set(args.get("kinds") or ("alert", "proposal"))
    unknown = kinds - {"alert", "proposal"}
    if unknown:
        await emit(
            {
                "type": "error",
                "id": sub_id,
                "payload": [
                    {
                        "message": f"unknown kind(s) {sorted(unknown)}: alert or proposal",
                        "extensions": {"code": "BAD_USER_INPUT"},
                    }
                ],
            }
        )
        return
    since = datetime.now(UTC) - timedelta(milliseconds=1)  # set before the record: a recorded one streams from here
    services.trail.record(
        subject,
        "graphql.subscription:decisions",
        decision=Decision.ALLOW,
        policy_version=services.policy.version,
        variables={"kinds": sorted(kinds)},
    )
    service = services.runtime.decisions
    sent: dict[tuple[str, str], str] = {}  # (kind, id) -> the updatedAt last sent
    try:
        with service.notices.listening() as written:
            while True:
                written.clear()  # before the read: a write during it wakes the next turn
                since, sent = await _send_changed(service, subject, sub_id, request, emit, kinds, since, sent)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(written.wait(), FALLBACK_SECONDS)
    except asyncio.CancelledError:
        return


async def _send_changed(
    service: Any,
    subject: Subject,
    sub_id: str,
    request: Any,
    emit: Callable[[dict[str, Any]], Awaitable[None]],
    kinds: set[str],
    since: datetime,
    sent: dict[tuple[str, str], str],
) -> tuple[datetime, dict[tuple[str, str], str]]:
    """Send the alerts and proposals changed since `since` that `subject` may see and that were not sent as they
    are; the new `since` and what was sent."""
    found_alerts, found_proposals = await anyio.to_thread.run_sync(service.changed_since, subject, since)
    events: list[tuple[datetime, str, Any]] = []
    if "alert" in kinds:
        events += [(a.updated_at, "alert", a) for a in found_alerts]
    if "proposal" in kinds:
        events += [(p.updated_at, "proposal", p) for p in found_proposals]
    events.sort(key=lambda e: (e[0], e[2].id))
    for moment, kind, item in events:
        stamp = moment.isoformat()
        if sent.get((kind, item.id)) == stamp:
            continue
        sent[(kind, item.id)] = stamp
        values: dict[str, Any] = {"kind": kind, "created": item.created_at == item.updated_at}
        if kind == "alert":
            values.update(alert=alert_values(item), proposal=None)
        else:
            may = await anyio.to_thread.run_sync(service.may_decide, subject, item)
            values.update(alert=None, proposal=proposal_values(item, may))
        shaped = request.selection.shaped(request.field_type, [request.root], values)
        await emit({"type": "next", "id": sub_id, "payload": {"data": {request.key: shaped}}})
        since = max(since, moment)
    if len(sent) > 10_000:  # what was sent before `since` cannot come back as new
        sent = {k: v for k, v in sent.items() if v >= since.isoformat()}
    return since, sent
