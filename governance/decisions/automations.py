"""Automations: `automations.yaml` in the data directory — what the twin watches, the condition that must hold, and
what follows (an alert, a proposed action).

    automations:
      reorder-materials:
        role: data_steward                   # reads the twin and proposes as this role (the policy applies)
        trigger:
          change: {class: Material, properties: [stockLevel], kinds: [create, update]}
          # or: schedule: {class: Machine, every: 15m}  (each twin of the class, every 15 minutes)
        neighbours: {hops: 1, via: [supplies]}            # `neighbours`: twins within N hops (list of maps)
        telemetry:                                        # `telemetry.temp.mean` (last, mean, min, max, count)
          temp: {metric: temperature, window: 15m}
        condition: "twin.stockLevel < 40.0 && neighbours.exists(n, n.cls == 'Supplier')"
        alert: {severity: warning, key: "'reorder:' + twin.uid", message: "'low stock: ' + twin.name"}
        action:
          type: erp.purchase_order
          approval: manual                                # or automatic, where the policy allows it
          parameters: {material: "twin.uid", quantity: "100.0",
                       supplier: "neighbours.filter(n, n.cls == 'Supplier')[0].uid"}

Conditions, keys, messages and parameters are CEL (governance/expressions.py), compiled once at load.
Everything is checked at load — expressions, classes, properties (`twin.X` must be a property of the trigger's
class that the role may read), relationship types, action types and their approval policy — and an error names the
file, the line and the term. A set loads whole or not at all: `AutomationRegistry.reload` keeps the previous set
running when the new file is wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from governance.decisions.actions import ActionTypes
from governance.expressions import Expression, ExpressionError, compile_expression
from governance.identity import Subject
from governance.policy import Policy
from ontology.errors import UnknownTerm
from ontology.model import Ontology
from ontology.safe_yaml import compose_yaml

MAX_AUTOMATIONS_FILE_BYTES = 1_000_000
MAX_HOPS = 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TWIN_FIELDS = frozenset({"uid", "cls"})  # bound beside a twin's properties
Kind = Literal["create", "update", "delete"]
TriggerKind = Literal["change", "schedule", "anomaly", "forecast", "study"]
TRIGGER_KINDS: tuple[str, ...] = ("change", "schedule", "anomaly", "forecast", "study")
EVENT_TRIGGERS = {"anomaly": "anomaly", "forecast": "forecast", "study": "study"}  # trigger -> its feed kind
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class AutomationError(ValueError):
    """An automations file is malformed or names something unknown; the message names file, line and term."""


class _ChangeTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: str = Field(alias="class")
    properties: list[str] | None = None
    kinds: list[Kind] = Field(default_factory=lambda: list[Kind](["create", "update"]), min_length=1)


class _ScheduleTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: str = Field(alias="class")
    every: str


class _AnomalyTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: str = Field(alias="class")
    metrics: list[str] | None = None
    kinds: list[Literal["spike", "level_shift"]] = Field(
        default_factory=lambda: list[Literal["spike", "level_shift"]](["spike", "level_shift"]), min_length=1
    )


class _ForecastTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: str = Field(alias="class")
    series: list[str] | None = None


class _StudyTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cls: str = Field(alias="class")
    studies: list[str] | None = None


class _TriggerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    change: _ChangeTrigger | None = None
    schedule: _ScheduleTrigger | None = None
    anomaly: _AnomalyTrigger | None = None
    forecast: _ForecastTrigger | None = None
    study: _StudyTrigger | None = None


class _NeighboursSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hops: int = Field(default=1, ge=1, le=MAX_HOPS)
    via: list[str] = Field(default_factory=list)


class _TelemetrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(min_length=1, max_length=128)
    window: str


class _AlertSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: Literal["info", "warning", "critical"] = "warning"
    key: str | None = None
    message: str | None = None


class _ActionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    approval: Literal["manual", "automatic"] = "manual"
    parameters: dict[str, str] = Field(default_factory=dict)


class _AutomationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    enabled: bool = True
    role: str
    trigger: _TriggerSpec
    neighbours: _NeighboursSpec | None = None
    telemetry: dict[str, _TelemetrySpec] = Field(default_factory=dict)
    condition: str
    alert: _AlertSpec | None = None
    action: _ActionSpec | None = None


@dataclass(frozen=True)
class TelemetryWindow:
    """One declared telemetry window: a metric of the twin over the last `seconds`."""

    alias: str
    metric: str
    seconds: float


@dataclass(frozen=True)
class AlertOutput:
    """What an automation raises when its condition holds."""

    severity: str
    key: Expression
    message: Expression | None


@dataclass(frozen=True)
class ActionOutput:
    """The action an automation proposes, its parameters as expressions over the same values as the condition."""

    type: str
    automatic: bool
    parameters: dict[str, Expression]


@dataclass(frozen=True)
class Automation:
    """One checked automation."""

    name: str
    version: str  # a digest of its definition: audit records name the rule and the version that fired
    line: int
    role: str
    cls: str  # the trigger's class (subclasses included in `classes`)
    classes: frozenset[str]
    trigger: TriggerKind
    properties: frozenset[str] | None  # change trigger: updates of these properties only (None = any)
    kinds: frozenset[str]  # change: create/update/delete; anomaly: spike/level_shift
    every_seconds: float | None
    condition: Expression
    hops: int = 0  # 0 = no neighbours bound
    via: tuple[str, ...] = ()
    telemetry: tuple[TelemetryWindow, ...] = ()
    alert: AlertOutput | None = None
    action: ActionOutput | None = None
    reads: frozenset[str] = frozenset()  # properties of the twin the condition and outputs read (the evidence)
    description: str = ""
    enabled: bool = True
    metrics: frozenset[str] | None = None  # anomaly trigger: events of these metrics only (None = any)
    series: frozenset[str] | None = None  # forecast trigger: forecasts of these series only (None = any)
    studies: frozenset[str] | None = None  # study trigger: these studies only, by name (None = any)
    definition: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as written

    def watches_event(self, kind: str, event: Mapping[str, Any]) -> bool:
        """Whether an `anomaly`, `forecast` or `study` event of the feed (its `after` state) is one this rule
        watches."""
        if not self.enabled or EVENT_TRIGGERS.get(self.trigger) != kind:
            return False
        if kind == "anomaly":
            return event.get("kind") in self.kinds and (self.metrics is None or event.get("metric") in self.metrics)
        if kind == "study":
            return self.studies is None or bool({event.get("study"), event.get("name")} & self.studies)
        series = str(event.get("series") or "")
        return self.series is None or series in self.series or series.split("/", 1)[0] in self.series

    @property
    def subject(self) -> Subject:
        """Who the automation acts as: `automation:NAME` with its role."""
        return Subject(sub=f"automation:{self.name}", roles=frozenset({self.role}))


@dataclass(frozen=True)
class AutomationSet:
    """A loaded set of automations, with change rules indexed by (class, property)."""

    automations: tuple[Automation, ...] = ()
    source: str = ""
    _index: Mapping[tuple[str, str], tuple[Automation, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, automations: Sequence[Automation], source: str = "") -> AutomationSet:
        """The set with its index: (class, property) -> the change rules watching it; (class, '*') -> those
        watching every property of the class."""
        index: dict[tuple[str, str], list[Automation]] = {}
        for rule in automations:
            if rule.trigger != "change" or not rule.enabled:
                continue
            for name in rule.classes:
                for prop in rule.properties if rule.properties is not None else ("*",):
                    index.setdefault((name, prop), []).append(rule)
        return cls(tuple(automations), source, {key: tuple(rules) for key, rules in index.items()})

    def watching(self, cls: str | None, op: str, changed: Sequence[str]) -> list[Automation]:
        """The change rules a twin change of class `cls` (`op`, properties `changed`) must evaluate, each once."""
        if cls is None:
            return []
        found: dict[str, Automation] = {}
        for rule in self._index.get((cls, "*"), ()):
            if op in rule.kinds:
                found.setdefault(rule.name, rule)
        for prop in changed:
            for rule in self._index.get((cls, prop), ()):
                if op in rule.kinds:
                    found.setdefault(rule.name, rule)
        return list(found.values())

    def scheduled(self) -> list[Automation]:
        """The enabled schedule rules."""
        return [rule for rule in self.automations if rule.trigger == "schedule" and rule.enabled]

    def on_events(self, kind: str, cls: str | None, event: Mapping[str, Any]) -> list[Automation]:
        """The enabled rules an `anomaly` or `forecast` event of a twin of class `cls` must evaluate."""
        if cls is None:
            return []
        return [rule for rule in self.automations if cls in rule.classes and rule.watches_event(kind, event)]

    @property
    def event_kinds(self) -> frozenset[str]:
        """The feed kinds besides twin changes that some enabled rule watches."""
        return frozenset(
            EVENT_TRIGGERS[r.trigger] for r in self.automations if r.enabled and r.trigger in EVENT_TRIGGERS
        )

    def get(self, name: str) -> Automation | None:
        """The automation called `name`."""
        return next((rule for rule in self.automations if rule.name == name), None)


class AutomationRegistry:
    """The set of automations running now; a reload replaces it whole, or not at all."""

    def __init__(self, path: Path, ontology: Ontology, policy: Policy, action_types: ActionTypes) -> None:
        self.path = path
        self.ontology = ontology
        self.policy = policy
        self.action_types = action_types
        self._lock = threading.Lock()
        self._current = AutomationSet(source=str(path))
        self.last_error: str | None = None

    @property
    def current(self) -> AutomationSet:
        """The set in force."""
        with self._lock:
            return self._current

    def reload(self) -> AutomationSet:
        """Load the file again; on an AutomationError the previous set stays in force (and the error is raised)."""
        try:
            loaded = load_automations(self.path, self.ontology, self.policy, self.action_types)
        except AutomationError as exc:
            self.last_error = str(exc)
            raise
        with self._lock:
            self._current = loaded
            self.last_error = None
        return loaded


def load_automations(path: Path, ontology: Ontology, policy: Policy, action_types: ActionTypes) -> AutomationSet:
    """The automations of `path` (an empty set when the file does not exist), all checked; AutomationError naming
    file, line and term otherwise."""
    if not path.is_file():
        return AutomationSet(source=str(path))
    if path.stat().st_size > MAX_AUTOMATIONS_FILE_BYTES:
        raise AutomationError(f"{path}: larger than {MAX_AUTOMATIONS_FILE_BYTES:,} bytes")
    return parse_automations(path.read_text(encoding="utf-8"), path, ontology, policy, action_types)


def parse_automations(
    text: str, path: Path, ontology: Ontology, policy: Policy, action_types: ActionTypes
) -> AutomationSet:
    """The automations of the YAML `text` (as if read from `path`), all checked; AutomationError naming file, line
    and term otherwise."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_AUTOMATIONS_FILE_BYTES:
        raise AutomationError(f"{path}: larger than {MAX_AUTOMATIONS_FILE_BYTES:,} bytes")
    try:
        root = compose_yaml(text, str(path))
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AutomationError(
            f"{path}:{mark.line + 1 if mark else 1}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    rules = document.get("automations") if isinstance(document, dict) else None
    if rules is None and isinstance(document, dict) and "automations" in document:
        rules = {}  # `automations:` with nothing under it: no automation
    if not isinstance(rules, dict):
        raise AutomationError(f"{path}:1: needs an `automations:` mapping of automation name -> automation")
    _check_names(root, path)
    nodes = _rule_nodes(root)
    checker = _Checker(ontology, policy, action_types)
    loaded = [
        checker.automation(str(name), body, _Where(path, str(name), nodes.get(str(name))))
        for name, body in rules.items()
    ]
    _check_telemetry_aliases(loaded, path)
    return AutomationSet.of(loaded, str(path))


def _check_names(root: yaml.Node | None, path: Path) -> None:
    """Each automation's name is well formed and appears once (YAML would keep the last of two silently)."""
    found = _child(root, "automations")
    if not isinstance(found, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key, _ in found.value:
        name, line = str(key.value), key.start_mark.line + 1
        if not NAME.match(name):
            raise AutomationError(
                f"{path}:{line}: automation name {name[:60]!r} must be 1-128 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if name in seen:
            raise AutomationError(f"{path}:{line}: automation {name!r} is defined twice (first on line {seen[name]})")
        seen[name] = line


@dataclass(frozen=True)
class _Where:
    """Where in the file an automation is, to name the line of a term."""

    path: Path
    name: str
    node: yaml.Node | None

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1 if self.node is not None else 1

    def at(self, *keys: str | int) -> str:
        """`file:line: automation NAME: a.b.c` for the deepest node of `keys` the file holds."""
        node, line = self.node, self.line
        for key in keys:
            child = _child(node, key)
            if child is None:
                break
            node, line = child, child.start_mark.line + 1
        dotted = ".".join(str(k) for k in keys)
        return f"{self.path}:{line}: automation {self.name!r}" + (f": {dotted}" if dotted else "")

    def error(self, message: str, *keys: str | int) -> AutomationError:
        return AutomationError(f"{self.at(*keys)}: {message}")


def _child(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                child: yaml.Node = v
                return child
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item: yaml.Node = node.value[key]
        return item
    return None


def _rule_nodes(root: yaml.Node | None) -> dict[str, yaml.Node]:
    """Automation name -> its node (for lines)."""
    found = _child(root, "automations")
    if not isinstance(found, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in found.value}


def _duration(text: str) -> float | None:
    match = _DURATION.match(str(text))
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None


class _Checker:
    def __init__(self, ontology: Ontology, policy: Policy, action_types: ActionTypes) -> None:
        self.ontology = ontology
        self.policy = policy
        self.action_types = action_types
        self._event: str | None = None  # the event the automation being checked binds (anomaly, forecast)

    def automation(self, name: str, body: Any, where: _Where) -> Automation:
        try:
            spec = _AutomationSpec.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            keys = [str(p) if not isinstance(p, int) else p for p in first["loc"]]
            keys = ["class" if k == "cls" else k for k in keys]
            raise where.error(first["msg"], *keys) from None
        if spec.role not in self.policy.roles:
            raise where.error(f"unknown role {spec.role!r}; known: {', '.join(sorted(self.policy.roles))}", "role")
        trigger = spec.trigger
        chosen_kinds = [k for k in TRIGGER_KINDS if getattr(trigger, k) is not None]
        if len(chosen_kinds) != 1:
            raise where.error(
                "a trigger is exactly one of `change:`, `schedule:`, `anomaly:` or `forecast:`", "trigger"
            )
        kind: TriggerKind = chosen_kinds[0]  # type: ignore[assignment]
        chosen = getattr(trigger, kind)
        cls_name = chosen.cls
        try:
            cls = self.ontology.get(cls_name)
        except UnknownTerm:
            raise where.error(f"unknown class {cls_name!r}", "trigger", kind, "class") from None
        subject = Subject(sub=f"automation:{name}", roles=frozenset({spec.role}))
        if not self.policy.decide(subject, "read", cls.name).allowed:
            raise where.error(f"role {spec.role!r} may not read {cls.name}", "trigger", kind, "class")
        known = set(self.ontology.properties(cls.id))
        properties = None
        every = None
        metrics = series = studies = None
        kinds = frozenset({"create", "update"})
        if trigger.change is not None:
            for i, prop in enumerate(trigger.change.properties or ()):
                if prop not in known:
                    raise where.error(f"unknown property {prop!r} of {cls.name}", "trigger", "change", "properties", i)
            properties = frozenset(trigger.change.properties) if trigger.change.properties is not None else None
            kinds = frozenset(trigger.change.kinds)
        elif trigger.anomaly is not None:
            kinds = frozenset(trigger.anomaly.kinds)
            metrics = frozenset(trigger.anomaly.metrics) if trigger.anomaly.metrics is not None else None
        elif trigger.forecast is not None:
            kinds = frozenset({"create"})
            series = frozenset(trigger.forecast.series) if trigger.forecast.series is not None else None
        elif trigger.study is not None:
            kinds = frozenset({"create"})
            studies = frozenset(trigger.study.studies) if trigger.study.studies is not None else None
        elif trigger.schedule is not None:
            every = _duration(trigger.schedule.every)
            if every is None or every < 1:
                raise where.error(
                    f"`every` is a duration such as 30s, 15m, 1h or 1d (at least 1 s), got "
                    f"{str(trigger.schedule.every)[:40]!r}",
                    "trigger",
                    "schedule",
                    "every",
                )
        classes = frozenset({cls.name, *(self.ontology.classes[d].name for d in self.ontology.descendants(cls.id))})
        hops, via = 0, tuple[str, ...]()
        if spec.neighbours is not None:
            relationships = self.ontology.relationship_types()
            for i, rel in enumerate(spec.neighbours.via):
                if rel not in relationships:
                    raise where.error(f"unknown relationship {rel!r}", "neighbours", "via", i)
            hops, via = spec.neighbours.hops, tuple(spec.neighbours.via)
        windows = []
        for alias, window in spec.telemetry.items():
            seconds = _duration(window.window)
            if seconds is None or seconds < 1:
                raise where.error(
                    f"`window` is a duration such as 30s, 15m, 1h or 1d, got {window.window[:40]!r}",
                    "telemetry",
                    alias,
                    "window",
                )
            windows.append(TelemetryWindow(alias, window.metric, seconds))
        self._event = EVENT_TRIGGERS.get(kind)
        condition = self._expression(spec.condition, where, known, cls.name, subject, hops, "condition")
        reads = set(self._twin_reads(condition))
        alert = None
        if spec.alert is not None:
            key = self._expression(
                spec.alert.key or f"{json.dumps(name + ':')} + twin.uid",
                where,
                known,
                cls.name,
                subject,
                hops,
                "alert",
                "key",
            )
            message = (
                self._expression(spec.alert.message, where, known, cls.name, subject, hops, "alert", "message")
                if spec.alert.message
                else None
            )
            alert = AlertOutput(spec.alert.severity, key, message)
            reads |= set(self._twin_reads(key)) | (set(self._twin_reads(message)) if message else set())
        action = None
        if spec.action is not None:
            action = self._action(spec.action, where, known, cls.name, subject, hops)
            for expression in action.parameters.values():
                reads |= set(self._twin_reads(expression))
        if alert is None and action is None:
            raise where.error("an automation needs an `alert:`, an `action:` or both")
        version = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return Automation(
            name=name,
            version=version,
            line=where.line,
            role=spec.role,
            cls=cls.name,
            classes=classes,
            trigger=kind,
            properties=properties,
            kinds=kinds,
            every_seconds=every,
            condition=condition,
            hops=hops,
            via=via,
            telemetry=tuple(windows),
            alert=alert,
            action=action,
            reads=frozenset(reads - TWIN_FIELDS),
            description=spec.description,
            enabled=spec.enabled,
            metrics=metrics,
            series=series,
            studies=studies,
            definition=body if isinstance(body, dict) else {},
        )

    def _expression(
        self, source: str, where: _Where, known: set[str], cls: str, subject: Subject, hops: int, *keys: str
    ) -> Expression:
        """A compiled expression whose `twin.X` are properties of `cls` the role may read."""
        try:
            expression = compile_expression(source)
        except ExpressionError as exc:
            raise where.error(f"expression error: {exc}", *keys) from None
        for prop in self._twin_reads(expression):
            if prop not in known and prop not in TWIN_FIELDS:
                raise where.error(f"unknown property {prop!r} of {cls} in {source[:80]!r}", *keys)
            if prop in known and self.policy.unreadable(subject, cls, [prop]):
                raise where.error(f"role {sorted(subject.roles)[0]!r} may not read {cls}.{prop}", *keys)
        if "neighbours" in expression.names and hops == 0:
            raise where.error("reads `neighbours` but declares no `neighbours: {hops: N}`", *keys)
        for event in ("anomaly", "forecast", "study"):
            if event in expression.names and self._event != event:
                raise where.error(f"reads `{event}`, which only an `{event}:` trigger binds", *keys)
        return expression

    @staticmethod
    def _twin_reads(expression: Expression) -> list[str]:
        return [attribute for name, attribute in expression.paths if name == "twin"]

    def _action(
        self, spec: _ActionSpec, where: _Where, known: set[str], cls: str, subject: Subject, hops: int
    ) -> ActionOutput:
        action_type = self.action_types.get(spec.type)
        if action_type is None:
            raise where.error(
                f"unknown action type {spec.type!r}; known: {', '.join(self.action_types.names())}", "action", "type"
            )
        rule = self.policy.approvals.get(spec.type)
        if rule is None:
            raise where.error(f"the policy has no approval rule for action type {spec.type!r}", "action", "type")
        if spec.approval == "automatic" and not rule.automatic:
            raise where.error(f"the policy does not allow {spec.type!r} to run without approval", "action", "approval")
        fields = action_type.parameters.model_fields
        for name in spec.parameters:
            if name not in fields:
                raise where.error(
                    f"unknown parameter {name!r} of {spec.type}; known: {', '.join(fields)}",
                    "action",
                    "parameters",
                    name,
                )
        missing = [name for name, f in fields.items() if f.is_required() and name not in spec.parameters]
        if missing:
            raise where.error(f"{spec.type} needs parameter(s) {', '.join(missing)}", "action", "parameters")
        parameters = {
            name: self._expression(text, where, known, cls, subject, hops, "action", "parameters", name)
            for name, text in spec.parameters.items()
        }
        return ActionOutput(spec.type, spec.approval == "automatic", parameters)


def _check_telemetry_aliases(rules: Sequence[Automation], path: Path) -> None:
    """A telemetry alias means one window in every automation (a twin's values are bound once for all its rules)."""
    seen: dict[str, tuple[TelemetryWindow, Automation]] = {}
    for rule in rules:
        for window in rule.telemetry:
            first = seen.setdefault(window.alias, (window, rule))
            if (first[0].metric, first[0].seconds) != (window.metric, window.seconds):
                raise AutomationError(
                    f"{path}:{rule.line}: automation {rule.name!r}: telemetry.{window.alias}: "
                    f"already means {first[0].metric} over {first[0].seconds:g} s in automation "
                    f"{first[1].name!r}"
                )
