"""Migrations of twins from one ontology version to the next, written in YAML and applied with a dry run first.

    name: person-work-email
    steps:
      - rename_property: {class: Person, from: email, to: workEmail}
      - cast: {class: Machine, property: capacity, to: decimal}
      - move_class: {from: Contact, to: Employee}
      - split_property: {class: Person, from: name, into: [firstName, lastName], separator: " "}
      - merge_properties: {class: Site, from: [street, city], into: address, separator: ", "}
      - drop_property: {class: Machine, property: legacyCode}

A step's `class` takes its subclasses too. Every term is checked before anything runs: the names a step reads must
exist in the old ontology, the names it writes in the new one; an error names the file and line. `plan` (the dry
run) works out every twin's new state and counts what would change and what would fail; `apply` writes the changes
as the actor `migration:<name>` (history records it), validated against the new ontology and its SHACL shapes, and
puts what fails into quarantine with the reason: a value that cannot be cast is taken off the twin and kept there,
a twin that cannot move class (it holds values the new class does not define) stays as it is. A migration whose cast
fails for every twin it touches is refused before anything is written; a graph write that fails part-way is undone
(the twins written so far get their old states back), so a failed migration leaves the graph as it was.

Batched: the plan reads the stored states of the twins the steps touch in one query; the run writes them in pages of
CHUNK twins, each one history write and one UNWIND statement (values as lists) per group of twins with the same old
class, new class and changed properties (GraphStore.rewrite_twins), without reading them again; failures go into
quarantine in one insert; SHACL validates the migrated twins in pages of SHACL_PAGE.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, select

from graph.relational import create_tables, relational_engine
from ontology.errors import OntologyError, UnknownTerm, Violation, quoted
from ontology.model import Ontology
from ontology.safe_yaml import compose_yaml

if TYPE_CHECKING:
    from graph.store import GraphStore

metadata = MetaData()

migration_quarantine = Table(
    "ontology_migration_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("migration", String(256), nullable=False),
    Column("uid", String(512), nullable=False),
    Column("cls", String(256), nullable=False),
    Column("property", String(256)),
    Column("value", Text),  # JSON of the value taken off the twin (None when the twin stayed as it was)
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

CASTS = ("decimal", "double", "integer", "string", "boolean", "date")
STEP_KINDS = ("rename_property", "cast", "move_class", "split_property", "merge_properties", "drop_property")
CHUNK = 20_000  # twins per page of writes (one history write each)
SHACL_PAGE = 2_000  # twins per SHACL validation


class MigrationError(OntologyError):
    """A migration file that cannot be used (syntax, unknown step or term), or a migration refused as a whole."""


@dataclass(frozen=True)
class Step:
    """One step of a migration, with the line it starts on."""

    kind: str
    cls: str  # the class whose twins (subclasses included) it applies to; move_class: the class moved from
    line: int
    args: dict[str, Any]

    @property
    def label(self) -> str:
        """How reports name the step."""
        return f"{self.kind} (line {self.line})"


@dataclass(frozen=True)
class Migration:
    """A parsed migration file."""

    name: str
    source: str
    steps: tuple[Step, ...]

    def renames(self) -> dict[str, dict[str, str]]:
        """{class: {old property: new property}} of its rename steps (GraphQL keeps the old names as deprecated)."""
        found: dict[str, dict[str, str]] = {}
        for step in self.steps:
            if step.kind == "rename_property":
                found.setdefault(step.cls, {})[step.args["from"]] = step.args["to"]
        return found


@dataclass(frozen=True)
class Failure:
    """Why one twin (or one of its values) could not be migrated."""

    uid: str
    cls: str
    property: str | None
    value: Any
    reason: str
    step: str
    keeps_twin: bool = False  # True: the twin was left as it was (not just one value taken off)


@dataclass
class MigrationReport:
    """What a migration would do (dry run) or did: twins examined, changed, unchanged, failures, per step counts."""

    name: str
    examined: int = 0
    changed: int = 0
    unchanged: int = 0
    failures: list[Failure] = field(default_factory=list)
    by_step: Counter[str] = field(default_factory=Counter)
    applied: bool = False
    shacl_issues: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # (uid, old, new) of each property renamed

    def summary(self) -> dict[str, Any]:
        """JSON-able counts, as the CLI prints them."""
        return {
            "migration": self.name,
            "applied": self.applied,
            "examined": self.examined,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "failed": len(self.failures),
            "by_step": dict(self.by_step),
            "failures": [
                {"uid": f.uid, "class": f.cls, "property": f.property, "reason": f.reason, "step": f.step}
                for f in self.failures
            ],
            "shacl_issues": self.shacl_issues,
        }


# ---------------------------------------------------------------------- reading and checking


def read_migration(path: Path | str) -> Migration:
    """The migration in a YAML file (MigrationError naming the line when it is malformed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MigrationError(f"cannot read migration {path}: {exc.strerror}") from None
    return parse_migration(text, str(path))


def parse_migration(text: str, source: str = "migration.yaml") -> Migration:
    """A migration from YAML text."""
    try:
        root = compose_yaml(text, source)
    except yaml.YAMLError as exc:
        raise MigrationError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode):
        raise MigrationError(f"{source} line 1: a migration is a mapping with `name` and `steps`")
    top = {key.value: value for key, value in root.value if isinstance(key, yaml.ScalarNode)}
    for key, _ in root.value:
        if key.value not in ("name", "steps", "description"):
            raise MigrationError(f"{source} line {_line(key)}: unknown key {quoted(str(key.value))}")
    name_node = top.get("name")
    if not isinstance(name_node, yaml.ScalarNode) or not str(name_node.value).strip():
        raise MigrationError(f"{source} line {_line(name_node or root)}: `name` (text) is required")
    steps_node = top.get("steps")
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise MigrationError(f"{source} line {_line(steps_node or root)}: `steps` must be a non-empty list")
    steps = [_step(node, source) for node in steps_node.value]
    return Migration(str(name_node.value), source, tuple(steps))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _plain(node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _plain(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    return node.value


_REQUIRED: dict[str, tuple[str, ...]] = {
    "rename_property": ("class", "from", "to"),
    "cast": ("class", "property", "to"),
    "move_class": ("from", "to"),
    "split_property": ("class", "from", "into"),
    "merge_properties": ("class", "from", "into"),
    "drop_property": ("class", "property"),
}


def _step(node: yaml.Node, source: str) -> Step:
    line = _line(node)
    where = f"{source} line {line}"
    if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
        raise MigrationError(f"{where}: a step is one of {', '.join(STEP_KINDS)} with its arguments")
    kind_node, args_node = node.value[0]
    kind = str(kind_node.value)
    if kind not in STEP_KINDS:
        raise MigrationError(f"{where}: unknown step {quoted(kind)} (use {', '.join(STEP_KINDS)})")
    if not isinstance(args_node, yaml.MappingNode):
        raise MigrationError(f"{where}: {kind} takes a mapping of arguments ({', '.join(_REQUIRED[kind])})")
    args = _plain(args_node)
    missing = [a for a in _REQUIRED[kind] if a not in args]
    if missing:
        raise MigrationError(f"{where}: {kind} needs {', '.join(missing)}")
    if kind == "cast" and args["to"] not in CASTS:
        raise MigrationError(f"{where}: cast to {quoted(str(args['to']))} is not supported (use {', '.join(CASTS)})")
    if kind == "split_property" and (not isinstance(args["into"], list) or len(args["into"]) < 2):
        raise MigrationError(f"{where}: split_property `into` must list two or more properties")
    if kind == "merge_properties" and (not isinstance(args["from"], list) or len(args["from"]) < 2):
        raise MigrationError(f"{where}: merge_properties `from` must list two or more properties")
    cls = str(args["from"] if kind == "move_class" else args["class"])
    return Step(kind, cls, line, args)


def check_migration(migration: Migration, old: Ontology, new: Ontology) -> None:
    """Refuse a migration naming a term the old ontology (what it reads) or the new one (what it writes) lacks."""
    problems: list[str] = []

    def where(step: Step) -> str:
        return f"{migration.source} line {step.line}"

    def has_class(onto: Ontology, name: str, step: Step, which: str) -> bool:
        try:
            onto.get(name)
            return True
        except UnknownTerm:
            problems.append(f"{where(step)}: class {quoted(name)} is not in the {which} ontology")
            return False

    def has_property(onto: Ontology, cls: str, name: Any, step: Step, which: str) -> None:
        if not isinstance(name, str) or name not in onto.properties(cls):
            problems.append(f"{where(step)}: {cls} has no property {quoted(str(name))} in the {which} ontology")

    for step in migration.steps:
        a = step.args
        if step.kind == "move_class":
            has_class(old, step.cls, step, "old")
            has_class(new, str(a["to"]), step, "new")
            continue
        if not (has_class(old, step.cls, step, "old") and has_class(new, step.cls, step, "new")):
            continue
        if step.kind == "rename_property":
            has_property(old, step.cls, a["from"], step, "old")
            has_property(new, step.cls, a["to"], step, "new")
        elif step.kind == "cast":
            has_property(old, step.cls, a["property"], step, "old")
            has_property(new, step.cls, a["property"], step, "new")
        elif step.kind == "split_property":
            has_property(old, step.cls, a["from"], step, "old")
            for name in a["into"]:
                has_property(new, step.cls, name, step, "new")
        elif step.kind == "merge_properties":
            for name in a["from"]:
                has_property(old, step.cls, name, step, "old")
            has_property(new, step.cls, a["into"], step, "new")
        elif step.kind == "drop_property":
            has_property(old, step.cls, a["property"], step, "old")
    if problems:
        raise MigrationError(f"migration {quoted(migration.name)} names unknown terms:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------- the dry run and the run


@dataclass
class _Planned:
    uid: str
    old_cls: str
    cls: str
    before: dict[str, Any]
    after: dict[str, Any]  # the full new state (None-free)
    stored: dict[str, Any] | None = None  # the stored state the plan read (values as the graph holds them)


@dataclass(frozen=True)
class _Found:
    """A twin as the plan reads it: class, labels (the class and its ancestors), decoded properties."""

    uid: str
    cls: str
    labels: tuple[str, ...]
    properties: dict[str, Any]


class Migrator:
    """Plans and applies one migration to the twins of a graph store, from `old` to `new`."""

    def __init__(self, migration: Migration, old: Ontology, new: Ontology) -> None:
        check_migration(migration, old, new)
        self.migration = migration
        self.old = old
        self.new = new
        self._names = {step.cls: old.get(step.cls).name for step in migration.steps}  # a step's class, by name
        self._kept: dict[tuple[str, str], frozenset[str]] = {}  # (old, new class) -> properties of the same type

    @property
    def actor(self) -> str:
        """The actor history records for the migration's writes."""
        return f"migration:{self.migration.name}"

    def plan(self, store: GraphStore) -> tuple[MigrationReport, list[_Planned]]:
        """The dry run: what would change and what would fail, nothing written (one read of the twins the steps
        touch; each new state validated against the new ontology)."""
        report = MigrationReport(self.migration.name)
        planned: list[_Planned] = []
        read = self._reader()
        for uid, cls, stored in store.states_holding(self._wanted()):
            record = read(uid, cls, stored)
            report.examined += 1
            outcome = self._migrate(record, report)
            if outcome is None:
                continue
            if outcome.after == outcome.before and outcome.cls == outcome.old_cls:
                report.unchanged += 1
                continue
            problems = self._problems(outcome)
            if problems:
                report.failures.append(
                    Failure(
                        record.uid,
                        record.cls,
                        None,
                        None,
                        "; ".join(f"{p.path}: {p.message}" for p in problems),
                        "validation",
                        True,
                    )
                )
                continue
            outcome.stored = stored
            planned.append(outcome)
        report.changed = len(planned)
        self._refuse_total_failure(report)
        return report, planned

    def _reader(self) -> Callable[[str, str, dict[str, Any]], _Found]:
        """Turns a stored twin into what the steps read: labels from the old ontology, values decoded by its schemas
        (only those not stored as they are), the lifecycle state left out (no step touches it)."""
        from graph.lifecycle import PROPERTY as LIFECYCLE
        from graph.values import decode, stored_as_is

        classes: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}

        def read(uid: str, cls: str, stored: dict[str, Any]) -> _Found:
            known = classes.get(cls)
            if known is None:
                try:
                    labels, defs = tuple(self.old.labels(cls)), self.old.properties(cls)
                except UnknownTerm:
                    labels, defs = (cls,), {}
                known = classes[cls] = (labels, {k: d.schema for k, d in defs.items() if not stored_as_is(d.schema)})
            labels, coded = known
            props = {k: decode(v, coded[k]) if k in coded else v for k, v in stored.items() if k != LIFECYCLE}
            return _Found(uid, cls, labels, props)

        return read

    def _problems(self, outcome: _Planned) -> list[Violation]:
        """What the new ontology finds wrong with a twin's new state: every value the migration set or changed, or
        whose property's type the new ontology changed, is checked, and every required property must be there; a
        value carried over as it was under a property of the same type was checked when it was written."""
        pair = (outcome.old_cls, outcome.cls)
        kept = self._kept.get(pair)
        if kept is None:
            try:
                old_defs = self.old.properties(outcome.old_cls)
            except UnknownTerm:
                old_defs = {}
            new_defs = self.new.properties(outcome.cls)
            kept = self._kept[pair] = frozenset(
                k for k, d in new_defs.items() if k in old_defs and old_defs[k].schema == d.schema
            )
        before, after = outcome.before, outcome.after
        changed = {k: v for k, v in after.items() if k not in kept or before.get(k) != v}
        return [
            p
            for p in self.new.validate(outcome.cls, changed)
            if p.rule != "required" or after.get(p.path) is None  # required: judged on the whole new state
        ]

    def _wanted(self) -> list[tuple[str, str | None]]:
        """(class, property) pairs of the twins the steps read: a twin of the class holding the property."""
        wanted: list[tuple[str, str | None]] = []
        for step in self.migration.steps:
            cls, a = self.old.get(step.cls).name, step.args
            if step.kind == "move_class":
                wanted.append((cls, None))
            elif step.kind in ("rename_property", "split_property"):
                wanted.append((cls, str(a["from"])))
            elif step.kind in ("cast", "drop_property"):
                wanted.append((cls, str(a["property"])))
            else:
                wanted += [(cls, str(name)) for name in a["from"]]
        return wanted

    def _migrate(self, record: _Found, report: MigrationReport) -> _Planned | None:
        props = dict(record.properties)
        cls = record.cls
        labels = set(record.labels)
        for step in self.migration.steps:
            a = step.args
            if step.kind == "move_class":
                if cls != self._names[step.cls]:
                    continue
                target = self.new.get(str(a["to"])).name
                defined = self.new.properties(target)
                stranded = sorted(k for k in props if k not in defined)
                if stranded:
                    report.failures.append(
                        Failure(
                            record.uid,
                            cls,
                            ", ".join(stranded),
                            None,
                            f"{target} does not define {', '.join(stranded)}; drop them in an earlier step",
                            step.label,
                            True,
                        )
                    )
                    return None
                cls = target
                report.by_step[step.label] += 1
                continue
            if self._names[step.cls] not in labels:
                continue
            if step.kind == "rename_property":
                if a["from"] in props:
                    props[a["to"]] = props.pop(a["from"])
                    report.by_step[step.label] += 1
            elif step.kind == "drop_property":
                if props.pop(a["property"], None) is not None:
                    report.by_step[step.label] += 1
            elif step.kind == "cast":
                name = a["property"]
                if name not in props:
                    continue
                try:
                    props[name] = cast(props[name], str(a["to"]))
                    report.by_step[step.label] += 1
                except ValueError as exc:
                    report.failures.append(Failure(record.uid, cls, name, props.pop(name), str(exc), step.label))
            elif step.kind == "split_property":
                value = props.get(a["from"])
                if value is None:
                    continue
                separator = str(a.get("separator", " "))
                parts = str(value).split(separator, len(a["into"]) - 1)
                if len(parts) != len(a["into"]):
                    report.failures.append(
                        Failure(
                            record.uid,
                            cls,
                            a["from"],
                            props.pop(a["from"]),
                            f"{quoted(str(value))} does not split into {len(a['into'])} parts at {separator!r}",
                            step.label,
                        )
                    )
                    continue
                props.pop(a["from"])
                props.update({name: part.strip() for name, part in zip(a["into"], parts, strict=True)})
                report.by_step[step.label] += 1
            elif step.kind == "merge_properties":
                values = [props.pop(name) for name in a["from"] if props.get(name) is not None]
                if values:
                    props[a["into"]] = str(a.get("separator", " ")).join(str(v) for v in values)
                    report.by_step[step.label] += 1
        return _Planned(record.uid, record.cls, cls, dict(record.properties), props)

    def _refuse_total_failure(self, report: MigrationReport) -> None:
        for step in self.migration.steps:
            if step.kind != "cast":
                continue
            failed = sum(1 for f in report.failures if f.step == step.label)
            if failed and not report.by_step[step.label]:
                raise MigrationError(
                    f"{self.migration.source} line {step.line}: the cast of {step.cls}.{step.args['property']} to "
                    f"{step.args['to']} fails for every twin that has a value ({failed} of {failed}), e.g. "
                    f"{next(f.reason for f in report.failures if f.step == step.label)}; nothing was migrated"
                )

    def apply(
        self,
        store: GraphStore,
        quarantine: MigrationQuarantine | None = None,
        validate: Callable[[GraphStore, list[str]], list[str]] | None = None,
    ) -> MigrationReport:
        """Run the migration: the changes written as `migration:<name>` (all or, after a failure, none), failures
        into `quarantine`; `validate` (e.g. SHACL) checks the migrated twins afterwards and lists issues."""
        from graph.store import GraphStore

        report, planned = self.plan(store)
        target = GraphStore(store.backend, self.new, store.history, schema=False)
        try:
            self._write(store, target, planned)
        finally:
            target.release()
        report.renamed = self._renamed(planned)
        if quarantine is not None and report.failures:
            quarantine.put(self.migration.name, report.failures)
        report.applied = True
        if validate is not None and planned:
            report.shacl_issues = validate(store if store.ontology is self.new else target, [p.uid for p in planned])
        return report

    def _renamed(self, planned: list[_Planned]) -> list[tuple[str, str, str]]:
        """(uid, old, new) of every property a rename step renamed in the twins written (what lineage follows)."""
        steps = [step for step in self.migration.steps if step.kind == "rename_property"]
        renamed = []
        for p in planned if steps else ():
            held = set(p.before)
            for step in steps:
                old, new = str(step.args["from"]), str(step.args["to"])
                if old in held and _is_a(self.old, p.old_cls, self.old.get(step.cls).name):
                    held.discard(old)
                    held.add(new)
                    renamed.append((p.uid, old, new))
        return renamed

    def _write(self, store: GraphStore, target: GraphStore, planned: list[_Planned]) -> None:
        """Write the planned states page by page (one history write and one UNWIND statement per group of alike
        twins each); a page that fails undoes the pages before it and what of itself landed."""
        from graph.model import Rewrite

        done = 0
        try:
            for start in range(0, len(planned), CHUNK):
                page = planned[start : start + CHUNK]
                target.rewrite_twins(  # validated by the plan against the same (new) ontology
                    [Rewrite(p.uid, p.old_cls, p.cls, p.before, p.after) for p in page],
                    actor=self.actor,
                    source="ontology-migration",
                    validate=False,
                )
                done = start + len(page)
        except Exception as exc:
            touched = planned[: min(len(planned), done + CHUNK)]  # the failed page may have landed in part
            restored = self._undo(store, touched)
            raise MigrationError(
                f"migration {quoted(self.migration.name)} failed and was undone ({restored} twins restored): {exc}"
            ) from exc

    def _undo(self, store: GraphStore, touched: Sequence[_Planned]) -> int:
        """Give the twins the migration wrote their old states back (recorded as the migration's rollback); a twin
        whose stored state is still the old one is left alone. Returns how many were restored."""
        from graph.model import Rewrite
        from graph.store import GraphStore

        former = GraphStore(store.backend, self.old, store.history, schema=False)
        restored = 0
        try:
            for start in range(0, len(touched), CHUNK):
                restored += former.rewrite_twins(
                    [Rewrite(p.uid, p.cls, p.old_cls, p.after, p.before) for p in touched[start : start + CHUNK]],
                    actor=f"{self.actor}:rollback",
                    source="ontology-migration",
                    validate=False,
                )
        finally:
            former.release()
        return restored


def cast(value: Any, kind: str) -> Any:
    """`value` as the type `kind` (ValueError saying why when it cannot be)."""
    if value is None:
        return None
    text = str(value).strip()
    if kind in ("decimal", "double"):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is a boolean, not a number")
        try:
            number = Decimal(text.replace(",", "")) if isinstance(value, str) else Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{quoted(text)} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"{quoted(text)} is not a finite number")
        return float(number)
    if kind == "integer":
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{quoted(text)} is not an integer") from None
        if number != number.to_integral_value():
            raise ValueError(f"{quoted(text)} has a fraction; it is not an integer")
        return int(number)
    if kind == "string":
        return text if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "y"):
            return True
        if lowered in ("false", "no", "0", "n"):
            return False
        raise ValueError(f"{quoted(text)} is not a boolean (true/false, yes/no, 1/0)")
    if kind == "date":
        try:
            return dt.date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            raise ValueError(f"{quoted(text)} is not an ISO 8601 date") from None
    raise ValueError(f"cannot cast to {kind}")


