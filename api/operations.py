"""REST endpoints for operations: health, readiness, Prometheus metrics, connector runs, scenario studies, audit."""

from __future__ import annotations

import os
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.errors import ApiError
from api.jobs import describe_job_error
from api.scenarios import start_study
from api.metrics import CONTENT_TYPE
from governance.audit import Decision
from governance.identity import Subject

_bearer = HTTPBearer(auto_error=False, description="A JWT from the local issuer (`twin token`) or the OIDC issuer.")


class ConnectorRunRequest(BaseModel):
    """How to run a connector."""

    mode: Literal["incremental", "full"] = "incremental"
    dry_run: bool = False
    entities: list[str] | None = None
    allow_deletions: float | None = Field(
        None, alias="allowDeletions", ge=0, le=100,
        description="Percent of an entity's records the run may delete (default: TWIN_SYNC_MAX_DELETE_SHARE).")

    model_config = {"populate_by_name": True}


class ScenarioRunRequest(BaseModel):
    """A study to run: its YAML spec, optional replications and executor."""

    spec: str = Field(description="The study spec as YAML text (see `twin scenario run`).")
    replications: int | None = Field(None, ge=1, le=10_000)
    executor: Literal["serial", "local"] = "serial"


def operations_router(services: Any) -> APIRouter:
    """The REST routes over `services` (an api.app.ApiServices)."""
    router = APIRouter()
    runtime = services.runtime

    def audit(subject: Subject | None, operation: str, decision: Decision, variables: dict[str, Any] | None = None,
              rows: int | None = None, detail: dict[str, Any] | None = None) -> None:
        services.trail.record(subject, operation, decision=decision, policy_version=services.policy.version,
                              variables=variables, rows=rows, detail=detail)

    def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Subject:
        header = request.headers.get("authorization")
        try:
            return services.authenticator.authenticate(header)
        except ApiError as exc:
            audit(None, f"rest:{request.method} {request.url.path}", Decision.DENY, detail={"error": exc.extensions["code"]})
            raise HTTPException(exc.status, detail=exc.message,
                                headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None) from None

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
        return JSONResponse({"status": "ready" if ok else "not ready", **status}, 200 if ok else 503)

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
            "ok": result.ok, "recordsChecked": result.records_checked, "headSeq": result.head_seq,
            "headHash": result.head_hash, "firstBadSeq": result.first_bad_seq,
            "tampering": str(result.tampering) if result.tampering else None, "message": result.message,
            "checkpointsChecked": result.checkpoints_checked,
        }

    @router.post("/operations/connectors/{name}/runs", status_code=202, tags=["operations"],
                 summary="Start a connector sync (connector.run); returns a job to poll")
    async def run_connector(name: str, body: ConnectorRunRequest | None = None,
                            subject: Subject = Depends(caller)) -> dict[str, Any]:
        body = body or ConnectorRunRequest()
        variables = {"name": name, **body.model_dump()}
        label = f"rest:connector.run:{name}"[:200]
        allow(subject, "connector.run", label, variables)
        from connectors.registry import ConnectorRegistry, RegistryError
        from connectors.limits import SizeLimits
        from connectors.sync import SyncEngine

        try:
            registry = ConnectorRegistry.load(runtime.ontology, data_dir=runtime.settings.data_dir,
                                              secrets=dict(os.environ))
            connector = registry.connector(name)
        except RegistryError as exc:
            audit(subject, label, Decision.ALLOW, variables, detail={"error": "unknown connector"})
            raise HTTPException(404, detail=str(exc)) from None

        def work() -> dict[str, Any]:
            settings = runtime.settings
            engine = SyncEngine(runtime.store, settings.resolved_database_url, actor=f"api:{subject.sub}",
                                limits=SizeLimits(settings.sync_max_value_bytes, settings.sync_max_row_bytes,
                                                  settings.sync_max_file_bytes),
                                deletion_limit=settings.sync_max_delete_share,
                                deletion_floor=settings.sync_delete_floor)
            share = None if body.allow_deletions is None else body.allow_deletions / 100
            report = engine.run(connector, body.mode, dry_run=body.dry_run, entities=body.entities,
                                allow_deletions=share)
            return {"runId": report.run_id, "status": report.status, "counts": report.counts, "error": report.error}

        job = services.jobs.start("connector", name, subject.sub, "connector.run", work, describe_job_error)
        audit(subject, label, Decision.ALLOW, variables, detail={"job": job.id})
        return job.to_dict()

    @router.post("/operations/scenarios", status_code=202, tags=["operations"],
                 summary="Start a scenario study (scenario.run); returns a job to poll")
    async def run_scenario(body: ScenarioRunRequest, subject: Subject = Depends(caller)) -> dict[str, Any]:
        variables = body.model_dump()
        label = "rest:scenario.run"
        allow(subject, "scenario.run", label, variables)
        from simulation.errors import SimulationError

        try:
            job = start_study(services, subject, body.spec, body.replications, body.executor)
        except SimulationError as exc:
            audit(subject, label, Decision.ALLOW, variables, detail={"error": "invalid spec"})
            raise HTTPException(422, detail=str(exc)) from None
        audit(subject, label, Decision.ALLOW, variables, detail={"job": job.id})
        return job.to_dict()

    @router.get("/operations/jobs/{job_id}", tags=["operations"], summary="Status and result of a started job")
    async def job_status(job_id: str, subject: Subject = Depends(caller)) -> dict[str, Any]:
        job = services.jobs.get(job_id)
        label = f"rest:job.read:{job_id}"[:200]
        if job is None:
            audit(subject, label, Decision.ALLOW, detail={"error": "unknown job"})
            raise HTTPException(404, detail=f"no job {job_id!r} on this server")
        allow(subject, job.operation, label)
        audit(subject, label, Decision.ALLOW)
        return job.to_dict()

    return router
