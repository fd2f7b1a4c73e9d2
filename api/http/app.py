"""The FastAPI application: the governed GraphQL endpoint (POST /graphql, GraphiQL on GET) and the REST operations."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from strawberry.http.ides import get_graphql_ide_html

from api.context import RequestContext
from api.errors import ApiError
from api.graphql.builder import TwinSchema, build_schema
from api.graphql.changes import RESOLVERS as CHANGE_RESOLVERS
from api.graphql.decisions import MUTATION_RESOLVERS as DECISION_MUTATIONS
from api.graphql.decisions import QUERY_RESOLVERS as DECISION_QUERIES
from api.graphql.forecasts import QUERY_RESOLVERS as FORECAST_QUERIES
from api.graphql.mutations import RESOLVERS as MUTATION_RESOLVERS
from api.graphql.queries import RootQueries
from api.graphql.records import RESOLVERS as RECORD_RESOLVERS
from api.graphql.scenarios import MUTATION_RESOLVERS as SCENARIO_MUTATIONS
from api.graphql.scenarios import QUERY_RESOLVERS as SCENARIO_QUERIES
from api.http.audit_hook import AuditTrail, AuditUnavailable, root_fields
from api.http.auth import Authenticator
from api.http.jobs import JobRunner
from api.http.json_codec import JsonResponse, loads
from api.http.limits import BodyLimit, describe_unstorable, limit_extensions, unstorable_input
from api.http.metrics import ApiMetrics, RequestMetrics
from api.http.read_gate import ReadGate
from api.runtime import Runtime
from governance.audit import Decision
from governance.errors import AuditError

if TYPE_CHECKING:
    from connectors.route_delivery import RouteRuntime
    from connectors.sync_runtime import SyncRuntime
    from governance.decisions.runtime import DecisionRuntime
    from simulation.forecast.retraining import RetrainRuntime

API_VERSION = "1.0.0"


@dataclass
class ApiServices:
    """What the endpoints share: runtime (ontology, store, policy, audit, lineage), schema, auth, audit trail."""

    runtime: Runtime
    schema: TwinSchema
    authenticator: Authenticator
    trail: AuditTrail
    reads: ReadGate
    metrics: ApiMetrics
    jobs: JobRunner
    live: SyncRuntime | None = None  # the scheduled syncs, when this app runs them
    routes: RouteRuntime | None = None  # the event routes' deliveries, when this app runs them
    decisions: DecisionRuntime | None = None  # the automations of automations.yaml, when this app runs them
    retraining: RetrainRuntime | None = None  # forecast retraining of series.yaml, when this app runs it
    feed_watcher: Any = None  # wakes the GraphQL subscriptions when the change feed moves

    @property
    def policy(self) -> Any:
        """The access policy."""
        return self.runtime.policy


def create_app(runtime: Runtime | None = None, *, live: bool | None = None) -> FastAPI:
    """The API over `runtime` (default: one opened from the settings, closed when the app stops); with `live` (default:
    TWIN_RUNTIME_ENABLED for an app that opens its own runtime, as `twin serve` does) it also runs the scheduled
    connector syncs while it serves (on the schedules of connectors.yaml and the runtime's `schedule_every`)."""
    owned = runtime is None
    runtime = runtime or Runtime()
    settings = runtime.settings
    schema = build_schema(
        runtime.ontology,
        limit_extensions(settings.api_max_depth, settings.api_max_tokens, settings.api_max_aliases),
        renames=_renames(runtime),
    )
    _bind(schema)
    runtime.store  # noqa: B018 - open the graph now, not on the first request
    try:
        services = ApiServices(
            runtime=runtime,
            schema=schema,
            authenticator=Authenticator.from_settings(settings),
            trail=AuditTrail(runtime.audit),
            metrics=ApiMetrics(),
            jobs=JobRunner(),
            reads=ReadGate(settings.api_reads_per_caller),
        )
    except BaseException:
        if owned:
            runtime.close()  # the graph opened above must not outlive an app that never starts
        raise
    services.metrics.watch_audit(lambda: services.trail.failed)
    if settings.runtime_enabled if live is None and owned else bool(live):
        services.live = runtime.sync_runtime()
        services.routes = runtime.route_runtime(holder=services.live.holder)
        services.decisions = runtime.decision_runtime(holder=services.live.holder)
        services.retraining = runtime.retrain_runtime(holder=services.live.holder)
        services.metrics.watch_connectors(services.live)
        services.metrics.watch_routes(services.routes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The ontology, schema and policy live as long as the app: keeping their ~200k objects out of the garbage
        # collector's full passes removes ~100 ms pauses that stalled every request in flight.
        gc.freeze()
        for background in (services.live, services.routes, services.decisions, services.retraining):
            if background is not None:
                background.start()
        yield
        for background in (services.live, services.routes, services.decisions, services.retraining):
            if background is not None:
                background.stop()
        if services.feed_watcher is not None:
            await services.feed_watcher.close()
        services.jobs.close()
        services.trail.close()
        if owned:
            runtime.close()

    app = FastAPI(
        title="Enterprise Twin API",
        version=API_VERSION,
        lifespan=lifespan,
        description="Governed GraphQL over the twin graph (POST /graphql) and REST operations.",
    )
    app.state.services = services
    _json_error_handlers(app)
    from api.console import ConsoleSignOn, mount_console
    from api.http.operations import operations_router

    app.include_router(operations_router(services))
    _graphql_routes(app, services, settings.api_graphiql, settings.api_query_timeout_ms)
    from api.graphql.subscriptions import FeedWatcher, subscription_route

    services.feed_watcher = FeedWatcher(services)
    subscription_route(app, services)
    mount_console(app, sign_on=ConsoleSignOn.from_settings(settings))

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=services.metrics)
    if settings.hsts_max_age:
        from api.http.transport_security import StrictTransport

        app.add_middleware(StrictTransport, max_age=settings.hsts_max_age)

    return app


def _json_error_handlers(app: FastAPI) -> None:
    """HTTP and validation errors rendered by `JsonResponse`, which writes any str (an echoed lone surrogate as a
    \\u escape) where Starlette's JSONResponse failed with a 500."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return JsonResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        return JsonResponse({"detail": jsonable_encoder(exc.errors())}, 422)


def _renames(runtime: Runtime) -> dict[str, dict[str, str]]:
    """Record the running ontology as a version (once per digest), and return the former property names the active
    version keeps for one version (its migration renamed them) when the running ontology is that version."""
    from graph.ontology_versions import OntologyVersions

    versions = OntologyVersions(runtime.settings.resolved_database_url)
    running = versions.record(runtime.ontology, "api", [str(p) for p in runtime.settings.ontology_paths])
    active = versions.active()
    if active is None or active.digest != running.digest:
        return {}
    return active.renames


def _bind(schema: TwinSchema) -> None:
    roots = RootQueries(schema.plan, schema.compiled)
    queries = {**roots.resolvers, **RECORD_RESOLVERS, **CHANGE_RESOLVERS, **SCENARIO_QUERIES, **FORECAST_QUERIES}
    for name, resolver in queries.items():
        schema.bind("Query", name, resolver)
    for name, resolver in {**MUTATION_RESOLVERS, **SCENARIO_MUTATIONS}.items():
        schema.bind("Mutation", name, resolver)
    for name, resolver in DECISION_QUERIES.items():
        schema.bind("Query", name, resolver)
    for name, resolver in DECISION_MUTATIONS.items():
        schema.bind("Mutation", name, resolver)


@lru_cache(maxsize=512)
def _operation_kind(query: str, operation_name: str | None) -> tuple[str, str]:
    """('query' | 'mutation' | 'invalid', operation name or '-') of the operation a request runs; cached."""
    try:
        document = parse(query)
    except GraphQLError:
        return "invalid", operation_name or "-"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None and len(operations) > 1:
        return "invalid", "-"  # GraphQL over HTTP: several operations need an operationName
    chosen = next(
        (o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)), None
    )
    if chosen is None:
        return "invalid", operation_name or "-"
    return chosen.operation.value, chosen.name.value if chosen.name else "-"


@lru_cache(maxsize=512)
def _unrunnable_operation(query: str, operation_name: str | None) -> str | None:
    """Why a document that parses has no operation to run (several and no operationName, or none of that name);
    None when it does not parse (the executor reports the syntax error)."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    names = [d.name.value if d.name else "" for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if not names:
        return "the document holds no operation"
    if operation_name is None:
        return "the document holds several operations: name the one to run in `operationName`"
    return f"operationName {operation_name[:60]!r} names no operation of the document"


def _error_body(message: str, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, **({"extensions": extensions} if extensions else {})}]}


