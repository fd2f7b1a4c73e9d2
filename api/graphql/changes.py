"""The change feed over GraphQL (`changes(after:, first:)`): pages of changes the caller may see, values masked."""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from api.context import RequestContext
from api.errors import BadUserInput
from api.graphql.governed import governed
from api.graphql.selection import Selection, list_limit
from governance.canonical import utc_text
from governance.change_view import ChangeGate, ChangeView
from graph.feed import FeedChange, FeedError


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


RESOLVERS = {"changes": governed(changes)}
