"""Per-subject data keys: one random AES-256 key per data subject (twin uid), wrapped by the master key.

The key ring is a relational store of its own (default: SQLite in the key directory, DATA_DIR/keys/subject_keys.db;
a separate PostgreSQL database with TWIN_SUBJECT_KEYS_URL), so that the key ring is not in the backups of the data
it protects: destroying a subject's key (erasure) makes every copy of its sealed values unreadable, including the
copies in a dump or a copy of the data directory taken before. Each row holds the data key wrapped (AES-256-GCM) by
the master key with the uid as associated data; a check row, the master key's encryption of a known text, tells a
wrong master key at start (KeyMaterialError) instead of garbage later.

Unwrapped keys are cached in the process for a short time (`CACHE_SECONDS`), so a sync run unwraps each subject's
key once; an erasure in another process is therefore complete for this process's new writes after that time at the
latest (its reads of sealed copies fail as soon as the row is gone and the cache entry expires).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import batched
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from governance.errors import KeyMaterialError
from governance.key_files import write_private_file
from governance.master_key import FileMasterKey, MasterKeyProvider, decode_master_key
from graph.relational import relational_engine

CACHE_SECONDS = 60.0
_NONCE = 12
_CHECK_NAME = "master"
_CHECK_TEXT = b"enterprise-twin master key check v1"

metadata = MetaData()

subject_key_table = Table(
    "subject_key",
    metadata,
    Column("uid", String(512), primary_key=True),
    Column("wrapped", LargeBinary, nullable=False),  # nonce + AES-GCM(master, data key, aad = uid)
    Column("created_at", String(40), nullable=False),
)

subject_key_check_table = Table(  # the master key's encryption of _CHECK_TEXT: tells a wrong master key at start
    "subject_key_check",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
)


class SubjectKey:
    """One subject's unwrapped data key: the AEAD and the raw bytes (for deterministic match-key nonces)."""

    __slots__ = ("aead", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.aead = AESGCM(raw)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], aad)


def _wrap_aad(uid: str) -> bytes:
    return b"subject-key\x00" + uid.encode("utf-8", "surrogatepass")


