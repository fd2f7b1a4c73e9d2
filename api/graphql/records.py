"""The root fields over the relational stores — history, lineage, audit log — governed like the graph reads."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from graphql import get_named_type

from api.context import RequestContext
from api.errors import BadUserInput, NotFound
from api.graphql.governed import governed
from api.graphql.selection import Selection, list_limit
from governance.canonical import utc_text
from governance.lineage import ProvenanceRecord
from graph.model import TwinRecord
from ontology.errors import quoted
from ontology.model import RelationshipDef

LINK_PREFIX = "link:"  # lineage records of links are named `link:<type>` (connectors/sync/committer.py)


async def _visible_class(ctx: RequestContext, uid: str) -> str:
    """The class of a twin the caller may see; NotFound otherwise (absent and hidden look the same)."""
    record = await anyio.to_thread.run_sync(lambda: ctx.store.get(uid, ctx.scope.including_retired()))
    ctx.round_trips += 1
    if record is None:
        raise NotFound(f"no twin {quoted(uid)} that you may see")
    return record.cls


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return utc_text(value)
    except Exception:
        return value.isoformat()


async def history(root: Any, info: Any, uid: str, first: Any = None) -> list[dict[str, Any]]:
    """Recorded changes of a visible twin, with values masked like a read of the twin."""
    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "history.read")
    limit = list_limit(first, 100)
    cls = await _visible_class(ctx, uid)
    entries = await anyio.to_thread.run_sync(lambda: ctx.store.history_of(uid, limit))
    others = {e.target if e.uid == uid else e.uid for e in entries if e.kind == "link"}
    found: dict[str, TwinRecord] = {}
    if others:  # a link is shown only when the twin at its other end is one the caller may see
        found = await anyio.to_thread.run_sync(
            lambda: ctx.store.get_many(sorted(o for o in others if o), ctx.scope.including_retired())
        )
        ctx.round_trips += 1
    visible = set(found)
    labels = ctx.store.ontology.labels(cls)
    sel = Selection(info)
    entry_type = get_named_type(info.return_type)
    result = []
    for entry in entries[:limit]:
        if entry.kind == "link" and (entry.target if entry.uid == uid else entry.uid) not in visible:
            continue
        states = (entry.before, entry.after)
        if entry.kind == "twin":
            before, after = (_masked(ctx, uid, entry.cls or cls, labels, state) for state in states)
        else:  # a link's properties, masked by their classification
            ontology = ctx.store.ontology
            source_cls = cls if entry.uid == uid else found[entry.uid].cls
            rel = ontology.relationships(source_cls).get(entry.link_type or "") if source_cls in ontology else None
            before, after = (_masked_link(ctx, entry.link_type or "", rel, state) for state in states)
        values = {
            "id": entry.id,
            "uid": entry.uid,
            "kind": entry.kind,
            "op": entry.op,
            "className": entry.cls,
            "linkType": entry.link_type,
            "target": entry.target,
            "actor": entry.actor,
            "source": entry.source,
            "runId": entry.run_id,
            "at": _iso(entry.at),
            "before": before,
            "after": after,
        }
        result.append(sel.flat(entry_type, info.field_nodes, values))
    ctx.rows += len(result)
    return result


def _masked(ctx: RequestContext, uid: str, cls: str, labels: tuple[str, ...], state: dict[str, Any] | None) -> Any:
    if state is None:
        return None
    view = ctx.policy.mask(ctx.subject, TwinRecord(uid, cls, labels, dict(state)))
    if view.masked:
        ctx.note_masked(cls, view.masked)
    return view.properties


def _masked_link(
    ctx: RequestContext, link_type: str, rel: RelationshipDef | None, state: dict[str, Any] | None
) -> dict[str, Any] | None:
    if not state:
        return state
    shown: dict[str, Any] = {}
    masked: dict[str, str] = {}
    for key, value in state.items():
        prop = rel.property(key) if rel is not None else None
        mode = ctx.policy.relationship_field_mode(ctx.subject, prop.classification if prop is not None else None)
        if mode != "show":
            masked[key] = mode
            value = ctx.policy.mask_value(value, mode)
        shown[key] = value
    if masked:
        ctx.note_masked(link_type, masked)
    return shown


async def lineage(root: Any, info: Any, uid: str, property: Any = None, first: Any = None) -> list[dict[str, Any]]:
    """Where a visible twin's values came from; the stored value is masked as the property would be."""
    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "lineage.read")
    limit = list_limit(first, 100)
    cls = await _visible_class(ctx, uid)
    store = ctx.services.runtime.lineage
    records = await anyio.to_thread.run_sync(lambda: store.where_from(uid, property, limit))
    records = await _within_scope(ctx, records)
    sel = Selection(info)
    record_type = get_named_type(info.return_type)
    result = []
    for r in records:
        mode = ctx.policy.field_mode(ctx.subject, cls, r.property)
        value = r.value if r.has_value else None
        if mode != "show":
            ctx.note_masked(cls, {r.property: mode})
            value = ctx.policy.mask_value(value, mode)
        values = {
            "twinUid": r.twin_uid,
            "property": r.property,
            "value": value,
            "valueDigest": r.value_digest if mode in ("show", "hash") else None,
            "erased": r.erased,
            "sourceSystem": r.source_system,
            "sourceObject": r.source_object,
            "recordKey": r.record_key,
            "sourceField": r.source_field,
            "runId": r.run_id,
            "mappingRule": r.mapping_rule,
            "transform": r.transform,
            "recordedAt": _iso(r.recorded_at),
        }
        result.append(sel.flat(record_type, info.field_nodes, values))
    ctx.rows += len(result)
    return result


