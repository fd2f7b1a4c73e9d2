"""Every API operation appends an audit record; a writer thread batches the appends off the request path.

An event is checked and put in its stored form when it is queued (`prepare`), so a request that cannot be recorded
is refused before it is served. State-changing operations wait until their record is stored (`record_durably`);
reads are acknowledged at once and stored by the writer moments later.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from governance.audit import AuditEntry, AuditEvent, AuditLog, Decision, storable_text
from governance.canonical import canonical_json, text_digest
from governance.errors import AuditError
from governance.identity import Subject

log = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
OPERATION_LIMIT = 500  # characters of an operation label kept (in stored, escaped form)
DETAIL_LIMIT = 4000
_STOP = object()


class AuditUnavailable(AuditError):
    """The audit record of a state-changing request could not be stored: the request is not acknowledged."""


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

    def prepare(
        self,
        subject: Subject | None,
        operation: str,
        *,
        decision: Decision,
        policy_version: str,
        variables: Mapping[str, Any] | None = None,
        rows: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """The checked, stored form of one event for `subject` (None = unauthenticated); AuditError if impossible."""
        return self.log.entry(
            AuditEvent(
                subject=subject.sub if subject else ANONYMOUS,
                roles=tuple(subject.roles) if subject else (),
                operation=_fitted(operation),
                decision=decision,
                variables_digest=_variables_digest(variables or {}),
                policy_version=policy_version,
                rows_returned=rows,
                detail=canonical_json(dict(detail or {}))[:DETAIL_LIMIT],
            )
        )

    @staticmethod
    def finish(
        entry: AuditEntry, *, operation: str, decision: Decision, rows: int | None, detail: Mapping[str, Any]
    ) -> AuditEntry:
        """A prepared entry completed with what the request did (its variables digest and subject kept)."""
        return replace(
            entry,
            operation=storable_text(_fitted(operation)),
            decision=Decision(decision).value,
            rows_returned=rows,
            detail=storable_text(canonical_json(dict(detail))[:DETAIL_LIMIT]),
        )

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
    ) -> Future[None]:
        """Queue one audit event for `subject` (None = an unauthenticated caller); done once it is stored."""
        return self.submit(
            self.prepare(
                subject,
                operation,
                decision=decision,
                policy_version=policy_version,
                variables=variables,
                rows=rows,
                detail=detail,
            )
        )

    def submit(self, entry: AuditEntry) -> Future[None]:
        """Queue a prepared entry; the future completes when it is stored (or fails with AuditUnavailable)."""
        stored: Future[None] = Future()
        self._start()
        self._queue.put((entry, stored))
        return stored

    async def record_durably(self, entry: AuditEntry) -> None:
        """Queue `entry` and wait until it is in the audit log (the acknowledgement of a state change waits on it)."""
        await asyncio.wrap_future(self.submit(entry))

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
            items = [first]
            stop = False
            while len(items) < self.batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                items.append(item)
            self._append(items)
            for _ in range(len(items) + (1 if stop else 0)):
                self._queue.task_done()
            if stop:
                return

    def _append(self, items: list[tuple[AuditEntry, Future[None]]]) -> None:
        """Store a batch; if it fails even after retries, store its entries one by one so that one bad record never
        takes the others down; what is still not stored is counted, logged and reported to its waiter."""
        if self._try_append([entry for entry, _ in items], self.retries):
            _settle(items, None)
            return
        for entry, stored in items if len(items) > 1 else ():
            if self._try_append([entry], 1):
                _settle([(entry, stored)], None)
            else:
                self._lose([(entry, stored)])
        if len(items) == 1:
            self._lose(items)

    def _try_append(self, entries: list[AuditEntry], attempts: int) -> bool:
        for attempt in range(attempts):
            try:
                self.log.append_many(entries)
                return True
            except Exception:  # a locked or unreachable database, a record the database refuses: retry, then report
                if attempt == attempts - 1:
                    log.exception("could not append %d audit record(s)", len(entries))
                    return False
                time.sleep(0.05 * (attempt + 1))
        return False

    def _lose(self, items: list[tuple[AuditEntry, Future[None]]]) -> None:
        self.failed += len(items)
        log.error("could not append %d audit record(s); they are lost", len(items))
        _settle(items, AuditUnavailable(f"the audit log could not store {len(items)} record(s)"))

    def flush(self) -> None:
        """Wait until every queued event is in the audit log."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        """Append what is queued and stop the writer; whatever is still queued then is counted as lost."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
        self._thread = None
        left = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                left.append(item)
        if left:
            self._lose(left)


def _settle(items: Iterable[tuple[AuditEntry, Future[None]]], error: Exception | None) -> None:
    for _, stored in items:
        if stored.done():
            continue
        if error is None:
            stored.set_result(None)
        else:
            stored.set_exception(error)


def _fitted(operation: str) -> str:
    """An operation label cut so that its stored (escaped) form fits the log's column."""
    text = operation[:OPERATION_LIMIT]
    while len(storable_text(text)) > OPERATION_LIMIT:
        text = text[: len(text) * 3 // 4]
    return text


def _variables_digest(variables: Mapping[str, Any]) -> str:
    """The digest of the variables' canonical JSON (anything without a JSON form digested as its repr)."""
    try:
        return text_digest(canonical_json(dict(variables)))
    except (TypeError, ValueError):
        return text_digest(canonical_json({str(k): repr(v) for k, v in variables.items()}))


def root_fields(names: Iterable[str]) -> str:
    """The root fields of an operation as one short text."""
    return ",".join(sorted(set(names)))[:300]
