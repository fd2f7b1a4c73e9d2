"""GraphQL subscriptions over WebSocket at /graphql, speaking graphql-transport-ws (what GraphiQL and Apollo speak).

The client authenticates in `connection_init` (payload `{"Authorization": "Bearer ..."}`); each `subscribe` is
validated against the schema, checked by the policy (history.read) and audited, then streams `next` messages: the
committed changes the caller may see, masked by the one change gate (governance/change_view.py). A shared watcher
polls the feed's head; every subscription reads its own page from its own cursor when the head moves, so a slow
client delays nobody else. A token that expires ends the connection (close 4403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values

from api.errors import ApiError, Unauthenticated
from api.graphql.changes import change_values
from api.graphql.selection import Selection
from api.http.auth import token_expiry
from governance.audit import Decision
from governance.change_view import ChangeGate
from governance.errors import PolicyDenied
from governance.identity import Subject
from graph.feed import FeedChange

logger = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT_SECONDS = 10.0
HEAD_POLL_SECONDS = 0.05  # how often the watcher looks at the feed's head
TOKEN_CHECK_SECONDS = 5.0  # how often a connection's token is checked again (expiry ends the connection)
PAGE = 500


class _Closed(Exception):
    """The connection must close with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FeedWatcher:
    """One poller of the feed's head per app: wakes every subscription when new changes are committed."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.head = 0
        self._moved = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start polling (once, in the running event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        feed = self.services.runtime.store.feed
        while True:
            try:
                head = await anyio.to_thread.run_sync(feed.head)
            except Exception:  # noqa: BLE001 - the store is unreachable for a moment: try again on the next tick
                head = self.head
            if head != self.head:
                self.head = head
                async with self._moved:
                    self._moved.notify_all()
            await asyncio.sleep(HEAD_POLL_SECONDS)

    async def wait_beyond(self, seq: int, timeout: float) -> None:
        """Return once the head is beyond `seq`, or after `timeout` seconds."""
        if self.head > seq:
            return
        async with self._moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait_for(lambda: self.head > seq), timeout)

    async def close(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(frozen=True)
class _Request:
    """A checked subscribe request: where to start, what to keep, and the selection to shape each change with."""

    after: int | None
    classes: frozenset[str] | None
    uid: str | None
    selection: Selection
    field_type: Any
    root: FieldNode
    key: str


def subscription_route(app: FastAPI, services: Any) -> None:
    """Serve graphql-transport-ws on the WebSocket at /graphql."""

    @app.websocket("/graphql")
    async def graphql_ws(websocket: WebSocket) -> None:
        if PROTOCOL not in websocket.scope.get("subprotocols", []):
            await websocket.close(code=4406, reason=f"Subprotocol not acceptable: use {PROTOCOL}")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        await _Connection(websocket, services).serve()


class _Connection:
    """One WebSocket client: its subject, its running subscriptions."""

    def __init__(self, websocket: WebSocket, services: Any) -> None:
        self.ws = websocket
        self.services = services
        self.authorization: str | None = None
        self.expires: float | None = None  # the token's exp (epoch seconds)
        self.subject: Subject | None = None
        self.running: dict[str, asyncio.Task[None]] = {}
        self._send = asyncio.Lock()

    async def serve(self) -> None:
        """Run the protocol until the client leaves or the connection must close."""
        try:
            await self._initialise()
            checker = asyncio.get_running_loop().create_task(self._check_token())
            try:
                while True:
                    await self._handle(await self.ws.receive_json())
            finally:
                checker.cancel()
        except _Closed as closed:
            with contextlib.suppress(Exception):
                await self.ws.close(code=closed.code, reason=closed.reason)
        except (WebSocketDisconnect, RuntimeError):
            return
        except ValueError:  # not JSON
            with contextlib.suppress(Exception):
                await self.ws.close(code=4400, reason="Invalid message received")
        finally:
            for task in self.running.values():
                task.cancel()

    async def _initialise(self) -> None:
        try:
            message = await asyncio.wait_for(self.ws.receive_json(), INIT_TIMEOUT_SECONDS)
        except TimeoutError:
            raise _Closed(4408, "Connection initialisation timeout") from None
        if not isinstance(message, dict) or message.get("type") != "connection_init":
            raise _Closed(4400, "Invalid message received: expected connection_init")
        payload = message.get("payload") or {}
        header = payload.get("Authorization") or payload.get("authorization") if isinstance(payload, dict) else None
        trail, policy = self.services.trail, self.services.policy
        try:
            self.subject = await anyio.to_thread.run_sync(
                self.services.authenticator.authenticate, header if isinstance(header, str) else None
            )
        except ApiError as exc:
            trail.record(
                None,
                "graphql.subscription:connect",
                decision=Decision.DENY,
                policy_version=policy.version,
                detail={"error": exc.extensions.get("code")},
            )
            raise _Closed(4403, "Forbidden") from None
        self.authorization = header
        self.expires = token_expiry(header) if isinstance(header, str) else None
        await self._emit({"type": "connection_ack"})

    async def _check_token(self) -> None:
        """End the connection once its token is no longer valid (expired, or its issuer's key rotated away)."""
        while True:
            wait = (
                TOKEN_CHECK_SECONDS
                if self.expires is None
                else min(TOKEN_CHECK_SECONDS, max(0.0, self.expires - time.time()))
            )
            await asyncio.sleep(wait)
            try:
                if self.expires is not None and time.time() >= self.expires:
                    raise Unauthenticated("the bearer token expired")
                await anyio.to_thread.run_sync(self.services.authenticator.authenticate, self.authorization)
            except ApiError:
                for sub_id in list(self.running):
                    await self._emit(
                        {
                            "type": "error",
                            "id": sub_id,
                            "payload": [
                                {"message": "the bearer token expired", "extensions": {"code": "UNAUTHENTICATED"}}
                            ],
                        }
                    )
                with contextlib.suppress(Exception):
                    await self.ws.close(code=4403, reason="Forbidden: the bearer token expired")
                return

    async def _handle(self, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self._emit({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "subscribe":
            sub_id, payload = message.get("id"), message.get("payload")
            if not isinstance(sub_id, str) or not sub_id or not isinstance(payload, dict):
                raise _Closed(4400, "Invalid message received: subscribe needs an id and a payload")
            if sub_id in self.running:
                raise _Closed(4409, f"Subscriber for {sub_id[:60]} already exists")
            self.running[sub_id] = asyncio.get_running_loop().create_task(self._subscription(sub_id, payload))
        elif kind == "complete":
            task = self.running.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
        elif kind == "connection_init":
            raise _Closed(4429, "Too many initialisation requests")
        else:
            raise _Closed(4400, f"Invalid message received: unknown type {str(kind)[:40]!r}")

    async def _emit(self, message: dict[str, Any]) -> None:
        async with self._send:
            await self.ws.send_json(message)

    async def _subscription(self, sub_id: str, payload: dict[str, Any]) -> None:
        assert self.subject is not None
        subject, services = self.subject, self.services
        policy, trail = services.policy, services.trail
        variables = payload.get("variables") or {}
        try:
            request = self._checked(payload, variables if isinstance(variables, dict) else {})
            if request.root.name.value != "decisions":  # decisions: each alert and proposal is checked as it comes
                policy.require(subject, "operation", "history.read")
        except Exception as exc:  # noqa: BLE001 - every refusal, expected or not, ends this subscription only
            if isinstance(exc, PolicyDenied):
                code = "FORBIDDEN"
            elif isinstance(exc, GraphQLError):
                code = "GRAPHQL_VALIDATION_FAILED"
            else:
                logger.exception("subscribe failed")
                code, exc = "INTERNAL_SERVER_ERROR", GraphQLError("internal error: the subscription could not start")
            trail.record(
                subject,
                "graphql.subscription:changes",
                decision=Decision.DENY,
                policy_version=policy.version,
                variables=variables if isinstance(variables, dict) else None,
                detail={"error": code},
            )
            await self._emit(
                {"type": "error", "id": sub_id, "payload": [{"message": str(exc), "extensions": {"code": code}}]}
            )
            self.running.pop(sub_id, None)
            return
        if request.root.name.value == "decisions":
            from api.graphql.decisions import stream_decisions

            await stream_decisions(services, subject, sub_id, request, self._emit)
            return
        trail.record(
            subject,
            "graphql.subscription:changes",
            decision=Decision.ALLOW,
            policy_version=policy.version,
            variables=variables,
        )
        watcher: FeedWatcher = services.feed_watcher
        watcher.ensure_running()
        store = services.runtime.store
        gate = ChangeGate(policy, subject, store)
        cursor = request.after if request.after is not None else await anyio.to_thread.run_sync(store.feed.head)
        try:
            while True:
                await watcher.wait_beyond(cursor, 1.0)
                if watcher.head <= cursor:
                    continue
                page: list[FeedChange] = await anyio.to_thread.run_sync(store.feed.read, cursor, PAGE)
                if not page:
                    continue
                views = await anyio.to_thread.run_sync(gate.view, page)
                for view in views:
                    change = view.change
                    if request.uid is not None and request.uid not in (change.uid, change.target):
                        continue
                    if request.classes is not None and change.kind == "twin" and change.cls not in request.classes:
                        continue
                    shaped = request.selection.shaped(request.field_type, [request.root], change_values(change))
                    await self._emit({"type": "next", "id": sub_id, "payload": {"data": {request.key: shaped}}})
                cursor = page[-1].seq
        except asyncio.CancelledError:
            return

    def _checked(self, payload: dict[str, Any], variables: dict[str, Any]) -> _Request:
        """The subscribe payload parsed, validated against the schema and read into a request."""
        query = payload.get("query")
        if not isinstance(query, str):
            raise GraphQLError("the subscribe payload needs a `query` string")
        schema = self.services.schema.graphql
        document = parse(query)
        errors = validate(schema, document)
        if errors:
            raise errors[0]
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        name = payload.get("operationName")
        chosen = next((o for o in operations if name is None or (o.name and o.name.value == name)), None)
        if chosen is None or chosen.operation is not OperationType.SUBSCRIPTION:
            raise GraphQLError("the operation is not a subscription")
        roots = chosen.selection_set.selections
        if len(roots) != 1 or not isinstance(roots[0], FieldNode):
            raise GraphQLError("a subscription selects exactly one root field")
        root = roots[0]
        field_def = schema.subscription_type.fields[root.name.value]
        coerced = get_variable_values(schema, chosen.variable_definitions or (), variables)  # None without any
        if isinstance(coerced, list):
            raise coerced[0]
        args = get_argument_values(field_def, root, coerced)
        after = args.get("after")
        if after is not None and (not isinstance(after, int) or after < 0):
            raise GraphQLError(f"`after` must be a sequence number >= 0, got {after!r}")
        names = args.get("classNames")
        classes = None
        if names:
            ontology = self.services.runtime.ontology
            classes = frozenset(
                c.name for n in names for c in ontology.classes.values() if ontology.is_a(c.id, ontology.get(n).id)
            )
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        selection = Selection(SimpleNamespace(schema=schema, fragments=fragments, variable_values=coerced))
        return _Request(
            after,
            classes,
            args.get("uid"),
            selection,
            field_def.type,
            root,
            root.alias.value if root.alias else root.name.value,
        )
