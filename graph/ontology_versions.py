"""Ontology versions: every loaded ontology recorded (digest, time, who, its terms), and what changed between two.

A version keeps the ontology's *terms* (`terms_of`): per class its parents, properties (type, required,
classification) and relationships (target, multiplicity, properties), whatever the source format (OWL or DTDL). Two
versions are compared term by term (`compare`); every change is compatible or breaking:

* compatible: a class added, an optional property or a relationship added, a looser multiplicity, a required
  property made optional, a classification or description changed;
* breaking: a class removed or moved (other parents), a property or relationship removed or renamed (a removal and
  an addition of the same type on one class are reported as a rename), a type changed, a property made required,
  a tighter multiplicity, a relationship pointed elsewhere.

A breaking version is activated only with a migration (graph/ontology_migration.py) that was applied to the twins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, Text, insert, select, update

from graph.relational import create_tables, relational_engine
from ontology.errors import OntologyError, Violation
from ontology.model import ClassDef, Ontology, PropertyDef, RelationshipDef
from ontology.schema import PRIMITIVES, primitive

metadata = MetaData()

ontology_versions = Table(
    "ontology_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("sources", Text, nullable=False),  # JSON list of the files it was loaded from
    Column("terms", Text, nullable=False),  # JSON of terms_of()
    Column("active", Boolean, nullable=False, default=False),
    Column("breaking", Boolean, nullable=False, default=False),  # breaking against the version active before it
    Column("migration", String(256)),  # the migration applied when it was activated (breaking versions)
    Column("renames", Text),  # JSON {class: {old property: new property}} of that migration (deprecated fields)
)

Terms = dict[str, dict[str, Any]]


class OntologyVersionRefused(OntologyError):
    """A version cannot be activated: it breaks the active one and no migration was applied."""


@dataclass(frozen=True)
class TermChange:
    """One difference between two versions: where (class/member), what kind, compatible or not, and in words."""

    path: str
    kind: str  # class-added, class-removed, class-moved, property-added, property-removed, property-renamed, ...
    breaking: bool
    message: str


@dataclass(frozen=True)
class OntologyDiff:
    """Every change from one version to the next."""

    changes: tuple[TermChange, ...]

    @property
    def breaking(self) -> tuple[TermChange, ...]:
        """The changes that break twins or clients of the old version."""
        return tuple(c for c in self.changes if c.breaking)

    @property
    def compatible(self) -> bool:
        """True when nothing breaks."""
        return not self.breaking


@dataclass(frozen=True)
class OntologyVersion:
    """A recorded version."""

    id: int
    digest: str
    at: dt.datetime
    actor: str
    sources: tuple[str, ...]
    terms: Terms
    active: bool
    breaking: bool
    migration: str | None
    renames: dict[str, dict[str, str]]


def _property_terms(prop: PropertyDef) -> dict[str, Any]:
    return {
        "type": prop.schema.describe(),
        "required": prop.required,
        "classification": prop.classification,
        "kind": prop.kind,
    }


def _relationship_terms(rel: RelationshipDef, ontology: Ontology) -> dict[str, Any]:
    target = ontology.classes[rel.target].name if rel.target and rel.target in ontology.classes else rel.target
    return {
        "target": target,
        "min": rel.min,
        "max": rel.max,
        "properties": {p.name: _property_terms(p) for p in rel.properties},
    }


def terms_of(ontology: Ontology) -> Terms:
    """The ontology's terms by class name: parents, own properties, own relationships (sorted, JSON-able)."""
    terms: Terms = {}
    for cls in sorted(ontology.classes.values(), key=lambda c: c.name):
        terms[cls.name] = {
            "parents": sorted(ontology.classes[p].name if p in ontology.classes else p for p in cls.parents),
            "properties": {p.name: _property_terms(p) for p in sorted(cls.properties, key=lambda p: p.name)},
            "relationships": {
                r.name: _relationship_terms(r, ontology) for r in sorted(cls.relationships, key=lambda r: r.name)
            },
        }
    return terms


