"""Mutations: upsert and delete twins and links through the GraphStore, validated, allowed by the policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import anyio.to_thread
from graphql import get_named_type

from api.context import RequestContext
from api.errors import BadUserInput, FieldForbidden, Forbidden
from api.graphql.governed import governed
from api.graphql.selection import Selection, plain
from governance.lifecycle import transition_twin as move_twin
from graph.model import Link, Twin, WriteSummary
from ontology.errors import UnknownTerm

MAX_BATCH = 1000


def _batch(items: Any, what: str) -> list[dict[str, Any]]:
    values = plain(items)
    if not isinstance(values, list) or not values:
        raise BadUserInput(f"`{what}` must be a non-empty list")
    if len(values) > MAX_BATCH:
        raise BadUserInput(f"at most {MAX_BATCH} {what} per request, got {len(values)}")
    return values


async def _existing(ctx: RequestContext, uids: Iterable[str]) -> dict[str, tuple[str, bool]]:
    """uid -> (class, visible to the caller) for the twins that exist, in one round trip."""
    wanted = list(uids)
    found = await anyio.to_thread.run_sync(
        lambda: ctx.store.visibility(wanted, ctx.scope.including_retired(), ctx.timeout_ms)
    )
    ctx.round_trips += 1
    return found


def _require_writer(ctx: RequestContext) -> None:
    """Refuse, before any lookup, a caller who may write no class: what exists is none of their business."""
    if not ctx.policy.writes_anything(ctx.subject):
        raise Forbidden(f"denied: {ctx.subject.sub} may not change twins or links")


def _unseen(uid: str) -> Forbidden:
    """The one answer for a twin the caller may not see and for one that does not exist (no existence oracle)."""
    return Forbidden(f"denied: twin {uid!r} would be outside what you may see, so you may not write it")


def _visible(found: Mapping[str, tuple[str, bool]], uid: str) -> bool:
    return uid in found and found[uid][1]


async def _reaching_outside(ctx: RequestContext, uids: list[str]) -> list[str]:
    """The twins among `uids` linked to a twin the caller may not see (a delete would remove those links)."""
    if not uids or ctx.scope.including_retired().render("m") == "true":
        return []
    reaching = await anyio.to_thread.run_sync(
        lambda: ctx.store.linked_outside(uids, ctx.scope.including_retired(), ctx.timeout_ms)
    )
    ctx.round_trips += 1
    return reaching


def _class_name(ctx: RequestContext, cls: Any) -> str:
    if not isinstance(cls, str):
        raise BadUserInput("className must be a class name")
    try:
        return ctx.store.ontology.get(cls).name
    except UnknownTerm:
        raise BadUserInput(f"unknown class {cls!r}") from None


def _result(info: Any, summary: WriteSummary) -> dict[str, Any]:
    values = {
        "created": summary.created,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "deleted": summary.deleted,
    }
    return Selection(info).flat(get_named_type(info.return_type), info.field_nodes, values)


async def upsert_twins(root: Any, info: Any, twins: Any) -> dict[str, Any]:
    """Create or update twins; each class needs `write`, and each twin must be one the caller sees (or would see once
    created): a hidden twin and an absent one the caller could not see get the same refusal."""
    ctx: RequestContext = info.context
    batch = _batch(twins, "twins")
    items = []
    for item in batch:
        cls = _class_name(ctx, item.get("className"))
        props = item.get("properties")
        if not isinstance(props, dict):
            raise BadUserInput(f"properties of twin {item.get('uid')!r} must be an object")
        ctx.policy.require(ctx.subject, "write", cls)
        hidden = ctx.policy.unreadable(ctx.subject, cls, props)  # also one a former class defined, to remove
        if hidden:
            raise FieldForbidden(f"field(s) {sorted(hidden)} of {cls} may not be written by this caller")
        items.append(Twin(str(item["uid"]), cls, props))
    found = await _existing(ctx, (t.uid for t in items))
    for twin in items:
        if twin.uid in found:
            if not found[twin.uid][1]:
                raise _unseen(twin.uid)
            ctx.policy.require(ctx.subject, "write", found[twin.uid][0])
        elif not ctx.policy.sees_created(ctx.subject, twin.cls):
            raise _unseen(twin.uid)  # the caller could not see it once created
    summary = await anyio.to_thread.run_sync(lambda: ctx.store.upsert_twins(items, actor=ctx.subject.sub, source="api"))
    ctx.round_trips += 1
    return _result(info, summary)


async def delete_twins(root: Any, info: Any, uids: Any) -> dict[str, Any]:
    """Delete twins the caller may see and whose class they may delete; hidden ones count as absent (not deleted).

    A twin linked to twins the caller may not see is not deleted: that would remove those links too.
    """
    ctx: RequestContext = info.context
    wanted = [str(u) for u in _batch(uids, "uids")]
    _require_writer(ctx)
    found = await _existing(ctx, wanted)
    present = [u for u in dict.fromkeys(wanted) if _visible(found, u)]
    for uid in present:
        ctx.policy.require(ctx.subject, "delete", found[uid][0])
    reaching = await _reaching_outside(ctx, present)
    if reaching:
        raise Forbidden(
            f"denied: twin(s) {reaching[:10]} are linked to twins outside what you may see; "
            "deleting them would remove those links"
        )
    summary = WriteSummary()
    if present:
        summary = await anyio.to_thread.run_sync(
            lambda: ctx.store.delete_twins(present, actor=ctx.subject.sub, source="api")
        )
        ctx.round_trips += 1
    return _result(info, summary)


async def _visible_links(ctx: RequestContext, pairs: list[tuple[str, str]]) -> list[bool]:
    """Per (source, target): whether the caller sees both ends (the source's class must then allow `write`)."""
    _require_writer(ctx)
    found = await _existing(ctx, (u for pair in pairs for u in pair))
    seen = []
    for source, target in pairs:
        both = _visible(found, source) and _visible(found, target)
        if both:
            ctx.policy.require(ctx.subject, "write", found[source][0])
        seen.append(both)
    return seen


async def upsert_links(root: Any, info: Any, links: Any) -> dict[str, Any]:
    """Create or update links between twins the caller may see; the source's class needs `write`."""
    ctx: RequestContext = info.context
    batch = _batch(links, "links")
    items = []
    for item in batch:
        props = item.get("properties") or {}
        if not isinstance(props, dict):
            raise BadUserInput("link properties must be an object")
        items.append(Link(str(item["type"]), str(item["source"]), str(item["target"]), props))
    seen = await _visible_links(ctx, [(link.source, link.target) for link in items])
    unseen = sorted({uid for link, ok in zip(items, seen, strict=True) if not ok for uid in (link.source, link.target)})
    if unseen:  # absent and hidden endpoints get the same answer, before the graph is asked
        raise BadUserInput(f"link endpoint(s) {unseen[:10]} are not twins you may see (or do not exist)")
    summary = await anyio.to_thread.run_sync(lambda: ctx.store.upsert_links(items, actor=ctx.subject.sub, source="api"))
    ctx.round_trips += 1
    return _result(info, summary)


async def delete_links(root: Any, info: Any, links: Any) -> dict[str, Any]:
    """Delete links between twins the caller may see (others count as absent); the source's class needs `write`."""
    ctx: RequestContext = info.context
    keys = [(str(i["type"]), str(i["source"]), str(i["target"])) for i in _batch(links, "links")]
    seen = await _visible_links(ctx, [(s, t) for _, s, t in keys])
    keys = [key for key, ok in zip(keys, seen, strict=True) if ok]  # links to hidden twins count as absent
    if not keys:
        return _result(info, WriteSummary())
    summary = await anyio.to_thread.run_sync(lambda: ctx.store.delete_links(keys, actor=ctx.subject.sub, source="api"))
    ctx.round_trips += 1
    return _result(info, summary)


async def transition_twin(root: Any, info: Any, uid: Any, state: Any, reason: Any = None) -> dict[str, Any]:
    """Move a twin along its lifecycle, decided by the policy and audited (governance/lifecycle.py)."""
    ctx: RequestContext = info.context
    if not isinstance(state, str) or (reason is not None and not isinstance(reason, str)):
        raise BadUserInput("`state` and `reason` must be text")
    moved = await anyio.to_thread.run_sync(
        lambda: move_twin(
            str(uid),
            state,
            store=ctx.store,
            policy=ctx.policy,
            audit=ctx.services.runtime.audit,
            subject=ctx.subject,
            reason=reason,
        )
    )
    ctx.round_trips += 2
    values = {"uid": moved.uid, "className": moved.cls, "before": moved.before, "after": moved.after}
    return Selection(info).flat(get_named_type(info.return_type), info.field_nodes, values)


RESOLVERS = {
    "upsertTwins": governed(upsert_twins),
    "deleteTwins": governed(delete_twins),
    "upsertLinks": governed(upsert_links),
    "deleteLinks": governed(delete_links),
    "transitionTwin": governed(transition_twin),
}
