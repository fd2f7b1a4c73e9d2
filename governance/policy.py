"""Role and attribute policy: one decision function, row rules compiled to Cypher, field masks from classifications."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from governance.digest_key import keyed_text_digest
from governance.errors import GovernanceError, PolicyDenied
from governance.identity import Subject
from graph.lifecycle import HIDDEN
from graph.model import ReadScope, ScopeJoin, TwinRecord
from ontology.errors import UnknownTerm
from ontology.model import CLASSIFICATIONS, DEFAULT_CLASSIFICATION, Ontology
from ontology.safe_yaml import load_yaml
from ontology.schema import FLOAT_KINDS, INTEGER_RANGES

MaskMode = Literal["show", "partial", "hash", "redact", "null"]
Action = Literal["read", "write", "delete", "operation"]
OPERATIONS = frozenset(
    {
        "audit.read",
        "audit.verify",
        "lineage.read",
        "lineage.export",
        "history.read",
        "scenario.run",
        "scenario.read",
        "connector.run",
        "graph.cypher",
        "erase",
        "keys.rotate",
        "forecast.run",
        "forecast.read",
        "model.approve",
        "twin.lifecycle",  # move twins between planned, active, suspended and retired (with write on their class)
        "alert.manage",  # acknowledge, snooze and resolve the alerts the role may see
        "automation.manage",  # create, change, enable, disable and delete automations (acting as the role's own roles)
    }
)
# From most to least revealing: with several roles, the most revealing mode any of them allows wins.
_MODE_ORDER: tuple[MaskMode, ...] = ("show", "partial", "hash", "redact", "null")
REDACTED = "***"
SENSITIVE_CLASSIFICATIONS = frozenset({"PII", "Confidential"})
"""Classifications that make a class's aggregates subject to the roles' privacy settings."""


class PolicyError(GovernanceError):
    """The policy file is malformed or refers to unknown classes, classifications or operations."""


class _ScanSpec(BaseModel):
    """The same row rule as a join, for scans: a `via` link from the twin to a twin the `anchor` pattern finds."""

    model_config = ConfigDict(extra="forbid")
    via: str
    anchor: str

    @field_validator("anchor")
    @classmethod
    def _names_the_member(cls, value: str) -> str:
        if "scope_member" not in value:
            raise ValueError("a scan anchor must name the twins it finds `scope_member`")
        return value


class _RowRuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    classes: list[str]
    predicate: str
    needs: list[Literal["org_unit"]] = Field(default_factory=list)
    scan: _ScanSpec | None = None

    @field_validator("predicate")
    @classmethod
    def _mentions_node(cls, value: str) -> str:
        if "{n}" not in value:
            raise ValueError("a row predicate must refer to the twin as {n}")
        return value


class _PrivacySpec(BaseModel):
    """A role's differential-privacy budget: what its aggregates over sensitive classes may spend, per period."""

    model_config = ConfigDict(extra="forbid")
    epsilon_per_period: float = Field(gt=0, le=1000)
    period: Literal["day", "week", "month"] = "day"
    epsilon_per_query: float = Field(default=1.0, gt=0, le=1000)
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    classifications: list[Literal["PII", "Confidential"]] = Field(default=["PII", "Confidential"], min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> _PrivacySpec:
        if self.epsilon_per_query > self.epsilon_per_period:
            raise ValueError("epsilon_per_query cannot exceed epsilon_per_period")
        for name, (lo, hi) in self.bounds.items():
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"bounds of {name!r} must be finite with lower < upper")
        return self


class _RoleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)
    fields: dict[str, MaskMode] = Field(default_factory=dict)
    rows: list[_RowRuleSpec] = Field(default_factory=list)
    operations: list[str] = Field(default_factory=list)
    privacy: _PrivacySpec | None = None
    sensitive_aggregates: Literal["exact", "none"] = "exact"  # for a role without `privacy`
    aggregate: list[str] = Field(default_factory=list)  # classes it may only aggregate, privately (needs `privacy`)


