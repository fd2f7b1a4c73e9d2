"""REST endpoints for operations: health, readiness, Prometheus metrics, connector runs, scenario studies, audit."""

from __future__ import annotations

import os
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.errors import ApiError
from api.http.audit_hook import AuditUnavailable
from api.http.jobs import describe_job_error
from api.http.metrics import CONTENT_TYPE
from api.http.studies import start_study
from governance.audit import Decision
from governance.errors import LineageError, PolicyDenied, RunNotFound
from governance.identity import Subject
from governance.lineage_export import MAX_RUNS, LineageExport, LineageFormat, export_lineage
from ontology.errors import quoted

_bearer = HTTPBearer(auto_error=False, description="A JWT from the local issuer (`twin token`) or the OIDC issuer.")


class ConnectorRunRequest(BaseModel):
    """How to run a connector."""

    mode: Literal["incremental", "full"] = "incremental"
    dry_run: bool = False
    entities: list[str] | None = None
    allow_deletions: float | None = Field(
        None,
        alias="allowDeletions",
        ge=0,
        le=100,
        description="Percent of an entity's records the run may delete (default: TWIN_SYNC_MAX_DELETE_SHARE).",
    )

    model_config = {"populate_by_name": True}


class ScenarioRunRequest(BaseModel):
    """A study to run: its YAML spec, optional replications and executor."""

    spec: str = Field(description="The study spec as YAML text (see `twin scenario run`).")
    replications: int | None = Field(None, ge=1, le=10_000)
    executor: Literal["serial", "local"] = "serial"