class SubjectKeyRing:
    """The data keys of every subject, wrapped by the master key of `provider`."""

    def __init__(self, url: str, provider: MasterKeyProvider) -> None:
        self.url = url
        self.provider = provider
        self.engine = relational_engine(url)
        self._dialect: Any = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        # The key ring is a store of its own (kept apart from the twin's database and its backups, so that a dump of
        # that database never carries the keys): its two tables are made here, outside the twin store's revisions.
        for attempt in range(5):  # another thread or process may be creating them at the same moment
            try:
                metadata.create_all(self.engine, checkfirst=True)
                break
            except (OperationalError, IntegrityError, ProgrammingError):
                if attempt == 4:
                    raise
        self._master = self._checked_master()
        self._cache: dict[str, tuple[SubjectKey, float]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the master key

    def _stored_check(self) -> bytes | None:
        t = subject_key_check_table
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.sealed).where(t.c.name == _CHECK_NAME)).scalar_one_or_none()

    def _checked_master(self) -> bytes:
        """The master key, checked against the ring's check row (written now for a fresh ring; a fresh ring with a
        key file provider and no file yet gets a new key file)."""
        check = self._stored_check()
        provider = self.provider
        if check is None:
            if isinstance(provider, FileMasterKey) and not provider.exists():
                provider.create()
            master = provider.key()
            with self.engine.begin() as conn:
                count = conn.execute(select(func.count()).select_from(subject_key_table)).scalar_one()
                if count:
                    raise KeyMaterialError(
                        f"the subject key ring at {_safe_url(self.url)} holds {count} keys but no master key check"
                    )
                # another process may write it first: then the check below is against theirs
                conn.execute(
                    self._dialect.insert(subject_key_check_table)
                    .values(name=_CHECK_NAME, sealed=_seal(master, _CHECK_TEXT, b"check"))
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            check = self._stored_check()
            assert check is not None
        staged = _staged_file(provider) if isinstance(provider, FileMasterKey) else None
        if staged is not None and self._opens_check(finished := staged.key(), check):
            os.replace(staged.path, provider.path)  # type: ignore[attr-defined]  # a rotation stopped before its rename
            return finished
        if isinstance(provider, FileMasterKey) and not provider.exists():
            raise KeyMaterialError(
                f"the master key {provider.name} is missing but the subject key ring at {_safe_url(self.url)} "
                "was made with one: personal values kept outside the live graph cannot be read until that key "
                "is restored (see README, 'Losing the master key')"
            )
        master = provider.key()
        if self._opens_check(master, check):
            return master
        raise KeyMaterialError(
            f"the master key from {provider.name} is not the one the subject key ring at {_safe_url(self.url)} was "
            "wrapped with"
        )

    @staticmethod
    def _opens_check(master: bytes, check: bytes) -> bool:
        try:
            return _open(master, check, b"check") == _CHECK_TEXT
        except InvalidTag:
            return False

    def rotate_master(self, new_key_text: str) -> int:
        """Re-wrap every data key under the master key base64 `new_key_text` (one transaction; sealed values are not
        touched); a key file provider's file is replaced after the commit. Returns how many keys were re-wrapped."""
        new = decode_master_key(new_key_text, "the new master key")
        provider = self.provider
        staged = None
        if isinstance(provider, FileMasterKey):  # staged first: a stop after the commit finishes at the next start
            staged = FileMasterKey(provider.path.with_name(provider.path.name + ".next"))
            staged.path.unlink(missing_ok=True)
            staged.path.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(staged.path, new_key_text.encode("ascii") + b"\n")
        t = subject_key_table
        count = 0
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.c.uid, t.c.wrapped)).all()
            for uid, wrapped in rows:
                aad = _wrap_aad(uid)
                raw = self._unwrap(uid, wrapped)
                conn.execute(update(t).where(t.c.uid == uid).values(wrapped=_seal(new, raw, aad)))
                count += 1
            conn.execute(
                update(subject_key_check_table)
                .where(subject_key_check_table.c.name == _CHECK_NAME)
                .values(sealed=_seal(new, _CHECK_TEXT, b"check"))
            )
        if staged is not None:
            os.replace(staged.path, provider.path)  # type: ignore[attr-defined]
        self._master = new
        return count

    # ------------------------------------------------------------------ data keys

    def _unwrap(self, uid: str, wrapped: bytes) -> bytes:
        try:
            return _open(self._master, wrapped, _wrap_aad(uid))
        except InvalidTag:
            raise KeyMaterialError(f"the data key of subject {uid!r} does not unwrap under the master key") from None

    def keys_for(self, uids: Iterable[str], *, create: bool) -> dict[str, SubjectKey]:
        """The data keys of `uids` (cached); with `create`, a new key for each subject that has none."""
        now = time.monotonic()
        found: dict[str, SubjectKey] = {}
        missing: list[str] = []
        with self._lock:
            for uid in set(uids):
                hit = self._cache.get(uid)
                if hit is not None and now - hit[1] < CACHE_SECONDS:
                    found[uid] = hit[0]
                else:
                    missing.append(uid)
        if not missing:
            return found
        loaded = self._load(missing)
        if create:
            absent = [uid for uid in missing if uid not in loaded]
            if absent:
                self._create(absent)
                loaded.update(self._load(absent))
        with self._lock:
            if len(self._cache) > 200_000:
                self._cache.clear()
            for uid, key in loaded.items():
                self._cache[uid] = (key, now)
        found.update(loaded)
        return found

    def _load(self, uids: Sequence[str]) -> dict[str, SubjectKey]:
        t = subject_key_table
        loaded: dict[str, SubjectKey] = {}
        with self.engine.connect() as conn:
            for chunk in batched(sorted(uids), 2_000):
                for uid, wrapped in conn.execute(select(t.c.uid, t.c.wrapped).where(t.c.uid.in_(chunk))):
                    loaded[uid] = SubjectKey(self._unwrap(uid, wrapped))
        return loaded

    def _create(self, uids: Sequence[str]) -> None:
        """Insert fresh keys for `uids`, skipping any another process made meanwhile."""
        now = datetime.now(UTC).isoformat()
        rows = [
            {"uid": uid, "wrapped": _seal(self._master, secrets.token_bytes(32), _wrap_aad(uid)), "created_at": now}
            for uid in uids
        ]
        statement = self._dialect.insert(subject_key_table).on_conflict_do_nothing(index_elements=["uid"])
        with self.engine.begin() as conn:
            for chunk in batched(rows, 2_000):
                conn.execute(statement, chunk)

    def destroy(self, uid: str) -> bool:
        """Destroy the data key of subject `uid` (crypto-shredding); True when there was one."""
        with self.engine.begin() as conn:
            gone = conn.execute(delete(subject_key_table).where(subject_key_table.c.uid == uid)).rowcount
        with self._lock:
            self._cache.pop(uid, None)
        return bool(gone)

    def has_key(self, uid: str) -> bool:
        """Whether subject `uid` has a data key."""
        t = subject_key_table
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.uid).where(t.c.uid == uid)).first() is not None

    def count(self) -> int:
        """How many subjects have a data key."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(subject_key_table)).scalar_one())

    def forget_cache(self) -> None:
        """Drop every cached unwrapped key (the next use unwraps again)."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Release the ring's database connections."""
        self.engine.dispose()


def _staged_file(provider: FileMasterKey) -> FileMasterKey | None:
    staged = FileMasterKey(provider.path.with_name(provider.path.name + ".next"))
    return staged if staged.exists() else None


def _safe_url(url: str) -> str:
    """`url` without a password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