def _link_target(record: ProvenanceRecord) -> str | None:
    """The uid a link's lineage record points to (its value is `{"target": uid, ...}`); None when not known."""
    value = record.value if record.has_value else None
    target = value.get("target") if isinstance(value, dict) else None
    return target if isinstance(target, str) else None


async def _within_scope(ctx: RequestContext, records: list[ProvenanceRecord]) -> list[ProvenanceRecord]:
    """The records without links to twins the caller may not see: the row rules that hide such a link in a connection
    or in history hide its lineage too (a link record whose target is no longer known is left out)."""
    links = [r for r in records if r.property.startswith(LINK_PREFIX)]
    if not links or ctx.scope.including_retired().render("n") == "true":
        return records
    targets = sorted({t for r in links if (t := _link_target(r)) is not None})
    seen: set[str] = set()
    if targets:
        seen = set(await anyio.to_thread.run_sync(lambda: ctx.store.get_many(targets, ctx.scope.including_retired())))
        ctx.round_trips += 1
    return [r for r in records if not r.property.startswith(LINK_PREFIX) or _link_target(r) in seen]


async def audit_log(
    root: Any,
    info: Any,
    subject: Any = None,
    operation: Any = None,
    decision: Any = None,
    first: Any = None,
    offset: Any = None,
) -> list[dict[str, Any]]:
    """The audit log, newest first (compliance and admin)."""
    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "audit.read")
    limit = list_limit(first, 100)
    start = offset or 0
    if start < 0:
        raise BadUserInput(f"`offset` must not be negative, got {start}")
    if decision is not None and decision not in ("allow", "deny"):
        raise BadUserInput(f"`decision` must be allow or deny, got {quoted(decision)}")
    trail = ctx.services.trail
    await anyio.to_thread.run_sync(trail.flush)
    records = await anyio.to_thread.run_sync(
        lambda: trail.log.query(
            subject=subject, operation=operation, decision=decision, limit=limit, offset=start, newest_first=True
        )
    )
    sel = Selection(info)
    record_type = get_named_type(info.return_type)
    result = []
    for r in records:
        values = {
            "seq": r.seq,
            "time": _iso(r.time),
            "subject": r.subject,
            "roles": list(r.roles),
            "operation": r.operation,
            "variablesDigest": r.variables_digest,
            "decision": str(r.decision),
            "policyVersion": r.policy_version,
            "rowsReturned": r.rows_returned,
            "detail": r.detail,
            "hash": r.hash,
        }
        result.append(sel.flat(record_type, info.field_nodes, values))
    ctx.rows += len(result)
    return result


RESOLVERS = {"history": governed(history), "lineage": governed(lineage), "auditLog": governed(audit_log)}