class MigrationQuarantine:
    """Values and twins a migration could not carry over, with the reasons (relational store)."""

    def __init__(self, url: str) -> None:
        self.engine = relational_engine(url)
        create_tables(self.engine, metadata)

    def put(self, migration: str, failures: Iterable[Failure]) -> int:
        """Keep `failures` of `migration`; returns how many."""
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "migration": migration,
                "uid": f.uid,
                "cls": f.cls,
                "property": f.property,
                "value": None if f.keeps_twin else json.dumps(f.value, default=str),
                "reason": f"{f.step}: {f.reason}",
                "at": now,
            }
            for f in failures
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(migration_quarantine), rows)
        return len(rows)

    def of(self, migration: str) -> list[dict[str, Any]]:
        """What `migration` quarantined, oldest first."""
        q = migration_quarantine
        with self.engine.connect() as conn:
            rows = conn.execute(select(q).where(q.c.migration == migration).order_by(q.c.id)).all()
        return [
            {
                "uid": r.uid,
                "class": r.cls,
                "property": r.property,
                "value": None if r.value is None else json.loads(r.value),
                "reason": r.reason,
            }
            for r in rows
        ]


def shacl_issues(store: GraphStore, uids: list[str]) -> list[str]:
    """SHACL validation (ontology/shacl.py) of these twins with their outgoing links against the store's ontology, in
    pages of SHACL_PAGE twins (two reads and one validation each: memory stays bounded however many there are)."""
    issues: list[str] = []
    for start in range(0, len(uids), SHACL_PAGE):
        issues += _shacl_page(store, uids[start : start + SHACL_PAGE])
    return issues


