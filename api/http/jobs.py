"""Background jobs started over the API (connector syncs, scenario studies): an id now, status and result later."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.errors import api_error
from governance.identity import Subject

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One background job: what it is, who started it, where it is, and its result or error."""

    id: str
    kind: str  # "connector" | "scenario"
    name: str
    subject: str
    operation: str  # the policy operation needed to read it
    status: str = "queued"  # queued | running | completed | failed
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "subject": self.subject,
            "status": self.status,
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "result": self.result,
            "error": self.error,
        }


class JobRunner:
    """Runs jobs on a small thread pool and keeps their state (in this process) for status queries."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(
        self,
        kind: str,
        name: str,
        subject: str,
        operation: str,
        work: Callable[[], dict[str, Any]],
        describe_error: Callable[[Exception], str | None],
    ) -> Job:
        """Queue `work`; its returned dict becomes the job's result. Errors `describe_error` knows are kept as text."""
        job = Job(uuid.uuid4().hex, kind, name, subject, operation)
        with self._lock:
            self._jobs[job.id] = job

        def run() -> None:
            job.status = "running"
            try:
                job.result = work()
                job.status = "completed"
            except Exception as exc:
                message = describe_error(exc)
                if message is None:
                    log.exception("job %s (%s %s) failed", job.id, kind, name)
                    message = "internal error (logged on the server)"
                job.error, job.status = message, "failed"
            finally:
                job.finished_at = datetime.now(UTC)

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if this process started it."""
        with self._lock:
            return self._jobs.get(job_id)

    def get_for(self, job_id: str, caller: Subject) -> Job | None:
        """The job with this id if `caller` started it or is an admin; None otherwise, as for an unknown id (a job's
        status, result and errors are its starter's)."""
        job = self.get(job_id)
        if job is None or (job.subject != caller.sub and "admin" not in caller.roles):
            return None
        return job

    def close(self) -> None:
        """Stop accepting jobs; wait for the running ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def describe_job_error(exc: Exception) -> str | None:
    """The message of an error a job may report to its caller (domain errors), None for internal ones."""
    from connectors.registry import RegistryError
    from connectors.source import SourceError
    from connectors.sync import SyncError
    from simulation.errors import SimulationError

    if isinstance(exc, (RegistryError, SourceError, SyncError, SimulationError)):
        return str(exc)
    error = api_error(exc)
    return error.message if error else None
