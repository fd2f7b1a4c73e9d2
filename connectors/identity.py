"""Identity resolution: records of different systems that describe the same person (or thing) become one twin.

Each record has a *natural uid* from its mapping's uid rule (``hr:employee:E1``, ``crm:contact:C7``). Records of
the same identity domain are matched, in this order, by:

1. an existing active merge of the natural uid (a decision, once made, is stable);
2. exact keys (mapped properties named in ``identity.exact``);
3. normalised e-mail (trimmed, lower-cased, ``+tag`` removed for the configured domains);
4. optionally a fuzzy name match within the same organisation, scored 0-100 by rapidfuzz's token-sort ratio,
   accepted at or above the configured threshold.

Only keys registered by *another* source system match (two HR employees sharing an e-mail stay two twins), and a
pair split by `unmerge` never merges again. Every merge is a row of ``identity_link`` (canonical uid, source system,
source key = natural uid, rule, score, time); `unmerge` ends the link (kept for audit) and blocks the pair.
The canonical uid of a merged group is the uid of the twin that existed first; uids never change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import batched
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)

from connectors.errors import ConnectorError
from connectors.sync_state import insert_ignore_statement, now_text
from connectors.transforms import normalise_email
from governance.personal_seal import PersonalSeal
from graph.personal_values import is_sealed
from graph.relational import create_tables, relational_engine
from graph.row_appender import RowAppender

metadata = MetaData()
_NAME_PROPERTY = "identity:name"  # the property a sealed name key is bound to

identity_key_table = Table(
    "identity_key",
    metadata,
    Column("domain", String(64), primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("value", String(512), primary_key=True),
    Column("uid", String(512), primary_key=True),
    Column("system", String(128), nullable=False),
    Column("org", String(512), nullable=True),
    Index("ix_identity_key_uid", "uid"),
    Index("ix_identity_key_org", "domain", "kind", "org"),
)

identity_link_table = Table(
    "identity_links",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("domain", String(64), nullable=False),
    Column("canonical_uid", String(512), nullable=False),
    Column("source_system", String(128), nullable=False),
    Column("source_key", String(512), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("ended_at", String(40), nullable=True),
    Column("ended_reason", String(256), nullable=True),
    Index("ix_identity_links_source", "source_key", "active"),
    Index("ix_identity_links_canonical", "canonical_uid", "active"),
)

identity_block_table = Table(
    "identity_block",
    metadata,
    Column("uid_a", String(512), primary_key=True),
    Column("uid_b", String(512), primary_key=True),
    Column("created_at", String(40), nullable=False),
)


@dataclass(frozen=True)
class IdentityCandidate:
    """A record to resolve: its natural uid, system, and the normalised values it can be matched on."""

    natural_uid: str
    system: str
    exact: tuple[tuple[str, str], ...] = ()  # (property, value)
    email: str | None = None
    name: str | None = None
    organisation: str | None = None


@dataclass(frozen=True)
class Resolution:
    """Which twin a record feeds: the canonical uid, by which rule and with what score (1.0 = certain)."""

    natural_uid: str
    canonical_uid: str
    rule: str
    score: float

    @property
    def merged(self) -> bool:
        """True when the record feeds a twin other than its own natural uid."""
        return self.canonical_uid != self.natural_uid


@dataclass(frozen=True)
class IdentityLink:
    """One recorded merge."""

    id: int
    domain: str
    canonical_uid: str
    source_system: str
    source_key: str
    rule: str
    score: float
    created_at: str
    active: bool
    ended_at: str | None
    ended_reason: str | None


class IdentityError(ConnectorError, ValueError):
    """An identity operation was asked for something that does not exist."""


def _name_key(name: str | None) -> str | None:
    if not name:
        return None
    return " ".join(name.lower().split())


def candidate(
    natural_uid: str,
    system: str,
    *,
    exact: dict[str, Any] | None = None,
    email: Any = None,
    plus_domains: frozenset[str] | None = None,
    name: Any = None,
    organisation: Any = None,
) -> IdentityCandidate:
    """An IdentityCandidate with its values normalised (e-mail, whitespace and case of names)."""
    return IdentityCandidate(
        natural_uid,
        system,
        tuple((k, str(v)) for k, v in sorted((exact or {}).items()) if v is not None and v != ""),
        normalise_email(email, plus_domains) if email else None,
        _name_key(str(name)) if name else None,
        _name_key(str(organisation)) if organisation else None,
    )


class IdentityResolver:
    """Matches records across systems and records every merge (identity_links); merges are reversible."""

    def __init__(self, url: str, seal: PersonalSeal | None = None) -> None:
        self.seal = seal  # match keys stored blind-indexed (exact, e-mail) or sealed under the twin's key (names)
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)
        self._keys = RowAppender(
            self.engine,
            identity_key_table,
            ("kind", "value", "uid", "system", "org"),
            ("domain",),
            conflict_keys=("domain", "kind", "value", "uid"),
        )

    def resolve(
        self,
        domain: str,
        candidates: Sequence[IdentityCandidate],
        *,
        threshold: float | None = None,
        dry_run: bool = False,
    ) -> dict[str, Resolution]:
        """The twin each candidate feeds; new merges and match keys are recorded unless `dry_run`."""
        naturals = [c.natural_uid for c in candidates]
        existing = self.canonical_of(naturals)
        blocked = self._blocked(naturals)
        keys = self._lookup(domain, candidates, threshold is not None)
        results: dict[str, Resolution] = {}
        new_links: list[dict[str, Any]] = []
        new_keys: list[tuple[str, str, str, str, str | None]] = []
        batch_index: dict[tuple[str, str], tuple[str, str]] = {}  # keys registered within this batch
        for cand in candidates:
            natural = cand.natural_uid
            if natural in existing:
                resolution = Resolution(natural, existing[natural], "merged", 1.0)
            else:
                resolution = self._match(cand, keys, batch_index, blocked.get(natural, set()), threshold)
                if resolution.merged:
                    new_links.append(
                        {
                            "domain": domain,
                            "canonical_uid": resolution.canonical_uid,
                            "source_system": cand.system,
                            "source_key": natural,
                            "rule": resolution.rule,
                            "score": resolution.score,
                            "created_at": now_text(),
                            "active": True,
                        }
                    )
                    existing[natural] = resolution.canonical_uid
            results[natural] = resolution
            canonical = resolution.canonical_uid
            for kind, value in self._keys_of(cand):
                batch_index.setdefault((kind, value), (canonical, cand.system))
                new_keys.append((kind, value, canonical, cand.system, cand.organisation if kind == "name" else None))
        if not dry_run:
            with self.engine.begin() as conn:
                if new_links:
                    conn.execute(insert(identity_link_table), new_links)
                self._keys.append(conn, self._stored_keys(new_keys), (domain,))
        return results

    def _stored_keys(
        self, keys: list[tuple[str, str, str, str, str | None]]
    ) -> list[tuple[str, str, str, str, str | None]]:
        """Match keys as stored: with a seal, exact and e-mail keys as their blind index and names sealed under
        the twin's key (deterministically, so one name is one row); as they are without."""
        seal = self.seal
        if seal is None:
            return keys
        return [
            (
                kind,
                seal.seal_fixed(uid, _NAME_PROPERTY, value) if kind == "name" else seal.blind(kind, value),
                uid,
                system,
                org,
            )
            for kind, value, uid, system, org in keys
        ]

    @staticmethod
    def _keys_of(cand: IdentityCandidate) -> list[tuple[str, str]]:
        keys = [(f"exact:{prop}", value) for prop, value in cand.exact]
        if cand.email:
            keys.append(("email", cand.email))
        if cand.name and cand.organisation:
            keys.append(("name", cand.name))
        return keys

    def _lookup(
        self, domain: str, candidates: Sequence[IdentityCandidate], fuzzy: bool
    ) -> dict[tuple[str, str], list[tuple[str, str, str | None]]]:
        """Registered keys matching any candidate: (kind, value) -> [(uid, system, org)]."""
        wanted: dict[str, set[str]] = {}
        orgs: set[str] = set()
        for cand in candidates:
            for kind, value in self._keys_of(cand):
                if kind != "name":
                    wanted.setdefault(kind, set()).add(value)
            if fuzzy and cand.organisation:
                orgs.add(cand.organisation)
        t = identity_key_table
        seal = self.seal
        found: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
        with self.engine.connect() as conn:
            for kind, values in wanted.items():
                stored = {seal.blind(kind, v): v for v in values} if seal is not None else {v: v for v in values}
                for chunk in batched(sorted(stored), 2_000):
                    rows = conn.execute(
                        select(t.c.kind, t.c.value, t.c.uid, t.c.system, t.c.org).where(
                            t.c.domain == domain, t.c.kind == kind, t.c.value.in_(chunk)
                        )
                    )
                    for k, v, uid, system, org in rows:
                        found.setdefault((k, stored[v]), []).append((uid, system, org))
            for chunk in batched(sorted(orgs), 2_000):
                rows = conn.execute(
                    select(t.c.kind, t.c.value, t.c.uid, t.c.system, t.c.org).where(
                        t.c.domain == domain, t.c.kind == "name", t.c.org.in_(chunk)
                    )
                )
                for _kind, v, uid, system, org in rows:
                    name = seal.open_value(uid, _NAME_PROPERTY, v) if seal is not None and is_sealed(v) else v
                    found.setdefault(("org", org or ""), []).append((uid, system, name))
        return found

    @staticmethod
    def _match(
        cand: IdentityCandidate,
        keys: dict[tuple[str, str], list[tuple[str, str, str | None]]],
        batch_index: dict[tuple[str, str], tuple[str, str]],
        blocked: set[str],
        threshold: float | None,
    ) -> Resolution:
        def usable(uid: str, system: str) -> bool:
            return system != cand.system and uid != cand.natural_uid and uid not in blocked

        for kind, value, rule in [
            *((f"exact:{p}", v, f"exact:{p}") for p, v in cand.exact),
            *((("email", cand.email, "email"),) if cand.email else ()),
        ]:
            for uid, system, _ in keys.get((kind, value), []):
                if usable(uid, system):
                    return Resolution(cand.natural_uid, uid, rule, 1.0)
            hit = batch_index.get((kind, value))
            if hit is not None and usable(*hit):
                return Resolution(cand.natural_uid, hit[0], rule, 1.0)
        if threshold is not None and cand.name and cand.organisation:
            best: tuple[float, str] | None = None
            pool = list(keys.get(("org", cand.organisation), []))
            pool += [(uid, system, value) for (kind, value), (uid, system) in batch_index.items() if kind == "name"]
            for uid, system, name in pool:
                if not name or not usable(uid, system):
                    continue
                score = float(fuzz.token_sort_ratio(cand.name, name))
                if score >= threshold and (best is None or score > best[0]):
                    best = (score, uid)
            if best is not None:
                return Resolution(cand.natural_uid, best[1], "fuzzy:name+organisation", round(best[0] / 100, 4))
        return Resolution(cand.natural_uid, cand.natural_uid, "own", 1.0)

    def _blocked(self, naturals: Sequence[str]) -> dict[str, set[str]]:
        t = identity_block_table
        found: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            if conn.scalar(select(t.c.uid_a).limit(1)) is None:  # no pair was ever unmerged
                return found
            for chunk in batched(naturals, 1_000):
                for a, b in conn.execute(
                    select(t.c.uid_a, t.c.uid_b).where(or_(t.c.uid_a.in_(chunk), t.c.uid_b.in_(chunk)))
                ):
                    found.setdefault(a, set()).add(b)
                    found.setdefault(b, set()).add(a)
        return found

    def canonical_of(self, naturals: Iterable[str]) -> dict[str, str]:
        """The canonical uid of every natural uid that is merged into another twin (others are absent)."""
        t = identity_link_table
        items = sorted(set(naturals))
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in batched(items, 2_000):
                rows = conn.execute(
                    select(t.c.source_key, t.c.canonical_uid).where(t.c.active.is_(True), t.c.source_key.in_(chunk))
                )
                found.update(rows.tuples().all())  # pairs: dict(result) would read the Result as a mapping
        return found

    def erase_personal(self, uid: str, fields: Sequence[str], values: Sequence[Any]) -> int:
        """Delete twin `uid`'s match keys that hold personal data (e-mail, name, or one of `values`); returns how
        many (right to erasure; a later sync of the source record adds them back only if the source still has them)."""
        t = identity_key_table
        texts = [str(value) for value in values if value is not None]
        kinds = ["email", "name", *(f"exact:{name}" for name in fields)]
        with self.engine.begin() as conn:
            result = conn.execute(delete(t).where(t.c.uid == uid, or_(t.c.kind.in_(kinds), t.c.value.in_(texts))))
        return int(result.rowcount or 0)

    def shared(self, uids: Iterable[str]) -> set[str]:
        """Those of `uids` that other records are merged into (twins fed by more than one source record)."""
        t = identity_link_table
        items = sorted(set(uids))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in batched(items, 2_000):
                found.update(
                    conn.scalars(select(t.c.canonical_uid).where(t.c.active.is_(True), t.c.canonical_uid.in_(chunk)))
                )
        return found

    def has_merges(self) -> bool:
        """Whether any active merge exists (lets a sync skip canonical look-ups entirely)."""
        t = identity_link_table
        with self.engine.connect() as conn:
            return conn.scalar(select(t.c.id).where(t.c.active.is_(True)).limit(1)) is not None

    def links(self, uid: str | None = None, *, include_ended: bool = False) -> list[IdentityLink]:
        """Recorded merges (into canonical `uid`, or all), oldest first."""
        t = identity_link_table
        query = select(t)
        if uid is not None:
            query = query.where(or_(t.c.canonical_uid == uid, t.c.source_key == uid))
        if not include_ended:
            query = query.where(t.c.active.is_(True))
        with self.engine.connect() as conn:
            return [
                IdentityLink(
                    r.id,
                    r.domain,
                    r.canonical_uid,
                    r.source_system,
                    r.source_key,
                    r.rule,
                    r.score,
                    r.created_at,
                    r.active,
                    r.ended_at,
                    r.ended_reason,
                )
                for r in conn.execute(query.order_by(t.c.id))
            ]

    def unmerge(self, natural_uid: str, reason: str = "unmerged by a data steward") -> IdentityLink:
        """End the merge of `natural_uid`, and block the pair from merging again; returns the ended link."""
        t = identity_link_table
        with self.engine.begin() as conn:
            row = conn.execute(select(t).where(t.c.source_key == natural_uid, t.c.active.is_(True))).first()
            if row is None:
                raise IdentityError(f"{natural_uid!r} is not merged into another twin")
            ended = now_text()
            conn.execute(update(t).where(t.c.id == row.id).values(active=False, ended_at=ended, ended_reason=reason))
            conn.execute(
                insert_ignore_statement(self.engine, identity_block_table, ["uid_a", "uid_b"]),
                {"uid_a": row.canonical_uid, "uid_b": natural_uid, "created_at": ended},
            )
            # keys the record registered under the canonical uid no longer lead there
            k = identity_key_table
            conn.execute(delete(k).where(k.c.uid == row.canonical_uid, k.c.system == row.source_system))
        return IdentityLink(
            row.id,
            row.domain,
            row.canonical_uid,
            row.source_system,
            natural_uid,
            row.rule,
            row.score,
            row.created_at,
            False,
            ended,
            reason,
        )

    def forget(self, uids: Iterable[str], reason: str = "twin deleted") -> None:
        """Drop match keys of deleted twins and end merges into or out of them."""
        items = sorted(set(uids))
        if not items:
            return
        t = identity_link_table
        k = identity_key_table
        with self.engine.begin() as conn:
            for chunk in batched(items, 1_000):
                conn.execute(delete(k).where(k.c.uid.in_(chunk)))
                conn.execute(
                    update(t)
                    .where(t.c.active.is_(True), or_(t.c.canonical_uid.in_(chunk), t.c.source_key.in_(chunk)))
                    .values(active=False, ended_at=now_text(), ended_reason=reason)
                )

    def forget_source(self, natural_uids: Iterable[str], reason: str = "source record deleted") -> None:
        """End the merges of natural uids whose source records are gone (the canonical twin stays)."""
        items = sorted(set(natural_uids))
        t = identity_link_table
        with self.engine.begin() as conn:
            for chunk in batched(items, 1_000):
                conn.execute(
                    update(t)
                    .where(and_(t.c.active.is_(True), t.c.source_key.in_(chunk)))
                    .values(active=False, ended_at=now_text(), ended_reason=reason)
                )