def _graphql_routes(app: FastAPI, services: ApiServices, graphiql: bool, timeout_ms: int) -> None:
    @app.get("/graphql", response_class=HTMLResponse, include_in_schema=False)
    async def ide() -> Response:
        if not graphiql:
            return JSONResponse(_error_body("GraphiQL is disabled; POST GraphQL requests to /graphql"), 404)
        return HTMLResponse(get_graphql_ide_html(graphql_ide="graphiql"))

    @app.post("/graphql", summary="Run a GraphQL operation (bearer token required)")
    async def graphql(request: Request) -> Response:
        policy = services.policy
        try:
            body = loads(await request.body())
        except ValueError:
            return JSONResponse(
                _error_body(
                    'the request body must be JSON: {"query": ..., "variables": {...}}', {"code": "BAD_REQUEST"}
                ),
                400,
            )
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return JSONResponse(_error_body("the request needs a `query` string", {"code": "BAD_REQUEST"}), 400)
        query: str = body["query"]
        variables = body.get("variables") or {}
        operation_name = body.get("operationName")
        if not isinstance(variables, dict) or not (operation_name is None or isinstance(operation_name, str)):
            return JSONResponse(
                _error_body("`variables` must be an object and `operationName` a string", {"code": "BAD_REQUEST"}), 400
            )
        kind, name = _operation_kind(query, operation_name)
        label = f"graphql.{kind}:{name}"
        unrunnable = _unrunnable_operation(query, operation_name) if kind == "invalid" else None
        query_digest = hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()  # any str, surrogates too
        detail: dict[str, Any] = {"query_sha256": query_digest}
        try:
            subject = services.authenticator.authenticate(request.headers.get("authorization"))
        except ApiError as exc:
            services.trail.record(
                None,
                label,
                decision=Decision.DENY,
                policy_version=policy.version,
                variables=variables,
                detail={**detail, "error": exc.extensions.get("code")},
            )
            services.metrics.operations.labels("deny").inc()
            return JSONResponse(
                _error_body(exc.message, exc.extensions),
                exc.status,
                headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
            )
        try:  # fail closed: a request whose audit record cannot be made is not run
            entry = services.trail.prepare(
                subject,
                label,
                decision=Decision.ALLOW,
                policy_version=policy.version,
                variables=variables,
                detail=detail,
            )
        except AuditError as exc:
            return JSONResponse(
                _error_body(f"the request cannot be audited, so it is not run: {exc}", {"code": "BAD_REQUEST"}), 400
            )
        unstorable = unstorable_input(query, variables)
        if unstorable is not None or unrunnable is not None:
            message = describe_unstorable(unstorable) if unstorable is not None else str(unrunnable)
            services.trail.submit(
                services.trail.finish(
                    entry,
                    operation=label,
                    decision=Decision.DENY,
                    rows=None,
                    detail={**detail, "error": "BAD_USER_INPUT"},
                )
            )
            services.metrics.operations.labels("deny").inc()
            return JSONResponse(_error_body(message, {"code": "BAD_USER_INPUT"}), 400)
        ctx = RequestContext(
            subject=subject,
            policy=policy,
            scope=policy.read_scope(subject),
            store=services.runtime.store,
            services=services,
            timeout_ms=timeout_ms,
            max_filter_depth=services.runtime.settings.api_max_filter_depth,
            max_filter_conditions=services.runtime.settings.api_max_filter_conditions,
        )
        result = await services.schema.strawberry.execute(
            query, variable_values=variables, context_value=ctx, operation_name=operation_name
        )
        errors = [e.formatted for e in result.errors or []]
        extensions: dict[str, Any] = {"policyVersion": policy.version, "masked": ctx.masked_report()}
        if ctx.privacy:
            extensions["privacy"] = ctx.privacy
        decision = Decision.DENY if ctx.denied else Decision.ALLOW
        entry = services.trail.finish(
            entry,
            operation=f"{label}:{root_fields(ctx.fields)}",
            decision=decision,
            rows=ctx.rows,
            detail={
                **detail,
                "errors": len(errors),
                "round_trips": ctx.round_trips,
                **({"privacy": ctx.privacy} if ctx.privacy else {}),
            },
        )
        if kind == "mutation":  # a state change is acknowledged only once its record is stored
            try:
                await services.trail.record_durably(entry)
            except AuditUnavailable:
                return JSONResponse(
                    _error_body(
                        "the audit log could not record this mutation, so it is not acknowledged; retry later",
                        {"code": "AUDIT_UNAVAILABLE"},
                    ),
                    503,
                )
        else:
            services.trail.submit(entry)
        services.metrics.operations.labels(decision.value).inc()
        services.metrics.round_trips.inc(ctx.round_trips)
        services.metrics.rows.inc(ctx.rows)
        payload: dict[str, Any] = {"data": result.data}
        if errors:
            payload["errors"] = errors
        payload["extensions"] = extensions
        request_error = result.data is None and bool(errors) and not any(e.get("path") for e in errors)
        return JsonResponse(payload, 400 if request_error else 200)

    # The same endpoint as a plain Starlette route ahead of FastAPI's: FastAPI's per-request work for a route
    # (dependency solving, its request wrapper) is skipped on the hot path, while /docs still describes the route.
    app.router.routes.insert(0, _PlainRoute("/graphql", graphql, methods=["POST"]))


class _PlainRoute(Route):
    """A Starlette route that names itself in the scope, as FastAPI's routes do (the request metrics label by it)."""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve the request with this route in its scope."""
        scope["route"] = self
        await super().handle(scope, receive, send)