def ontology_of(terms: Terms) -> Ontology:
    """An ontology with the classes, properties and relationships `terms` records (enough to name, check and read
    the twins of a version no longer loaded from files: types other than primitives are read as text)."""
    classes = []
    for name, cls in terms.items():
        classes.append(
            ClassDef(
                id=name,
                name=name,
                parents=tuple(cls["parents"]),
                properties=tuple(_property_of(n, p) for n, p in cls["properties"].items()),
                relationships=tuple(
                    RelationshipDef(
                        n,
                        r["target"],
                        r["min"],
                        r["max"],
                        tuple(_property_of(pn, pp) for pn, pp in r["properties"].items()),
                    )
                    for n, r in cls["relationships"].items()
                ),
            )
        )
    return Ontology(classes)


def _property_of(name: str, terms: dict[str, Any]) -> PropertyDef:
    kind = terms["type"] if terms["type"] in PRIMITIVES else "string"
    return PropertyDef(
        name, primitive(kind), kind=terms["kind"], required=terms["required"], classification=terms["classification"]
    )


def digest_of(terms: Terms) -> str:
    """The SHA-256 of the terms' canonical JSON: equal terms, equal digest, whatever the files looked like."""
    return hashlib.sha256(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def compare(old: Terms, new: Terms) -> OntologyDiff:
    """Every change from `old` to `new`, classified compatible or breaking."""
    changes: list[TermChange] = []
    for name in sorted(new.keys() - old.keys()):
        changes.append(TermChange(name, "class-added", False, f"class {name} added"))
    for name in sorted(old.keys() - new.keys()):
        changes.append(TermChange(name, "class-removed", True, f"class {name} removed (its twins lose their class)"))
    for name in sorted(old.keys() & new.keys()):
        before, after = old[name], new[name]
        if before["parents"] != after["parents"]:
            changes.append(
                TermChange(
                    name,
                    "class-moved",
                    True,
                    f"class {name} moved from under {', '.join(before['parents']) or 'nothing'} "
                    f"to under {', '.join(after['parents']) or 'nothing'}",
                )
            )
        changes += _members(name, "property", before["properties"], after["properties"], _property_change)
        changes += _members(name, "relationship", before["relationships"], after["relationships"], _relation_change)
    return OntologyDiff(tuple(changes))


def _members(cls: str, what: str, old: dict[str, Any], new: dict[str, Any], changed: Any) -> list[TermChange]:
    found: list[TermChange] = []
    removed = sorted(old.keys() - new.keys())
    added = sorted(new.keys() - old.keys())
    renamed: dict[str, str] = {}
    for gone in removed:  # a removal and an addition alike in everything but the name: a rename
        same = [a for a in added if a not in renamed.values() and _alike(old[gone], new[a])]
        if len(same) == 1:
            renamed[gone] = same[0]
    for gone, now in renamed.items():
        found.append(
            TermChange(f"{cls}.{gone}", f"{what}-renamed", True, f"{what} {cls}.{gone} renamed to {now} (probably)")
        )
    for name in added:
        if name in renamed.values():
            continue
        required = what == "property" and new[name].get("required")
        low = what == "relationship" and (new[name].get("min") or 0) > 0
        found.append(
            TermChange(
                f"{cls}.{name}",
                f"{what}-added",
                bool(required or low),
                f"{'required ' if required else 'optional ' if what == 'property' else ''}{what} {cls}.{name} added"
                + (" (existing twins lack it)" if required or low else ""),
            )
        )
    for name in removed:
        if name not in renamed:
            found.append(TermChange(f"{cls}.{name}", f"{what}-removed", True, f"{what} {cls}.{name} removed"))
    for name in sorted(old.keys() & new.keys()):
        found += changed(f"{cls}.{name}", old[name], new[name])
    return found


def _alike(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def kept(terms: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in terms.items() if k != "classification"}

    return kept(a) == kept(b)


def _property_change(path: str, old: dict[str, Any], new: dict[str, Any]) -> list[TermChange]:
    found = []
    if old["type"] != new["type"]:
        found.append(TermChange(path, "type-changed", True, f"{path} changed type from {old['type']} to {new['type']}"))
    if old["required"] != new["required"]:
        tighter = bool(new["required"])
        found.append(TermChange(path, "cardinality", tighter, f"{path} became {'required' if tighter else 'optional'}"))
    if old["classification"] != new["classification"]:
        found.append(
            TermChange(
                path,
                "classification",
                False,
                f"{path} classification {old['classification'] or 'Internal'} -> {new['classification'] or 'Internal'}",
            )
        )
    return found


def _relation_change(path: str, old: dict[str, Any], new: dict[str, Any]) -> list[TermChange]:
    found = []
    if old["target"] != new["target"]:
        found.append(
            TermChange(path, "target-changed", True, f"{path} now points to {new['target']}, not {old['target']}")
        )
    tighter_max = new["max"] is not None and (old["max"] is None or new["max"] < old["max"])
    tighter_min = (new["min"] or 0) > (old["min"] or 0)
    if (old["min"], old["max"]) != (new["min"], new["max"]):
        found.append(
            TermChange(
                path,
                "cardinality",
                tighter_max or tighter_min,
                f"{path} multiplicity {old['min'] or 0}..{old['max'] if old['max'] is not None else '*'} -> "
                f"{new['min'] or 0}..{new['max'] if new['max'] is not None else '*'}",
            )
        )
    found += _members(path, "edge property", old["properties"], new["properties"], _property_change)
    return found


class OntologyVersions:
    """The recorded versions in the relational store; one is active."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def record(self, ontology: Ontology, actor: str, sources: list[str] | tuple[str, ...] = ()) -> OntologyVersion:
        """Record `ontology` as a version (the existing one when its digest was recorded already)."""
        terms = terms_of(ontology)
        digest = digest_of(terms)
        existing = self._find(digest)
        if existing is not None:
            return existing
        active = self.active()
        breaking = active is not None and not compare(active.terms, terms).compatible
        with self.engine.begin() as conn:
            conn.execute(
                insert(ontology_versions).values(
                    digest=digest,
                    at=dt.datetime.now(dt.UTC),
                    actor=actor,
                    sources=json.dumps(list(sources)),
                    terms=json.dumps(terms, sort_keys=True),
                    active=False,
                    breaking=breaking,
                )
            )
        found = self._find(digest)
        if found is None:  # pragma: no cover - the row was just written
            raise OntologyError(f"ontology version {digest[:12]} was not recorded")
        return found

    def activate(
        self,
        ontology: Ontology,
        actor: str,
        sources: list[str] | tuple[str, ...] = (),
        migration: str | None = None,
        renames: dict[str, dict[str, str]] | None = None,
    ) -> OntologyVersion:
        """Record and activate `ontology`; refused (nothing changed) when it breaks the active version and no applied
        migration is named."""
        version = self.record(ontology, actor, sources)
        active = self.active()
        if active is not None and active.id == version.id:
            return version
        if active is not None and migration is None:
            diff = compare(active.terms, version.terms)
            if not diff.compatible:
                raise OntologyVersionRefused(
                    f"ontology version {version.digest[:12]} breaks the active version {active.digest[:12]} "
                    f"({len(diff.breaking)} breaking change(s)); apply a migration first "
                    "(twin ontology migrate MIGRATION.yaml), then activate with --migration",
                    [Violation(c.path, c.kind, c.message) for c in diff.breaking],
                )
        with self.engine.begin() as conn:
            conn.execute(update(ontology_versions).values(active=False))
            conn.execute(
                update(ontology_versions)
                .where(ontology_versions.c.id == version.id)
                .values(active=True, migration=migration, renames=json.dumps(renames or {}))
            )
        return self.get(version.id)

    def active(self) -> OntologyVersion | None:
        """The active version, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ontology_versions).where(ontology_versions.c.active.is_(True))).first()
        return None if row is None else _version(row)

    def get(self, version_id: int) -> OntologyVersion:
        """The version with this id; OntologyError when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ontology_versions).where(ontology_versions.c.id == version_id)).first()
        if row is None:
            raise OntologyError(f"no ontology version {version_id}")
        return _version(row)

    def all(self) -> list[OntologyVersion]:
        """Every version, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(ontology_versions).order_by(ontology_versions.c.id)).all()
        return [_version(row) for row in rows]

    def _find(self, digest: str) -> OntologyVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(ontology_versions).where(ontology_versions.c.digest == digest)).first()
        return None if row is None else _version(row)


def _version(row: Any) -> OntologyVersion:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
    return OntologyVersion(
        row.id,
        row.digest,
        at,
        row.actor,
        tuple(json.loads(row.sources)),
        json.loads(row.terms),
        bool(row.active),
        bool(row.breaking),
        row.migration,
        json.loads(row.renames) if row.renames else {},
    )
