"""The change feed over GraphQL (`changes(after:, first:)`): pages of changes the caller may see, values masked."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio.to_thread

from api.context import RequestContext
from api.errors import BadUserInput
from api.graphql.governed import governed
from api.graphql.selection import Selection, list_limit
from governance.canonical import utc_text
from governance.change_view import ChangeGate, ChangeView
from graph.feed import FeedChange, FeedError
from graph.replay import GraphDelta


async def changes(root: Any, info: Any, after: Any = None, first: Any = None) -> dict[str, Any]:
    """The feed after `after`, as the caller's policy shows it; `cursor` passes hidden changes too."""
    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "history.read")
    limit = list_limit(first, 100)
    cursor = 0 if after is None else after
    feed = ctx.store.feed
    gate = ChangeGate(ctx.policy, ctx.subject, ctx.store)

    def page() -> tuple[list[FeedChange], list[ChangeView], int]:
        raw = feed.read(cursor, limit)
        return raw, gate.view(raw), feed.head()

    try:
        raw, shown, head = await anyio.to_thread.run_sync(page)
    except FeedError as exc:
        raise BadUserInput(str(exc)) from None
    ctx.round_trips += 1
    for view in shown:
        if view.masked:
            ctx.note_masked(view.change.cls or view.change.link_type or "", view.masked)
    values = {
        "changes": [change_values(view.change) for view in shown],
        "cursor": raw[-1].seq if raw else cursor,
        "head": head,
    }
    ctx.rows += len(shown)
    return Selection(info).shaped(info.return_type, info.field_nodes, values)


def change_values(change: FeedChange) -> dict[str, Any]:
    """A change as the GraphQL `Change` type names its fields."""
    return {
        "seq": change.seq,
        "uid": change.uid,
        "kind": change.kind,
        "op": change.op,
        "className": change.cls,
        "linkType": change.link_type,
        "target": change.target,
        "actor": change.actor,
        "source": change.source,
        "runId": change.run_id,
        "at": utc_text(change.at),
        "before": change.before,
        "after": change.after,
    }


def _visible_fields(ctx: RequestContext, change: Any, names: tuple[str, ...]) -> list[str]:
    """The changed fields of a twin the caller may read (that a hidden field changed is itself not shown)."""
    if change.kind != "twin" or not change.cls:
        return list(names)
    hidden = ctx.policy.unreadable(ctx.subject, change.cls, [n for n in names if n != "_class"])
    return [name for name in names if name not in hidden]


async def diff(root: Any, info: Any, first: Any = None, to: Any = None, **args: Any) -> list[Any]:
    """What changed between `from` and `to` (default now), as the caller's policy shows it: visibility decided on the
    graph as it was at `to`, values masked like a read of the twin."""
    from api.graphql.queries import as_of_time

    ctx: RequestContext = info.context
    ctx.policy.require(ctx.subject, "operation", "history.read")
    limit = list_limit(first, 100)
    start = as_of_time(args["from"], "from")
    end = None if to is None else as_of_time(to, "to")
    store = ctx.store

    def work() -> tuple[list[ChangeView], dict[tuple[Any, ...], tuple[str, ...]]]:
        found = store.diff(start, end)
        reader = store if end is None else store.at(end)
        gate = ChangeGate(ctx.policy, ctx.subject, reader)
        when = end or dt.datetime.now(dt.UTC)
        fields = {(d.kind, d.uid, d.link_type, d.target): d.fields for d in found}
        return gate.view([_as_change(delta, when) for delta in found])[:limit], fields

    shown, fields = await anyio.to_thread.run_sync(work)
    ctx.round_trips += 1
    result = []
    for view in shown:
        if view.masked:
            ctx.note_masked(view.change.cls or view.change.link_type or "", view.masked)
        change = view.change
        result.append(
            {
                "uid": change.uid,
                "kind": change.kind,
                "op": change.op,
                "className": change.cls,
                "linkType": change.link_type,
                "target": change.target,
                "fields": _visible_fields(
                    ctx, change, fields[(change.kind, change.uid, change.link_type, change.target)]
                ),
                "before": change.before,
                "after": change.after,
            }
        )
    ctx.rows += len(result)
    selection = Selection(info)
    return [selection.shaped(info.return_type, info.field_nodes, item) for item in result]


def _as_change(delta: GraphDelta, when: dt.datetime) -> FeedChange:
    """A delta in the shape the change gate filters and masks."""
    return FeedChange(
        0,
        delta.uid,
        delta.kind,
        delta.op,
        delta.cls,
        delta.link_type,
        delta.target,
        "",
        None,
        None,
        when,
        delta.before,
        delta.after,
    )


RESOLVERS = {"changes": governed(changes), "diff": governed(diff)}