def _shacl_page(store: GraphStore, uids: list[str]) -> list[str]:
    from ontology.shacl import TwinRecord as ShaclTwin
    from ontology.shacl import instance_graph, validate_instances

    found = store.get_many(uids)
    links = store.links_from(uids)
    outgoing: dict[str, list[tuple[str, str]]] = {}
    for link in links:
        if link.source in found:
            outgoing.setdefault(link.source, []).append((link.type, link.target))
    targets = store.get_many(sorted({target for out in outgoing.values() for _, target in out} - found.keys()))
    records = [ShaclTwin(t.uid, t.cls, dict(t.properties), outgoing.get(t.uid, [])) for t in found.values()]
    records += [ShaclTwin(t.uid, t.cls, dict(t.properties)) for t in targets.values()]  # typed, for sh:class
    report = validate_instances(store.ontology, instance_graph(records, store.ontology))
    return [f"{i.focus}.{i.path}: {i.message}" for i in report.issues if i.focus in found]


def mapping_references(files: Iterable[Path], migration: Migration, ontology: Ontology) -> list[tuple[str, int, str]]:
    """Where connector mappings name a term the migration renames, moves or drops: (file, line, what)."""
    renamed = {(cls, old) for cls, names in migration.renames().items() for old in names}
    dropped = {(s.cls, s.args["property"]) for s in migration.steps if s.kind == "drop_property"}
    dropped |= {(s.cls, s.args["from"]) for s in migration.steps if s.kind == "split_property"}
    dropped |= {(s.cls, name) for s in migration.steps if s.kind == "merge_properties" for name in s.args["from"]}
    moved = {s.cls for s in migration.steps if s.kind == "move_class"}
    found: list[tuple[str, int, str]] = []
    for path in files:
        try:
            root = compose_yaml(path.read_text(encoding="utf-8"), str(path))
        except (OSError, yaml.YAMLError):
            continue
        for entity in _entities(root):
            fields = {str(k.value): v for k, v in entity.value if isinstance(k, yaml.ScalarNode)}
            cls_node = fields.get("class")
            if not isinstance(cls_node, yaml.ScalarNode):
                continue
            cls = str(cls_node.value)
            if cls in moved:
                found.append((str(path), _line(cls_node), f"class {cls} is moved by the migration"))
            for section in ("properties", "identity"):
                node = fields.get(section)
                if not isinstance(node, yaml.MappingNode):
                    continue
                for key, _ in node.value:
                    term = str(key.value)
                    for owner, name in sorted(renamed | dropped):
                        if term == name and _is_a(ontology, cls, owner):
                            what = "renamed" if (owner, name) in renamed else "dropped"
                            found.append((str(path), _line(key), f"{cls}.{term} is {what} by the migration"))
    return found


def _entities(root: yaml.Node | None) -> list[yaml.MappingNode]:
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "entities" and isinstance(value, yaml.SequenceNode):
            return [node for node in value.value if isinstance(node, yaml.MappingNode)]
    return []


def _is_a(ontology: Ontology, cls: str, ancestor: str) -> bool:
    try:
        return ontology.is_a(cls, ancestor)
    except UnknownTerm:
        return False
