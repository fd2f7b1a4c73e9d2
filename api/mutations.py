"""Mutations: upsert and delete twins and links through the GraphStore, validated, allowed by the policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import anyio.to_thread
from graphql import get_named_type

from api.compiler import Selection, governed, plain
from api.context import RequestContext
from api.errors import BadUserInput, FieldForbidden, Forbidden
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
    wanted = sorted(set(uids))
    scope = ctx.scope
    cypher = (
        "MATCH (n:Twin) WHERE n.uid IN $uids RETURN n.uid AS uid, n._class AS cls, false AS visible "
        f"UNION ALL MATCH (n:Twin) WHERE n.uid IN $uids AND {scope.render('n')} "
        "RETURN n.uid AS uid, n._class AS cls, true AS visible"
    )
    rows = await anyio.to_thread.run_sync(
        lambda: ctx.store.backend.read(cypher, {"uids": wanted, **scope.params}, timeout_ms=ctx.timeout_ms))
    ctx.round_trips += 1
    found: dict[str, tuple[str, bool]] = {}
    for uid, cls, visible in rows:
        seen = found.get(uid)
        found[uid] = (cls, visible or (seen[1] if seen else False))
    return found


def _require_visible(found: Mapping[str, tuple[str, bool]], uid: str) -> None:
    if uid in found and not found[uid][1]:
        raise Forbidden(f"denied: twin {uid!r} is outside what you may see, so you may not change it")


def _class_name(ctx: RequestContext, cls: Any) -> str:
    if not isinstance(cls, str):
        raise BadUserInput("className must be a class name")
    try:
        return ctx.store.ontology.get(cls).name
    except UnknownTerm:
        raise BadUserInput(f"unknown class {cls!r}") from None


def _result(info: Any, summary: WriteSummary) -> dict[str, Any]:
    values = {"created": summary.created, "updated": summary.updated, "unchanged": summary.unchanged,
              "deleted": summary.deleted}
    return Selection(info).flat(get_named_type(info.return_type), info.field_nodes, values)


async def upsert_twins(root: Any, info: Any, twins: Any) -> dict[str, Any]:
    """Create or update twins; each class needs `write`, and existing twins must be within the caller's scope."""
    ctx: RequestContext = info.context
    batch = _batch(twins, "twins")
    items = []
    for item in batch:
        cls = _class_name(ctx, item.get("className"))
        props = item.get("properties")
        if not isinstance(props, dict):
            raise BadUserInput(f"properties of twin {item.get('uid')!r} must be an object")
        ctx.policy.require(ctx.subject, "write", cls)
        hidden = ctx.scope.hidden_for(ctx.store.ontology.labels(cls)) & set(props)
        if hidden:
            raise FieldForbidden(f"field(s) {sorted(hidden)} of {cls} may not be written by this caller")
        items.append(Twin(str(item["uid"]), cls, props))
    found = await _existing(ctx, (t.uid for t in items))
    for twin in items:
        _require_visible(found, twin.uid)
        if twin.uid in found:
            ctx.policy.require(ctx.subject, "write", found[twin.uid][0])
    summary = await anyio.to_thread.run_sync(
        lambda: ctx.store.upsert_twins(items, actor=ctx.subject.sub, source="api"))
    ctx.round_trips += 1
    return _result(info, summary)


async def delete_twins(root: Any, info: Any, uids: Any) -> dict[str, Any]:
    """Delete twins the caller may see and whose class they may delete."""
    ctx: RequestContext = info.context
    wanted = [str(u) for u in _batch(uids, "uids")]
    found = await _existing(ctx, wanted)
    for uid in wanted:
        _require_visible(found, uid)
        if uid in found:
            ctx.policy.require(ctx.subject, "delete", found[uid][0])
    present = [u for u in wanted if u in found]
    summary = WriteSummary()
    if present:
        summary = await anyio.to_thread.run_sync(
            lambda: ctx.store.delete_twins(present, actor=ctx.subject.sub, source="api"))
        ctx.round_trips += 1
    return _result(info, summary)


async def _link_checks(ctx: RequestContext, pairs: list[tuple[str, str]], action: str) -> None:
    found = await _existing(ctx, (u for pair in pairs for u in pair))
    for source, target in pairs:
        for uid in (source, target):
            if uid not in found:
                continue
            _require_visible(found, uid)
        if source in found:
            ctx.policy.require(ctx.subject, action, found[source][0])  # type: ignore[arg-type]
        elif action == "write":
            raise BadUserInput(f"link source {source!r} does not exist")


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
    await _link_checks(ctx, [(link.source, link.target) for link in items], "write")
    summary = await anyio.to_thread.run_sync(
        lambda: ctx.store.upsert_links(items, actor=ctx.subject.sub, source="api"))
    ctx.round_trips += 1
    return _result(info, summary)


async def delete_links(root: Any, info: Any, links: Any) -> dict[str, Any]:
    """Delete links between twins the caller may see; the source's class needs `write`."""
    ctx: RequestContext = info.context
    keys = [(str(i["type"]), str(i["source"]), str(i["target"])) for i in _batch(links, "links")]
    await _link_checks(ctx, [(s, t) for _, s, t in keys], "write")
    summary = await anyio.to_thread.run_sync(
        lambda: ctx.store.delete_links(keys, actor=ctx.subject.sub, source="api"))
    ctx.round_trips += 1
    return _result(info, summary)


RESOLVERS = {
    "upsertTwins": governed(upsert_twins), "deleteTwins": governed(delete_twins),
    "upsertLinks": governed(upsert_links), "deleteLinks": governed(delete_links),
}