class _ApprovalSpec(BaseModel):
    """How proposals of one action type are approved (governance/decisions): by people of `approvers` roles,
    `approvals` distinct ones (2 = four eyes), or at once by the system where `automatic` is allowed."""

    model_config = ConfigDict(extra="forbid")
    approvers: list[str] = Field(default_factory=list)
    approvals: Literal[1, 2] = 1
    automatic: bool = False
    expires_after_hours: float = Field(default=72.0, gt=0, le=24 * 366)


class _PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    roles: dict[str, _RoleSpec]
    actions: dict[str, _ApprovalSpec] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy check: allowed or not, the rule that decided, and why."""

    allowed: bool
    rule: str
    reason: str


@dataclass(frozen=True)
class ApprovalRule:
    """The approval policy of one action type: who may approve, how many distinct approvers, whether an automation
    may have it run without anyone, and how long a proposal waits."""

    action_type: str
    approvers: frozenset[str]
    approvals: int
    automatic: bool
    expires_after_hours: float


@dataclass(frozen=True)
class PrivacyBudgetRule:
    """A role's differential-privacy settings (governance/differential_privacy.py, governance/privacy_budget.py)."""

    role: str
    epsilon_per_period: float
    period: Literal["day", "week", "month"]
    epsilon_per_query: float
    bounds: Mapping[str, tuple[float, float]]
    classifications: frozenset[str] = SENSITIVE_CLASSIFICATIONS  # what makes a class's aggregates noisy for the role


@dataclass(frozen=True)
class AggregateMode:
    """How a subject's aggregate over a class is answered: `exact`, `private` (noised, spending `budget`) or `none`
    (refused), and why."""

    mode: Literal["exact", "private", "none"]
    reason: str
    budget: PrivacyBudgetRule | None = None
    scope: ReadScope | None = None  # for a class the subject may only aggregate: the scope its aggregate reads with


@dataclass(frozen=True)
class MaskedTwin:
    """A twin as a subject may see it: masked property values, and which fields were masked how."""

    uid: str
    cls: str
    labels: tuple[str, ...]
    properties: dict[str, Any]
    masked: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _RowRule:
    classes: tuple[str, ...]
    predicate: str
    needs: tuple[str, ...]
    scan: ScopeJoin | None = None


@dataclass(frozen=True)
class _Role:
    name: str
    description: str
    read: frozenset[str] | None  # class names incl. subclasses; None = every class
    read_or_above: frozenset[str] | None  # readable classes and their ancestors: field rules apply to these labels
    write: frozenset[str] | None
    operations: frozenset[str]  # "*" = all
    fields: Mapping[str, MaskMode]
    rows: tuple[_RowRule, ...]
    privacy: PrivacyBudgetRule | None = None
    sensitive_aggregates: Literal["exact", "none"] = "exact"
    aggregate_only: frozenset[str] = frozenset()  # classes (incl. subclasses) it may aggregate with privacy, not read

    def mode_for(self, classification: str | None) -> MaskMode:
        level = classification or DEFAULT_CLASSIFICATION
        # an unknown classification (Ontology.check refuses them) is masked as the most sensitive one
        return self.fields.get(level if level in CLASSIFICATIONS else CLASSIFICATIONS[-1], "show")


