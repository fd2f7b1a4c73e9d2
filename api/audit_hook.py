"""Every API operation appends an audit record; a writer thread batches the appends off the request path."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from governance.audit import AuditEvent, AuditLog, Decision
from governance.canonical import canonical_json
from governance.identity import Subject

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
_STOP = object()


class AuditTrail:
    """Queues audit events and appends them to the chained audit log in batches (one writer keeps the order)."""

    def __init__(self, log_: AuditLog, batch: int = 500, retries: int = 5) -> None:
        self.log = log_
        self.batch = batch
        self.retries = retries
        self.failed = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(
        self,
        subject: Subject | None,
        operation: str,
        *,
        decision: Decision,
        policy_version: str,
        variables: Mapping[str, Any] | None = None,
        rows: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue one audit event for `subject` (None = an unauthenticated caller)."""
        safe_variables = _digestible(variables or {})
        event = AuditEvent(
            subject=subject.sub if subject else ANONYMOUS,
            roles=tuple(subject.roles) if subject else (),
            operation=operation[:500],
            decision=decision,
            variables=safe_variables,
            policy_version=policy_version,
            rows_returned=rows,
            detail=canonical_json(dict(detail or {}))[:4000],
        )
        self._start()
        self._queue.put(event)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._drain, name="audit-writer", daemon=True)
                    self._thread.start()

    def _drain(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            events = [first]
            stop = False
            while len(events) < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                events.append(item)
            self._append(events)
            for _ in range(len(events) + (1 if stop else 0)):
                self._queue.task_done()
            if stop:
                return

    def _append(self, events: list[AuditEvent]) -> None:
        for attempt in range(self.retries):
            try:
                self.log.append_many(events)
                return
            except Exception:  # a locked or unreachable database: retry, then report loudly
                if attempt == self.retries - 1:
                    self.failed += len(events)
                    log.exception("could not append %d audit record(s); they are lost", len(events))
                    return
                time.sleep(0.05 * (attempt + 1))

    def flush(self) -> None:
        """Wait until every queued event is in the audit log."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        """Append what is queued and stop the writer."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
        self._thread = None


def _digestible(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables in a form the canonical digest accepts (anything exotic becomes its repr)."""
    try:
        canonical_json(dict(variables))
        return dict(variables)
    except (TypeError, ValueError):
        return {str(k): repr(v) for k, v in variables.items()}


def root_fields(names: Iterable[str]) -> str:
    """The root fields of an operation as one short text."""
    return ",".join(sorted(set(names)))[:300]