def operations_router(services: Any) -> APIRouter:
    """The REST routes over `services` (an api.http.app.ApiServices)."""
    router = APIRouter()
    runtime = services.runtime

    def audit(
        subject: Subject | None,
        operation: str,
        decision: Decision,
        variables: dict[str, Any] | None = None,
        rows: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        services.trail.record(
            subject,
            operation,
            decision=decision,
            policy_version=services.policy.version,
            variables=variables,
            rows=rows,
            detail=detail,
        )

    async def audit_durably(
        subject: Subject, operation: str, variables: dict[str, Any], detail: dict[str, Any]
    ) -> None:
        """Record a state change and wait until it is stored: it is acknowledged only then (503 otherwise)."""
        entry = services.trail.prepare(
            subject,
            operation,
            decision=Decision.ALLOW,
            policy_version=services.policy.version,
            variables=variables,
            detail=detail,
        )
        try:
            await services.trail.record_durably(entry)
        except AuditUnavailable:
            raise HTTPException(503, detail="the audit log could not record this operation; retry later") from None

    def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Subject:
        header = request.headers.get("authorization")
        try:
            return services.authenticator.authenticate(header)
        except ApiError as exc:
            audit(
                None,
                f"rest:{request.method} {request.url.path}",
                Decision.DENY,
                detail={"error": exc.extensions["code"]},
            )
            raise HTTPException(
                exc.status, detail=exc.message, headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            ) from None

    def allow(subject: Subject, operation: str, label: str, variables: dict[str, Any] | None = None) -> None:
        decision = services.policy.decide(subject, "operation", operation)
        if not decision.allowed:
            audit(subject, label, Decision.DENY, variables, detail={"reason": decision.reason})
            raise HTTPException(403, detail=f"denied: {decision.reason}")

    @router.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", tags=["operations"], summary="Readiness: the graph and the relational store answer")
    async def ready() -> Response:
        def check() -> dict[str, str]:
            result = {"graph": "ok" if runtime.store.backend.ping() else "unreachable"}
            try:
                with runtime.audit.engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                result["database"] = "ok"
            except Exception as exc:
                result["database"] = f"unreachable ({type(exc).__name__})"
            return result

        status = await anyio.to_thread.run_sync(check)
        ok = all(v == "ok" for v in status.values())
        body: dict[str, Any] = {"status": "ready" if ok else "not ready", **status}
        if services.live is not None:  # reported, not gating: a failing source does not make the API unready
            body["connectors"] = {
                s.connector: {
                    "schedule": s.schedule,
                    "leaseHeld": s.held,
                    "running": s.running,
                    "runs": s.runs,
                    "failures": s.failures,
                    "lagSeconds": round(s.lag_seconds(services.live.started_at), 3),
                    "lastSuccess": s.last_success.isoformat() if s.last_success else None,
                    "lastError": s.last_error,
                }
                for s in services.live.status()
            }
        if services.routes is not None and services.routes.routes:
            body["routes"] = {
                s.route: {
                    "endpoint": s.endpoint,
                    "leaseHeld": s.held,
                    "cursor": s.cursor,
                    "delivered": s.delivered,
                    "failures": s.failures,
                    "suspended": s.suspended,
                    "lastError": s.last_error,
                }
                for s in services.routes.status()
            }
        return JSONResponse(body, 200 if ok else 503)

    @router.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    @router.get("/operations/audit/verify", tags=["operations"], summary="Verify the audit chain (audit.verify)")
    async def verify_audit(subject: Subject = Depends(caller)) -> dict[str, Any]:
        label = "rest:audit.verify"
        allow(subject, "audit.verify", label)
        await anyio.to_thread.run_sync(services.trail.flush)
        result = await anyio.to_thread.run_sync(services.trail.log.verify)
        audit(subject, label, Decision.ALLOW, rows=result.records_checked, detail={"ok": result.ok})
        return {
            "ok": result.ok,
            "recordsChecked": result.records_checked,
            "headSeq": result.head_seq,
            "headHash": result.head_hash,
            "firstBadSeq": result.first_bad_seq,
            "tampering": str(result.tampering) if result.tampering else None,
            "message": result.message,
            "checkpointsChecked": result.checkpoints_checked,
            "problems": [{"seq": p.seq, "tampering": str(p.kind), "message": p.message} for p in result.problems],
        }

    @router.get(
        "/operations/lineage/export",
        tags=["operations"],
        summary="Export runs and their provenance as PROV-O (Turtle) or OpenLineage (JSON lines) (lineage.export)",
    )
    async def lineage_export(
        format: LineageFormat,
        run: list[str] | None = Query(None, max_length=MAX_RUNS),
        latest: int = Query(1, ge=1, le=MAX_RUNS),
        subject: Subject = Depends(caller),
    ) -> Response:
        def work() -> LineageExport:
            return export_lineage(
                runtime.lineage, runtime.audit, services.policy, subject, format, tuple(run or ()), latest=latest
            )

        try:
            result = await anyio.to_thread.run_sync(work)
        except PolicyDenied as exc:
            raise HTTPException(403, detail=str(exc)) from None
        except RunNotFound as exc:
            raise HTTPException(404, detail=str(exc)) from None
        except LineageError as exc:
            raise HTTPException(400, detail=str(exc)) from None
        return Response(
            result.text,
            media_type=result.media_type,
            headers={
                "X-Lineage-Runs": str(len(result.run_ids)),
                "X-Lineage-Records": str(result.records),
                "X-Lineage-Values": "included" if result.values_included else "omitted",
            },
        )

    @router.post(
        "/operations/connectors/{name}/runs",
        status_code=202,
        tags=["operations"],
        summary="Start a connector sync (connector.run); returns a job to poll",
    )
    async def run_connector(
        name: str, body: ConnectorRunRequest | None = None, subject: Subject = Depends(caller)
    ) -> dict[str, Any]:
        body = body or ConnectorRunRequest()
        variables = {"name": name, **body.model_dump()}
        label = f"rest:connector.run:{name}"[:200]
        allow(subject, "connector.run", label, variables)
        from connectors.registry import ConnectorRegistry, RegistryError
        from connectors.service import run_connector

        try:
            registry = ConnectorRegistry.load(
                runtime.ontology, data_dir=runtime.settings.data_dir, secrets=dict(os.environ)
            )
            connector = registry.connector(name)
        except RegistryError as exc:
            audit(subject, label, Decision.ALLOW, variables, detail={"error": "unknown connector"})
            raise HTTPException(404, detail=str(exc)) from None

        def work() -> dict[str, Any]:
            engine = runtime.sync_engine(f"api:{subject.sub}")
            share = None if body.allow_deletions is None else body.allow_deletions / 100
            report = run_connector(
                engine,
                connector,
                subject=subject,
                policy=services.policy,
                audit=runtime.audit,
                mode=body.mode,
                dry_run=body.dry_run,
                entities=body.entities,
                allow_deletions=share,
            )
            return {"runId": report.run_id, "status": report.status, "counts": report.counts, "error": report.error}

        job = services.jobs.start("connector", name, subject.sub, "connector.run", work, describe_job_error)
        await audit_durably(subject, label, variables, {"job": job.id})
        return job.to_dict()

    @router.post(
        "/operations/scenarios",
        status_code=202,
        tags=["operations"],
        summary="Start a scenario study (scenario.run); returns a job to poll",
    )
    async def run_scenario(body: ScenarioRunRequest, subject: Subject = Depends(caller)) -> dict[str, Any]:
        variables = body.model_dump()
        label = "rest:scenario.run"
        allow(subject, "scenario.run", label, variables)
        from simulation.errors import SimulationError

        try:
            job = await anyio.to_thread.run_sync(  # the spec's YAML is parsed off the event loop
                lambda: start_study(services, subject, body.spec, body.replications, body.executor)
            )
        except SimulationError as exc:
            audit(subject, label, Decision.ALLOW, variables, detail={"error": "invalid spec"})
            raise HTTPException(422, detail=str(exc)) from None
        await audit_durably(subject, label, variables, {"job": job.id})
        return job.to_dict()

    @router.get("/operations/jobs/{job_id}", tags=["operations"], summary="Status and result of a started job")
    async def job_status(job_id: str, subject: Subject = Depends(caller)) -> dict[str, Any]:
        job = services.jobs.get_for(job_id, subject)
        label = f"rest:job.read:{job_id}"[:200]
        if job is None:
            audit(subject, label, Decision.ALLOW, detail={"error": "unknown job"})
            raise HTTPException(404, detail=f"no job {quoted(job_id)} on this server")
        allow(subject, job.operation, label)
        audit(subject, label, Decision.ALLOW)
        return job.to_dict()

    return router