class Policy:
    """Compiled rules for every role; the one place read, write and operation decisions are made."""

    def __init__(
        self, spec: Mapping[str, Any], ontology: Ontology, source: str = "<policy>", digest_key: bytes | None = None
    ) -> None:
        self.digest_key = digest_key  # keys the `hash` mask (see governance/digest_key.py)
        try:
            parsed = _PolicySpec.model_validate(spec)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise PolicyError(f"policy {source} is invalid: {problems}") from None
        self.version = parsed.version
        self.source = source
        self.ontology = ontology
        self.roles: dict[str, _Role] = {name: self._compile(name, role, source) for name, role in parsed.roles.items()}
        self.approvals: dict[str, ApprovalRule] = {}
        for action_type, rule in parsed.actions.items():
            unknown = sorted(set(rule.approvers) - set(self.roles))
            if unknown:
                raise PolicyError(f"policy {source}, action {action_type}: unknown approver roles {unknown}")
            if not rule.approvers and not rule.automatic:
                raise PolicyError(f"policy {source}, action {action_type}: needs approvers or automatic: true")
            self.approvals[action_type] = ApprovalRule(
                action_type, frozenset(rule.approvers), rule.approvals, rule.automatic, rule.expires_after_hours
            )
        self._strictest = _strictest_classifications(ontology)
        self._scopes: dict[tuple[frozenset[str], str | None], ReadScope] = {}
        self._aggregate_scopes: dict[tuple[frozenset[str], str | None], ReadScope] = {}
        self._modes: dict[tuple[frozenset[str], str], dict[str, MaskMode]] = {}
        self._sensitive: dict[tuple[str, frozenset[str]], bool] = {}

    # ------------------------------------------------------------------ compile

    def _classes(self, names: Iterable[str], where: str) -> frozenset[str] | None:
        result: set[str] = set()
        for name in names:
            if name == "*":
                return None
            try:
                cls = self.ontology.get(name)
            except UnknownTerm:
                raise PolicyError(f"{where}: unknown class {name!r}") from None
            result.add(cls.name)
            result.update(self.ontology.classes[d].name for d in self.ontology.descendants(cls.id))
        return frozenset(result)

    def _compile(self, name: str, spec: _RoleSpec, source: str) -> _Role:
        where = f"policy {source}, role {name}"
        for classification in spec.fields:
            if classification not in CLASSIFICATIONS:
                raise PolicyError(
                    f"{where}: unknown classification {classification!r} (use {', '.join(CLASSIFICATIONS)})"
                )
        unknown_ops = [op for op in spec.operations if op != "*" and op not in OPERATIONS]
        if unknown_ops:
            raise PolicyError(f"{where}: unknown operations {unknown_ops} (known: {', '.join(sorted(OPERATIONS))})")
        rows = []
        for rule in spec.rows:
            classes = tuple(sorted(self._classes(rule.classes, where) or ()))
            scan = None
            if rule.scan is not None:
                if rule.scan.via not in self.ontology.relationship_types():
                    raise PolicyError(f"{where}: unknown relationship {rule.scan.via!r} in a scan rule")
                scan = ScopeJoin(classes, rule.scan.via, rule.scan.anchor)
            rows.append(_RowRule(classes, rule.predicate, tuple(rule.needs), scan))
        read = self._classes(spec.read, where)
        above = (
            None
            if read is None
            else frozenset({*read, *(self.ontology.classes[a].name for c in read for a in self.ontology.ancestors(c))})
        )
        return _Role(
            name=name,
            description=spec.description,
            read=read,
            read_or_above=above,
            write=self._classes(spec.write, where),
            operations=frozenset(spec.operations),
            fields=dict(spec.fields),
            rows=tuple(rows),
            privacy=None
            if spec.privacy is None
            else PrivacyBudgetRule(
                name,
                spec.privacy.epsilon_per_period,
                spec.privacy.period,
                spec.privacy.epsilon_per_query,
                self._bounds(spec.privacy.bounds, where),
                frozenset(spec.privacy.classifications),
            ),
            sensitive_aggregates=spec.sensitive_aggregates,
            aggregate_only=self._aggregate_only(spec, read, where),
        )

    def _bounds(self, bounds: Mapping[str, tuple[float, float]], where: str) -> dict[str, tuple[float, float]]:
        """Clamp bounds of a privacy budget, each naming a numeric property some class of the ontology defines."""
        numeric: set[str] = set()
        for cls in self.ontology.classes.values():
            for prop_name, prop in self.ontology.properties(cls.id).items():
                if prop.schema.kind in INTEGER_RANGES or prop.schema.kind in FLOAT_KINDS:
                    numeric.add(prop_name)
        unknown = sorted(set(bounds) - numeric)
        if unknown:
            raise PolicyError(f"{where}: privacy bounds name no numeric property of the ontology: {unknown}")
        return dict(bounds)

    def _aggregate_only(self, spec: _RoleSpec, read: frozenset[str] | None, where: str) -> frozenset[str]:
        """The classes of `aggregate:` (with subclasses) beyond what the role reads; they need a privacy budget."""
        if not spec.aggregate:
            return frozenset()
        if spec.privacy is None:
            raise PolicyError(f"{where}: `aggregate` needs `privacy` (a budget for the noisy answers)")
        if read is None:
            raise PolicyError(f"{where}: `aggregate` makes no sense for a role that reads every class")
        return (self._classes(spec.aggregate, where) or frozenset()) - read

    def _roles_of(self, subject: Subject) -> list[_Role]:
        return [self.roles[r] for r in sorted(subject.roles) if r in self.roles]

    # ------------------------------------------------------------------ decisions

    def decide(self, subject: Subject, action: Action, resource: str) -> Decision:
        """Whether `subject` may do `action` on `resource` (a class name, or an operation name)."""
        roles = self._roles_of(subject)
        if not roles:
            return Decision(False, "default-deny", f"{subject.sub} holds no role this policy knows")
        if action == "operation":
            if resource not in OPERATIONS:
                return Decision(False, "default-deny", f"unknown operation {resource!r}")
            for role in roles:
                if "*" in role.operations or resource in role.operations:
                    return Decision(True, f"role:{role.name} operation {resource}", "granted")
            return Decision(False, "default-deny", f"no role of {subject.sub} may {resource}")
        try:
            cls = self.ontology.get(resource).name
        except UnknownTerm:
            return Decision(False, "default-deny", f"unknown class {resource!r}")
        for role in roles:
            allowed = role.read if action == "read" else role.write
            if allowed is None or cls in allowed:
                return Decision(True, f"role:{role.name} {action} {cls}", "granted")
        return Decision(False, "default-deny", f"no role of {subject.sub} may {action} {cls}")

    def require(self, subject: Subject, action: Action, resource: str) -> Decision:
        """The granting decision; PolicyDenied when the subject may not."""
        decision = self.decide(subject, action, resource)
        if not decision.allowed:
            raise PolicyDenied(f"denied: {decision.reason}")
        return decision

    def writes_anything(self, subject: Subject) -> bool:
        """Whether `subject` may write or delete twins of some class (else a write is refused before any lookup)."""
        return any(role.write is None or role.write for role in self._roles_of(subject))

    def sees_created(self, subject: Subject, cls: str) -> bool:
        """Whether `subject` would see a twin of `cls` just created (no links yet): some role reads the class and no
        row rule of that role restricts it (a rule's predicate is not decided for a twin that is not written yet)."""
        name = self.ontology.get(cls).name
        return any(
            (role.read is None or name in role.read) and not any(name in rule.classes for rule in role.rows)
            for role in self._roles_of(subject)
        )

    # ------------------------------------------------------------------ reads

    def read_scope(self, subject: Subject) -> ReadScope:
        """The restrictions every read path applies for `subject`: rows by class and rule, hidden fields."""
        key = (frozenset(subject.roles), subject.org_unit)
        if key not in self._scopes:
            self._scopes[key] = self._scope(subject)
        return self._scopes[key]

    def _aggregate_scope(self, subject: Subject) -> ReadScope:
        """The scope of a private aggregate over a class the subject may only aggregate: its roles as if they read
        their `aggregate:` classes too (field modes still apply: hidden fields are neither grouped nor filtered)."""
        key = (frozenset(subject.roles), subject.org_unit)
        if key not in self._aggregate_scopes:
            roles = []
            for role in self._roles_of(subject):
                if role.aggregate_only and role.read is not None and role.read_or_above is not None:
                    extra = role.aggregate_only
                    above = {self.ontology.classes[a].name for c in extra for a in self.ontology.ancestors(c)}
                    role = replace(role, read=role.read | extra, read_or_above=role.read_or_above | extra | above)
                roles.append(role)
            self._aggregate_scopes[key] = self._scope(subject, roles)
        return self._aggregate_scopes[key]

    def _scope(self, subject: Subject, given: list[_Role] | None = None) -> ReadScope:
        roles = self._roles_of(subject) if given is None else given
        if not roles:
            return ReadScope(readable_classes=frozenset())
        params: dict[str, Any] = {}
        if subject.org_unit is not None:
            params["scope_org_unit"] = subject.org_unit
        alternatives: list[str] = []
        scan_alternatives: list[str] = []
        joins: list[ScopeJoin] = []
        readable: set[str] | None = set()
        for role in roles:
            clauses, scan_clauses = [], []
            if role.read is not None:
                if not role.read:
                    continue
                # scans of a single role leave the class check to readable_classes, which can skip it
                clauses.append("(" + " OR ".join(f"{{n}}:`{c}`" for c in sorted(role.read)) + ")")
            for rule in role.rows:
                guard = " OR ".join(f"{{n}}:`{c}`" for c in rule.classes) or "false"
                satisfied = all(self._has(subject, need) for need in rule.needs)
                clauses.append(f"(NOT ({guard}) OR ({rule.predicate if satisfied else 'false'}))")
                if satisfied and rule.scan is not None:
                    joins.append(rule.scan)  # scans evaluate this rule as a join instead
                else:
                    scan_clauses.append(clauses[-1])
            alternatives.append(" AND ".join(clauses) if clauses else "true")
            scan_alternatives.append(" AND ".join(scan_clauses) if scan_clauses else "true")
            if readable is not None:
                readable = None if role.read is None else readable | role.read
        if not alternatives:
            return ReadScope(readable_classes=frozenset())
        predicate = None if "true" in alternatives else " OR ".join(f"({a})" for a in alternatives)
        hidden = {
            cls.name: frozenset(
                prop
                for prop in self.ontology.properties(cls.id)
                if self._mode(roles, cls.name, self.classification(prop)) != "show"
            )
            for cls in self.ontology.classes.values()
        }
        # A join narrows every alternative at once, so it stands in for its rule only when one role decides.
        use_joins = bool(joins) and len(alternatives) == 1
        return ReadScope(
            predicate=predicate,
            params=params,
            hidden={name: fields for name, fields in hidden.items() if fields},
            readable_classes=None if readable is None else frozenset(readable),
            joins=tuple(joins) if use_joins else (),
            scan_predicate=(None if scan_alternatives[0] == "true" else scan_alternatives[0]) if use_joins else None,
            hidden_states=HIDDEN,  # retired twins, unless a read opts in (ReadScope.including_retired)
        )

    @staticmethod
    def _has(subject: Subject, need: str) -> bool:
        return need == "org_unit" and bool(subject.org_unit)

    def _mode(self, roles: list[_Role], cls: str, classification: str | None) -> MaskMode:
        """The most revealing mode among the roles that read `cls` twins, with one exception for row rules.

        A role whose row rules restrict `cls` (hr: people of its own unit) may see fields of those rows only. Field
        modes are decided per class, not per row, so when another role admits `cls` rows without such a rule, only
        the unrestricted roles' modes count, and a role combination never shows a row-ruled role's fields on rows
        outside its rule. Several row-ruled roles alone get the most restrictive of their modes.
        """
        readers = [role for role in roles if role.read_or_above is None or cls in role.read_or_above]
        if not readers:
            return "null"
        if len(readers) > 1:
            ruled = [role for role in readers if self._rules_rows_of(role, cls)]
            if ruled and len(ruled) < len(readers):
                readers = [role for role in readers if role not in ruled]
            elif ruled:
                return max((role.mode_for(classification) for role in readers), key=_MODE_ORDER.index)
        return min((role.mode_for(classification) for role in readers), key=_MODE_ORDER.index)

    def _rules_rows_of(self, role: _Role, cls: str) -> bool:
        """Whether a row rule of `role` restricts twins of class `cls` (or of one of its subclasses)."""
        if not role.rows or cls not in self.ontology:
            return bool(role.rows)
        return any(
            rule_cls in self.ontology and (self.ontology.is_a(cls, rule_cls) or self.ontology.is_a(rule_cls, cls))
            for rule in role.rows
            for rule_cls in rule.classes
        )

    def classification(self, field_name: str) -> str:
        """The classification a value of property `field_name` is masked by, whichever class holds it.

        A value keeps its classification when its twin changes class, and history and lineage keep values written under
        former classes: so a property name is classified as strictly as any class of the ontology classifies it (a name
        no class defines counts as Internal).
        """
        return self._strictest.get(field_name, DEFAULT_CLASSIFICATION)

    def field_mode(self, subject: Subject, cls: str, field_name: str) -> MaskMode:
        """How `field_name` of a `cls` twin is shown to `subject`."""
        return self._mode(self._roles_of(subject), self.ontology.get(cls).name, self.classification(field_name))

    def relationship_field_mode(self, subject: Subject, classification: str | None) -> MaskMode:
        """How a property of a relationship (a link between two twins the subject may see) is shown to `subject`."""
        modes = [role.mode_for(classification) for role in self._roles_of(subject)]
        return min(modes, key=_MODE_ORDER.index) if modes else "null"

    def _field_modes(self, subject: Subject, cls: str) -> dict[str, MaskMode]:
        """Mode per property of `cls` for the subject's roles (only the fields that are not shown)."""
        key = (frozenset(subject.roles), cls)
        modes = self._modes.get(key)
        if modes is None:
            roles = self._roles_of(subject)
            name = self.ontology.get(cls).name if cls in self.ontology else cls
            # every property name any class defines: a twin may hold one its class does not (a former class's)
            modes = {
                prop: mode
                for prop, classification in self._strictest.items()
                if (mode := self._mode(roles, name, classification)) != "show"
            }
            modes[""] = self._mode(roles, name, DEFAULT_CLASSIFICATION)  # for fields the ontology does not know
            self._modes[key] = modes
        return modes

    def shows_every_field(self, subject: Subject, cls: str) -> bool:
        """Whether `mask` leaves every field of a `cls` twin as stored for `subject` (decided once per roles, class)."""
        modes = self._field_modes(subject, cls)
        return len(modes) == 1 and modes[""] == "show"

    def unreadable(self, subject: Subject, cls: str, names: Iterable[str]) -> set[str]:
        """The properties among `names` of a `cls` twin that `subject` may not read (nor write, nor remove)."""
        modes = self._field_modes(subject, cls)
        known = self._strictest
        return {name for name in names if (modes.get(name, "show") if name in known else modes[""]) != "show"}

    def sensitive(self, cls: str, classifications: frozenset[str] = SENSITIVE_CLASSIFICATIONS) -> bool:
        """Whether twins of `cls` (or of a subclass) hold properties of `classifications` (personal or confidential
        by default): aggregates over them fall under the roles' privacy settings."""
        key = (cls, classifications)
        cached = self._sensitive.get(key)
        if cached is None:
            names = [cls, *(self.ontology.classes[d].name for d in self.ontology.descendants(cls))]
            cached = any(
                prop.classification in classifications
                for name in names
                for prop in self.ontology.properties(name).values()
            )
            self._sensitive[key] = cached
        return cached

    def aggregate_mode(self, subject: Subject, cls: str) -> AggregateMode:
        """How `subject`'s aggregates over `cls` are answered: exact, with differential privacy from a role's budget,
        or not at all. A role that reads the class and may answer exactly wins (the union of what roles allow); then a
        role with a privacy budget (the first by name)."""
        under = {cls, *(self.ontology.classes[d].name for d in self.ontology.descendants(cls))}
        roles = [r for r in self._roles_of(subject) if r.read is None or under & r.read]
        if not roles:
            for role in self._roles_of(subject):
                if role.privacy is not None and under & role.aggregate_only:
                    scope = self._aggregate_scope(subject)
                    return AggregateMode(
                        "private", f"role {role.name} may aggregate {cls} privately", role.privacy, scope
                    )
        for role in roles:
            if role.privacy is not None:
                if not self.sensitive(cls, role.privacy.classifications):
                    return AggregateMode("exact", f"role {role.name}'s privacy budget does not cover {cls}")
            elif role.sensitive_aggregates == "exact" or not self.sensitive(cls):
                return AggregateMode("exact", f"role {role.name} sees exact aggregates of {cls}")
        for role in roles:
            if role.privacy is not None:
                return AggregateMode("private", f"role {role.name} has a privacy budget", role.privacy)
        return AggregateMode("none", f"no role of {subject.sub} may aggregate {cls} (personal or confidential)")

    def mask_value(self, value: Any, mode: MaskMode) -> Any:
        """One value masked as `mask_value` does, `hash` keyed with this deployment's digest key."""
        return mask_value(value, mode, self.digest_key)

    def mask(self, subject: Subject, record: TwinRecord) -> MaskedTwin:
        """The twin with every field masked as the subject's roles require."""
        modes = self._field_modes(subject, record.cls)
        if len(modes) == 1 and modes[""] == "show":
            return MaskedTwin(record.uid, record.cls, record.labels, dict(record.properties))
        known = self._strictest
        shown: dict[str, Any] = {}
        masked: dict[str, str] = {}
        for name, value in record.properties.items():
            mode = modes.get(name, "show") if name in known else modes[""]
            if mode == "show":
                shown[name] = value
                continue
            masked[name] = mode
            if mode != "null":
                shown[name] = mask_value(value, mode, self.digest_key)
        return MaskedTwin(record.uid, record.cls, record.labels, shown, masked)


