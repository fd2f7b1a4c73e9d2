"""The tamper-evident audit log: an append-only, SHA-256-chained table with signed Ed25519 checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from governance.canonical import canonical_json, parse_utc_text, sha256_digest, utc_text
from governance.errors import AuditError, AuditTamperDetected
from governance.identity import Subject
from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender

GENESIS_HASH = "0" * 64
_HASH_FORMAT = 1
_Seq = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

audit_log_table = Table(
    "audit_log",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=False),
    Column("time", String(32), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("roles", Text, nullable=False),
    Column("operation", String(512), nullable=False),
    Column("variables_digest", String(64), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("policy_version", String(128), nullable=False),
    Column("rows_returned", BigInteger, nullable=True),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_time", "time"),
    Index("ix_audit_log_subject", "subject"),
)

audit_head_table = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", _Seq, nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_checkpoint_table = Table(
    "audit_checkpoint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", _Seq, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("time", String(32), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
)


class Decision(StrEnum):
    """The outcome of an audited operation."""

    ALLOW = "allow"
    DENY = "deny"


class TamperKind(StrEnum):
    """What verification found wrong with the chain."""

    ALTERED = "altered"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    REWRITTEN = "rewritten"
    BAD_CHECKPOINT = "bad_checkpoint"


_UNSTORABLE = re.compile("[\\\\\x00\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(\\|u[0-9a-f]{4})")
_TEXT_LIMITS = {"subject": 512, "operation": 512, "policy_version": 128}


def storable_text(text: str) -> str:
    """The stored form of an audit text: backslash doubled, NUL and lone surrogates as \\u and four hex digits
    (one-to-one).

    Every database stores the result byte for byte (valid UTF-8, no NUL), so a record holds exactly what was hashed
    whatever a caller sent; `original_text` reverses it.
    """
    return _UNSTORABLE.sub(lambda m: "\\\\" if m.group() == "\\" else f"\\u{ord(m.group()):04x}", text)


def original_text(stored: str) -> str:
    """The text a stored audit field was made from (the inverse of `storable_text`)."""
    return _ESCAPE.sub(lambda m: "\\" if m.group(1) == "\\" else chr(int(m.group(1)[1:], 16)), stored)


@dataclass(frozen=True)
class AuditEvent:
    """Something to audit: who did which operation, with what (digested) variables, and the decision."""

    subject: str
    operation: str
    decision: Decision | str
    roles: Collection[str] = ()
    variables: Mapping[str, Any] | None = None
    policy_version: str = ""
    rows_returned: int | None = None
    detail: str = ""
    time: datetime | None = None
    variables_digest: str | None = None  # given instead of `variables` by callers that digested them already

    @classmethod
    def for_subject(cls, subject: Subject, operation: str, decision: Decision | str, **fields: Any) -> AuditEvent:
        """An event for an authenticated `Subject` (its id and roles recorded)."""
        return cls(subject=subject.sub, roles=subject.roles, operation=operation, decision=decision, **fields)

    @classmethod
    def of_run(
        cls,
        subject: Subject,
        operation: str,
        policy_version: str,
        variables: Mapping[str, object],
        rows: int | None,
        outcome: Mapping[str, object],
    ) -> AuditEvent:
        """The record of an allowed run (a sync, a study): who ran what, and how it ended (`outcome` as JSON)."""
        return cls.for_subject(
            subject,
            operation,
            Decision.ALLOW,
            variables=variables,
            policy_version=policy_version,
            rows_returned=rows,
            detail=json.dumps(outcome, sort_keys=True, default=str),
        )


@dataclass(frozen=True)
class AuditEntry:
    """An event in its stored form (texts escaped, variables digested), checked and ready to chain."""

    time: str
    subject: str
    roles: str
    operation: str
    variables_digest: str
    decision: str
    policy_version: str
    rows_returned: int | None
    detail: str


@dataclass(frozen=True)
class AuditRecord:
    """One stored, chained audit record (text fields in their stored form: see `original_text`)."""

    seq: int
    time: datetime
    subject: str
    roles: tuple[str, ...]
    operation: str
    variables_digest: str
    decision: Decision
    policy_version: str
    rows_returned: int | None
    detail: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready fields (the export form)."""
        return {
            "seq": self.seq,
            "time": utc_text(self.time),
            "subject": self.subject,
            "roles": list(self.roles),
            "operation": self.operation,
            "variables_digest": self.variables_digest,
            "decision": str(self.decision),
            "policy_version": self.policy_version,
            "rows_returned": self.rows_returned,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def _stored_hash_holds(row: Mapping[str, Any]) -> bool:
    """Whether a stored row's hash matches its content (False also when the content cannot be encoded)."""
    try:
        return bool(_record_hash(row) == row["hash"])
    except (TypeError, ValueError):
        return False


def _record_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical encoding of a record's fields and its predecessor's hash."""
    document = {
        "v": _HASH_FORMAT,
        "seq": int(row["seq"]),
        "time": row["time"],
        "subject": row["subject"],
        "roles": row["roles"],
        "operation": row["operation"],
        "variables_digest": row["variables_digest"],
        "decision": row["decision"],
        "policy_version": row["policy_version"],
        "rows_returned": None if row["rows_returned"] is None else int(row["rows_returned"]),
        "detail": row["detail"],
        "prev_hash": row["prev_hash"],
    }
    return sha256_digest(document)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement 'the chain had `seq` records ending in `head_hash` at `time`', kept off the box."""

    seq: int
    head_hash: str
    time: datetime
    key_id: str
    public_key: str
    signature: str

    @staticmethod
    def payload(seq: int, head_hash: str, time: datetime, key_id: str) -> bytes:
        """The exact bytes signed for a checkpoint."""
        document = {"v": _HASH_FORMAT, "seq": seq, "head_hash": head_hash, "time": utc_text(time), "key_id": key_id}
        return canonical_json(document).encode("utf-8")

    def verify_signature(self, trusted_key: Ed25519PublicKey | None = None) -> bool:
        """Whether the signature holds, against `trusted_key` (recommended) or else the embedded public key."""
        try:
            key = trusted_key or Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public_key))
            if trusted_key is not None and _public_hex(trusted_key) != self.public_key:
                return False
            key.verify(base64.b64decode(self.signature), self.payload(self.seq, self.head_hash, self.time, self.key_id))
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint as JSON-ready fields."""
        return {
            "seq": self.seq,
            "head_hash": self.head_hash,
            "time": utc_text(self.time),
            "key_id": self.key_id,
            "public_key": self.public_key,
            "signature": self.signature,
        }

    def to_json(self) -> str:
        """The checkpoint as a JSON document to store off the box."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> Checkpoint:
        """A checkpoint read back from its JSON form."""
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
            return cls(
                seq=int(data["seq"]),
                head_hash=str(data["head_hash"]),
                time=parse_utc_text(data["time"]),
                key_id=str(data["key_id"]),
                public_key=str(data["public_key"]),
                signature=str(data["signature"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise AuditError(f"checkpoint JSON is malformed: {type(error).__name__}: {error}") from None


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass(frozen=True)
class AuditProblem:
    """One broken place in the chain: where it starts, what kind of tampering, in words."""

    seq: int
    kind: TamperKind
    message: str


@dataclass(frozen=True)
class AuditVerification:
    """The result of verifying the chain: ok, or every broken place (`problems`), the first also as
    `first_bad_seq`/`tampering`/`message`."""

    ok: bool
    records_checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    tampering: TamperKind | None = None
    message: str = "audit chain verifies"
    checkpoints_checked: int = 0
    problems: tuple[AuditProblem, ...] = ()

    def raise_if_tampered(self) -> None:
        """Raise AuditTamperDetected unless the chain verified."""
        if not self.ok:
            raise AuditTamperDetected(self.message, seq=self.first_bad_seq, kind=str(self.tampering))


@dataclass
class _Walk:
    """State of a verification walk."""

    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    hashes_at: dict[int, str] = field(default_factory=dict)
    intact: bool = True


_COLUMNS = [c.name for c in audit_log_table.columns]
_DIAGNOSED_PROBLEMS = 1000  # a wholesale rewrite is summarised after this many
_REPORTED_PROBLEMS = 20  # broken places spelled out in the one-line message


@dataclass(frozen=True)
class _SqliteStatements:
    """The compiled SQL of the SQLite append path."""

    head: str
    move_head: str


class AuditLog:
    """The append-only audit log of one relational store (sqlite:/// or postgresql:// URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = relational_engine(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._statements: _SqliteStatements | None = None
        self._appender = RowAppender(self.engine, audit_log_table, _COLUMNS)
        self._create_schema()

    def _create_schema(self) -> None:
        """Create the tables and the head row, tolerating another process doing the same at the same time."""
        create_tables(self.engine, metadata)
        with suppress(IntegrityError), self.engine.begin() as conn:  # another process may insert the same row first
            if conn.execute(select(audit_head_table.c.id)).first() is None:
                conn.execute(insert(audit_head_table).values(id=1, seq=0, hash=GENESIS_HASH))

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read transaction that sees one consistent state of the log while appends go on."""
        if self._sqlite:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("BEGIN")
                try:
                    yield conn
                finally:
                    conn.exec_driver_sql("ROLLBACK")
        else:
            with (
                self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
                conn.begin(),
            ):
                yield conn

    def _head(self, conn: Connection, *, lock: bool) -> tuple[int, str]:
        query = select(audit_head_table.c.seq, audit_head_table.c.hash).where(audit_head_table.c.id == 1)
        if lock and not self._sqlite:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise AuditTamperDetected("the audit head row is missing", seq=None, kind=str(TamperKind.DELETED))
        return int(row[0]), str(row[1])

    @staticmethod
    def entry(event: AuditEvent | AuditEntry, now: datetime | None = None) -> AuditEntry:
        """`event` checked and in its stored form; AuditError names what cannot be recorded."""
        if isinstance(event, AuditEntry):
            return event
        try:
            decision = Decision(event.decision)
        except ValueError:
            raise AuditError(f"audit decision {str(event.decision)[:40]!r} is not one of allow/deny") from None
        if not event.subject or not event.operation:
            raise AuditError("an audit event needs a subject and an operation")
        try:
            entry = AuditEntry(
                time=utc_text(event.time or now or datetime.now(UTC)),
                subject=storable_text(event.subject),
                roles=storable_text(canonical_json(sorted(set(event.roles)))),
                operation=storable_text(event.operation),
                variables_digest=event.variables_digest or sha256_digest(dict(event.variables or {})),
                decision=decision.value,
                policy_version=storable_text(event.policy_version),
                rows_returned=None if event.rows_returned is None else int(event.rows_returned),
                detail=storable_text(event.detail),
            )
        except (TypeError, ValueError) as error:
            raise AuditError(f"audit event cannot be recorded: {str(error)[:200]}") from None
        for name, limit in _TEXT_LIMITS.items():
            if len(getattr(entry, name)) > limit:
                raise AuditError(
                    f"audit {name} is longer than {limit} characters once escaped: {getattr(entry, name)[:40]!r}..."
                )
        return entry

    @classmethod
    def _row(cls, event: AuditEvent | AuditEntry, seq: int, prev_hash: str, now: datetime) -> dict[str, Any]:
        entry = cls.entry(event, now)
        row = {
            "seq": seq,
            "time": entry.time,
            "subject": entry.subject,
            "roles": entry.roles,
            "operation": entry.operation,
            "variables_digest": entry.variables_digest,
            "decision": entry.decision,
            "policy_version": entry.policy_version,
            "rows_returned": entry.rows_returned,
            "detail": entry.detail,
            "prev_hash": prev_hash,
        }
        row["hash"] = _record_hash(row)
        return row

    def append(self, event: AuditEvent | AuditEntry) -> AuditRecord:
        """Append one event to the chain and return the stored record."""
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[AuditEvent | AuditEntry]) -> list[AuditRecord]:
        """Append events in order in one transaction (the fast path for batches)."""
        if not events:
            return []
        now = datetime.now(UTC)
        try:
            if self._sqlite:
                rows = self._append_sqlite(events, now)
            else:
                with self.engine.begin() as conn:  # the head row lock (FOR UPDATE) serialises writers
                    seq, prev_hash = self._head(conn, lock=True)
                    rows = self._chain(events, seq, prev_hash, now)
                    conn.execute(insert(audit_log_table), rows)
                    conn.execute(
                        update(audit_head_table)
                        .where(audit_head_table.c.id == 1)
                        .values(seq=rows[-1]["seq"], hash=rows[-1]["hash"])
                    )
        except DBAPIError as error:
            raise AuditError(f"audit append to {self._safe_url()} failed: {type(error.orig).__name__}") from error
        return [_to_record(row) for row in rows]

    def _chain(
        self, events: Sequence[AuditEvent | AuditEntry], seq: int, prev_hash: str, now: datetime
    ) -> list[dict[str, Any]]:
        """The stored rows for `events`, numbered and chained after (`seq`, `prev_hash`)."""
        rows = []
        for event in events:
            seq += 1
            row = self._row(event, seq, prev_hash, now)
            prev_hash = row["hash"]
            rows.append(row)
        return rows

    def _append_sqlite(self, events: Sequence[AuditEvent | AuditEntry], now: datetime) -> list[dict[str, Any]]:
        """SQLite append under BEGIN IMMEDIATE on the pooled DBAPI connection.

        The statements are SQLAlchemy's own compilations, executed on the driver cursor: per-append Core
        overhead was three times the database work, and single appends are the common case.
        """
        sql = self._sqlite_statements()
        raw = self.engine.raw_connection()
        try:
            driver = cast(sqlite3.Connection, raw.driver_connection)  # this path runs on SQLite only
            previous = driver.isolation_level
            driver.isolation_level = None
            cursor = driver.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    head = cursor.execute(sql.head).fetchone()
                    if head is None:
                        raise AuditTamperDetected("the audit head row is missing", seq=None, kind="deleted")
                    rows = self._chain(events, int(head[0]), str(head[1]), now)
                    # one statement, not executemany: the API appends from a thread beside busy request handlers,
                    # and a row-by-row insert would wait for the GIL after every row (see graph/row_appender.py)
                    cursor.execute(*self._appender.sqlite_statement([[row[name] for name in _COLUMNS] for row in rows]))
                    cursor.execute(sql.move_head, (rows[-1]["seq"], rows[-1]["hash"]))
                    cursor.execute("COMMIT")
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.close()
                driver.isolation_level = previous
        finally:
            raw.close()
        return rows

    def _sqlite_statements(self) -> _SqliteStatements:
        if self._statements is None:
            dialect = self.engine.dialect
            compiled_head = (
                select(audit_head_table.c.seq, audit_head_table.c.hash)
                .where(audit_head_table.c.id == 1)
                .compile(dialect=dialect, compile_kwargs={"literal_binds": True})
            )
            compiled_move = (
                update(audit_head_table)
                .where(audit_head_table.c.id == literal_column("1"))
                .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
                .compile(dialect=dialect)
            )
            move_sql = str(compiled_move)
            if tuple(compiled_move.positiontup or ()) != ("new_seq", "new_hash"):
                raise AuditError("unexpected parameter order compiling the audit head update")
            self._statements = _SqliteStatements(head=str(compiled_head), move_head=move_sql)
        return self._statements

    def _safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def query(
        self,
        *,
        subject: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        decision: Decision | str | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        """Records matching every given filter (time range is [since, until)), ordered by seq."""
        t = audit_log_table
        query = select(t)
        if subject is not None:
            query = query.where(t.c.subject == storable_text(subject))
        if operation is not None:
            query = query.where(t.c.operation == storable_text(operation))
        if since is not None:
            query = query.where(t.c.time >= utc_text(since))
        if until is not None:
            query = query.where(t.c.time < utc_text(until))
        if decision is not None:
            query = query.where(t.c.decision == Decision(decision).value)
        query = query.order_by(t.c.seq.desc() if newest_first else t.c.seq).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_to_record(row._mapping) for row in conn.execute(query)]

    def head(self) -> tuple[int, str]:
        """The (seq, hash) of the newest record as the head row records it ((0, GENESIS_HASH) when empty)."""
        with self.engine.connect() as conn:
            return self._head(conn, lock=False)

    def checkpoint(self, signing_key: Ed25519PrivateKey) -> Checkpoint:
        """Sign the current head (seq + hash + time) with Ed25519, store the checkpoint and return it."""
        with self._snapshot() as conn:
            seq, head_hash = self._head(conn, lock=False)
            last = conn.execute(
                select(audit_log_table.c.seq, audit_log_table.c.hash).order_by(audit_log_table.c.seq.desc()).limit(1)
            ).first()
        actual = (int(last[0]), str(last[1])) if last is not None else (0, GENESIS_HASH)
        if actual != (seq, head_hash):
            raise AuditTamperDetected(
                f"refusing to sign: head row says seq {seq} but the newest record is seq {actual[0]}; run verify",
                seq=min(seq, actual[0]) + 1,
                kind=str(TamperKind.ALTERED),
            )
        public_hex = _public_hex(signing_key.public_key())
        key_id = hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]
        moment = datetime.now(UTC)
        signature = signing_key.sign(Checkpoint.payload(seq, head_hash, moment, key_id))
        checkpoint = Checkpoint(
            seq=seq,
            head_hash=head_hash,
            time=parse_utc_text(utc_text(moment)),
            key_id=key_id,
            public_key=public_hex,
            signature=base64.b64encode(signature).decode("ascii"),
        )
        with self.engine.begin() as conn:
            conn.execute(insert(audit_checkpoint_table).values(**checkpoint.to_dict()))
        return checkpoint

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoints stored next to the log, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_checkpoint_table).order_by(audit_checkpoint_table.c.seq))
            return [Checkpoint.from_json(dict(row._mapping)) for row in rows]

    def verify(
        self,
        checkpoints: Iterable[Checkpoint] | None = None,
        trusted_key: Ed25519PublicKey | None = None,
    ) -> AuditVerification:
        """Walk the chain and name the first altered, deleted, inserted or reordered record (by seq).

        `checkpoints` (default: the stored ones) also catch a truncated or rewritten tail; pass the copies kept
        off the box and the trusted public key for that to hold against someone who can write the database.
        """
        marks = sorted(checkpoints if checkpoints is not None else self.checkpoints(), key=lambda c: c.seq)
        walk = _Walk()
        wanted = {c.seq for c in marks}
        with self._snapshot() as conn:
            head_seq, head_hash = self._head(conn, lock=False)
            findings = self._walk(conn, walk, wanted)
        head_finding = self._check_head(walk, head_seq, head_hash)
        if head_finding is not None and (walk.intact or head_finding[0] is not TamperKind.ALTERED):
            findings.append(head_finding)
        if walk.intact:  # checkpoints compare hashes of an intact chain; a broken one is already reported
            mark_finding = self._check_checkpoints(walk, marks, trusted_key)
            if mark_finding is not None:
                findings.append(mark_finding)
        verified = AuditVerification(
            ok=True,
            records_checked=walk.checked,
            head_seq=walk.last_seq,
            head_hash=walk.last_hash,
            checkpoints_checked=len(marks),
        )
        if not findings:
            return verified
        problems = tuple(AuditProblem(seq, kind, message) for kind, seq, message in findings)
        first = problems[0]
        message = (
            first.message
            if len(problems) == 1
            else (
                f"{len(problems)} broken places: "
                + "; ".join(p.message for p in problems[:_REPORTED_PROBLEMS])
                + ("; ..." if len(problems) > _REPORTED_PROBLEMS else "")
            )
        )
        return replace(
            verified, ok=False, first_bad_seq=first.seq, tampering=first.kind, message=message, problems=problems
        )

    def _walk(self, conn: Connection, walk: _Walk, wanted: set[int]) -> list[tuple[TamperKind, int, str]]:
        """Every broken link along the chain: after one, the walk goes on from the record found there."""
        t = audit_log_table
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(select(t).order_by(t.c.seq))
        anomalies: list[tuple[dict[str, Any], int, str]] = []
        prev_seq, prev_hash = 0, GENESIS_HASH
        for raw in result:
            row = dict(raw._mapping)
            seq = int(row["seq"])
            if seq != prev_seq + 1 or row["prev_hash"] != prev_hash or not _stored_hash_holds(row):
                anomalies.append((row, prev_seq, prev_hash))
            prev_seq, prev_hash = seq, row["hash"]
            walk.checked += 1
            if seq in wanted:
                walk.hashes_at[seq] = row["hash"]
        result.close()
        walk.last_seq, walk.last_hash = prev_seq, prev_hash
        walk.intact = not anomalies
        findings: list[tuple[TamperKind, int, str]] = []
        for row, seq, hash_ in anomalies[:_DIAGNOSED_PROBLEMS]:
            finding = self._diagnose(conn, row, seq, hash_)
            if finding not in findings:
                findings.append(finding)
        if len(anomalies) > _DIAGNOSED_PROBLEMS:
            findings.append(
                (
                    TamperKind.ALTERED,
                    int(anomalies[_DIAGNOSED_PROBLEMS][0]["seq"]),
                    f"{len(anomalies) - _DIAGNOSED_PROBLEMS} more broken links from record "
                    f"{anomalies[_DIAGNOSED_PROBLEMS][0]['seq']} on (not diagnosed one by one)",
                )
            )
        return findings

    @staticmethod
    def _diagnose(
        conn: Connection, row: Mapping[str, Any], prev_seq: int, prev_hash: str
    ) -> tuple[TamperKind, int, str]:
        """Classify the first broken link: `row` follows the last good record (`prev_seq`, `prev_hash`)."""
        t = audit_log_table
        seq = int(row["seq"])
        if seq > prev_seq + 1:
            first, last = prev_seq + 1, seq - 1
            span = f"record {first} is" if first == last else f"records {first}..{last} are"
            return TamperKind.DELETED, first, f"{span} missing from the audit log (deleted)"
        content_ok = _stored_hash_holds(row)
        link_ok = row["prev_hash"] == prev_hash
        found = conn.execute(select(t.c.seq).where(t.c.hash == row["prev_hash"]).limit(1)).first()
        chained_to = int(found[0]) if found is not None else None
        if chained_to is not None and chained_to > seq:
            return (
                TamperKind.REORDERED,
                seq,
                (f"record at seq {seq} was moved: it chains to the record now at seq {chained_to} (rows reordered)"),
            )
        if chained_to is not None and chained_to < prev_seq:
            return (
                TamperKind.INSERTED,
                chained_to + 1,
                (f"records {chained_to + 1}..{seq - 1} were inserted: record {seq} chains to record {chained_to}"),
            )
        following = conn.execute(select(t.c.prev_hash).where(t.c.seq > seq).order_by(t.c.seq).limit(1)).first()
        if following is not None and following[0] == prev_hash:
            return (
                TamperKind.INSERTED,
                seq,
                (f"record at seq {seq} was inserted: the next record chains directly to record {prev_seq}"),
            )
        if not content_ok and link_ok:
            return TamperKind.ALTERED, seq, f"record {seq} was altered: its content no longer matches its hash"
        if content_ok and not link_ok:
            if chained_to is None and prev_seq > 0:
                return (
                    TamperKind.ALTERED,
                    prev_seq,
                    (f"record {prev_seq} was altered and its hash recomputed: record {seq} chains to its old hash"),
                )
            return TamperKind.ALTERED, seq, f"record {seq} was altered: it does not chain to record {prev_seq}"
        if chained_to is None:
            return (
                TamperKind.DELETED,
                seq,
                (
                    f"the record(s) before seq {seq} were deleted and later records renumbered: record {seq} chains "
                    "to a record that no longer exists"
                ),
            )
        return TamperKind.ALTERED, seq, f"record {seq} was altered: neither its hash nor its link holds"

    @staticmethod
    def _check_head(walk: _Walk, head_seq: int, head_hash: str) -> tuple[TamperKind, int, str] | None:
        if head_seq > walk.last_seq:
            return (
                TamperKind.TRUNCATED,
                walk.last_seq + 1,
                f"records {walk.last_seq + 1}..{head_seq} were deleted from the end of the log (head says {head_seq})",
            )
        if head_seq < walk.last_seq:
            return (
                TamperKind.INSERTED,
                head_seq + 1,
                (f"records {head_seq + 1}..{walk.last_seq} were written past the head without going through the log"),
            )
        if head_hash != walk.last_hash:
            return (
                TamperKind.ALTERED,
                walk.last_seq,
                (f"record {walk.last_seq} does not match the head hash: the tail was altered and rehashed"),
            )
        return None

    @staticmethod
    def _check_checkpoints(
        walk: _Walk, marks: Sequence[Checkpoint], trusted_key: Ed25519PublicKey | None
    ) -> tuple[TamperKind, int, str] | None:
        good_until = 0
        for mark in marks:
            if not mark.verify_signature(trusted_key):
                return TamperKind.BAD_CHECKPOINT, mark.seq, f"checkpoint at seq {mark.seq} has an invalid signature"
            if mark.seq > walk.last_seq:
                return (
                    TamperKind.TRUNCATED,
                    walk.last_seq + 1,
                    (
                        f"records {walk.last_seq + 1}..{mark.seq} were deleted: a signed checkpoint covers seq "
                        f"{mark.seq} but the log ends at {walk.last_seq}"
                    ),
                )
            if mark.seq > 0 and walk.hashes_at.get(mark.seq) != mark.head_hash:
                return (
                    TamperKind.REWRITTEN,
                    good_until + 1,
                    (
                        f"records {good_until + 1}..{mark.seq} were rewritten: the chain no longer matches the signed "
                        f"checkpoint at seq {mark.seq}"
                    ),
                )
            good_until = mark.seq
        return None

    def export(self, path: Path | str, format: str = "jsonl") -> int:
        """Write every record (oldest first) to `path` as JSON lines; returns the number written."""
        if format != "jsonl":
            raise AuditError(f"audit export format {format!r} is not supported; use 'jsonl'")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        t = audit_log_table
        with self._snapshot() as conn, target.open("w", encoding="utf-8") as out:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(select(t).order_by(t.c.seq))
            for row in result:
                out.write(json.dumps(_to_record(row._mapping).to_dict(), ensure_ascii=False) + "\n")
                count += 1
        return count

    def export_checkpoints(self, path: Path | str) -> int:
        """Write the stored checkpoints to `path` as a JSON array (to keep off the box); returns how many."""
        marks = self.checkpoints()
        Path(path).write_text(json.dumps([m.to_dict() for m in marks], indent=2), encoding="utf-8")
        return len(marks)


def load_checkpoints(path: Path | str) -> list[Checkpoint]:
    """Checkpoints read back from a file written by `export_checkpoints` (or single JSON documents per line)."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        return [Checkpoint.from_json(item) for item in json.loads(text)]
    return [Checkpoint.from_json(line) for line in text.splitlines() if line.strip()]


def _to_record(row: Mapping[Any, Any]) -> AuditRecord:
    return AuditRecord(
        seq=int(row["seq"]),
        time=parse_utc_text(row["time"]),
        subject=row["subject"],
        roles=tuple(json.loads(row["roles"])),
        operation=row["operation"],
        variables_digest=row["variables_digest"],
        decision=Decision(row["decision"]),
        policy_version=row["policy_version"],
        rows_returned=None if row["rows_returned"] is None else int(row["rows_returned"]),
        detail=row["detail"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