def _strictest_classifications(ontology: Ontology) -> dict[str, str]:
    """Property name -> the strictest classification any class of `ontology` gives it (absent = Internal)."""
    rank = {level: i for i, level in enumerate(CLASSIFICATIONS)}
    strictest: dict[str, str] = {}
    for cls in ontology.classes.values():
        for name, definition in ontology.properties(cls.id).items():
            level = definition.classification or DEFAULT_CLASSIFICATION
            level = level if level in rank else CLASSIFICATIONS[-1]  # unknown: the most sensitive
            if rank[level] > rank.get(strictest.get(name, CLASSIFICATIONS[0]), 0):
                strictest[name] = level
            else:
                strictest.setdefault(name, level)
    return strictest


def mask_value(value: Any, mode: MaskMode, digest_key: bytes | None = None) -> Any:
    """One value masked: redact -> '***', hash -> 'sha256:<12 hex>' (HMAC under the deployment's digest key),
    partial -> first and last characters."""
    if mode == "show" or value is None:
        return value
    if mode == "null":
        return None
    if mode == "hash":
        return "sha256:" + keyed_text_digest(str(value), digest_key)[:12]
    if mode == "partial" and isinstance(value, str) and len(value) > 4:
        return f"{value[0]}{REDACTED}{value[-2:]}"
    return REDACTED


def load_policy(
    ontology: Ontology | None = None, path: Path | str | None = None, digest_key: bytes | None = None
) -> Policy:
    """The policy from a YAML file (default: the bundled governance/policies/default.yaml)."""
    if ontology is None:  # the core is parsed with rdflib (slow to import): only when no ontology is given
        from ontology.core import load_core

        ontology = load_core()
    if path is None:
        text = resources.files("governance").joinpath("policies/default.yaml").read_text(encoding="utf-8")
        source = "default.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from None
        source = str(path)
    try:
        spec = load_yaml(text, source)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {source} is not valid YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise PolicyError(f"policy {source} must be a mapping with `version` and `roles`")
    return Policy(spec, ontology, source, digest_key)
