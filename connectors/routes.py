"""Event routes: which changes of the twin leave for which endpoint, as whom, and in what shape (`routes.yaml`).

In the data directory's `routes.yaml`::

    routes:
      plant-a-people:
        endpoint: nats://127.0.0.1:4222/TWIN/twin          # nats | kafka | amqp | redis | mqtt | http(s) webhook
        role: executive                                    # the route sees and sends only what this role may read
        org_unit: plant-a                                  # for roles with row rules (hr: its unit's people)
        filter:
          classes: [Employee, OrgUnit]                     # twins of these classes and their subclasses
          link_types: [worksIn]                            # links of these types
          kinds: [twin, link]                              # default both; also anomaly, forecast, study (events)
          ops: [create, update, delete]                    # default all
          properties: [name, jobTitle]                     # updates only when one of these changed
          condition: 'op == "update" && after.jobTitle == "Director"'   # CEL, on the change as the role sees it
        payload: patch                                     # patch (RFC 6902 of the change) | twin (the state after)
        secret: ${PLANT_WEBHOOK_SECRET}                    # webhooks: the HMAC key, from the environment

A change passes the filter when its kind and operation are listed and, for a twin, its class is (under) one of
`classes` (if given) and, for an update, one of `properties` changed (if given); for a link, its type is one of
`link_types` (if given), and then the `condition` (a CEL expression, compiled once at load; see
`RouteCondition` below) holds. Errors name the file, the route's line and the field.

An OpenLineage route sends the START and COMPLETE/FAIL run events of every connector sync run to an OpenLineage
HTTP endpoint (Marquez and others; connectors/openlineage_route.py), with the same delivery guarantees::

    routes:
      lineage:
        openlineage: http://127.0.0.1:5000/api/v1/lineage
        role: steward                                      # must be allowed the `lineage.export` operation
        api_key: ${MARQUEZ_API_KEY}                        # optional: sent as `Authorization: Bearer ...`

The `data` of a twin event's patch is computed from the stored before/after property maps of the change: one `add`,
`remove` or `replace` per top-level property that differs (a changed structured value is replaced whole), which is
an RFC 6902 patch that turns the state before into the state after.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.events.cloudevent import TwinEvent
from governance.change_view import ChangeView
from governance.expressions import Expression, ExpressionError, compile_expression
from governance.roles import ROLE_NAMES
from graph.feed import FeedChange
from ontology.errors import UnknownTerm
from ontology.model import Ontology

MAX_ROUTES_FILE_BYTES = 1_000_000
_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VERB = {"create": "created", "update": "updated", "delete": "deleted"}


class RouteError(ValueError):
    """A routes file is malformed or names something unknown; the message names file, line, route and field."""


log = logging.getLogger(__name__)

#: The variables a route condition may use: the change as the route's role sees it.
CONDITION_VARIABLES = {
    "kind": "twin | link | anomaly | forecast | study",
    "op": "create | update | delete",
    "class": "the twin's class (links: null)",
    "uid": "the twin, or the link's source",
    "relationship": "the link's type (twins: null)",
    "target": "the link's target (twins: null)",
    "changed": "names of the properties whose (visible) value changed",
    "before": "property map before the change, masked as the role sees it ({} for a create)",
    "after": "property map after the change, masked as the role sees it ({} for a delete)",
    "actor": "who made the change (sync run, mutation, migration, erasure)",
    "source": "the connector's source record, where there is one",
}
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_SELECTED = re.compile(r"\b(?:before|after)\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(['\"])([^'\"]+)\2\s*\])")
_IN_CHANGED = re.compile(r"(['\"])([^'\"]+)\1\s+in\s+changed\b")
WARN_EVERY_SECONDS = 60.0  # a condition that keeps failing is logged at most this often per route


class ConditionError(ValueError):
    """A route condition does not compile or names a variable or property the route cannot see."""


class RouteCondition:
    """A route's CEL condition (common-expression-language), compiled once at load and evaluated per change.

    An evaluation error (a property the change lacks, a type mismatch) or a result that is not a boolean counts
    as not matched: the change is skipped, `errors` counts it (the route's status and /metrics show it) and a
    warning is logged at most once a minute per route. It never suspends the route.
    """

    def __init__(self, expression: Expression, route: str = "") -> None:
        self.expression = expression
        self.source = expression.source
        self.route = route
        self.errors = 0
        self._warned_at = float("-inf")

    @classmethod
    def compile(
        cls, expression: str, ontology: Ontology, classes: frozenset[str] | None, route: str = ""
    ) -> RouteCondition:
        """Compile `expression`; ConditionError naming the expression and the problem."""
        try:
            compiled = compile_expression(expression)
        except ExpressionError as exc:
            raise ConditionError(f"{expression!r} is not a valid CEL expression: {exc}") from None
        bound = set(_BOUND.findall(expression))
        unknown = sorted(compiled.names - set(CONDITION_VARIABLES) - bound)
        if unknown:
            raise ConditionError(
                f"{expression!r} uses unknown variable(s) {', '.join(unknown)}; known: {', '.join(CONDITION_VARIABLES)}"
            )
        known = _condition_properties(ontology, classes)
        named = {m.group(1) or m.group(3) for m in _SELECTED.finditer(expression)}
        named |= {m.group(2) for m in _IN_CHANGED.finditer(expression)}
        missing = sorted(named - known)
        if missing:
            scope = "no class the route carries nor any link" if classes is not None else "no class or link"
            raise ConditionError(f"{expression!r} names the property {missing[0]!r}, which {scope} has")
        return cls(compiled, route)

    def holds(self, change: FeedChange) -> bool:
        """Whether the (masked) change satisfies the condition; False, counted and logged, when it cannot be told."""
        before, after = change.before or {}, change.after or {}
        changed = [k for k in after if k not in before or before[k] != after[k]]
        changed += [k for k in before if k not in after]
        context = {
            "kind": change.kind,
            "op": change.op,
            "class": change.cls,
            "uid": change.uid,
            "relationship": change.link_type,
            "target": change.target,
            "changed": changed,
            "before": before,
            "after": after,
            "actor": change.actor,
            "source": change.source,
        }
        try:
            result = self.expression.evaluate(context)
        except ExpressionError as exc:
            self._failed(change, str(exc))
            return False
        if not isinstance(result, bool):
            self._failed(change, f"the result is {type(result).__name__}, not a boolean")
            return False
        return result

    def _failed(self, change: FeedChange, problem: str) -> None:
        """Count a change the condition could not decide; warn now and then (never with a value)."""
        self.errors += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(
                "route %s: condition %r could not be evaluated on change %s (%s): %s; counted as not "
                "matched (%d so far)",
                self.route,
                self.source,
                change.seq,
                change.uid,
                problem,
                self.errors,
            )


def _condition_properties(ontology: Ontology, classes: frozenset[str] | None) -> set[str]:
    """The property names a condition may select: of the route's classes (or every class) and of every link."""
    names: set[str] = set()
    for cls in ontology.classes.values():
        if classes is None or cls.name in classes:
            names |= set(ontology.properties(cls.id))
    for relations in ontology.relationship_types().values():
        for _, rel in relations:
            names |= {p.name for p in rel.properties}
    return names


ChangeKind = Literal["twin", "link", "anomaly", "forecast", "study"]
ChangeOp = Literal["create", "update", "delete"]
_ALL_KINDS: tuple[ChangeKind, ...] = ("twin", "link")  # the default; `anomaly`, `forecast`, `study` events on request
_EVENT_KINDS = frozenset({"anomaly", "forecast", "study"})  # events about a twin (simulation/), not changes of it
_EVENT_VERB = {"anomaly": "detected", "forecast": "made", "study": "finished"}
_ALL_OPS: tuple[ChangeOp, ...] = ("create", "update", "delete")


class _FilterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[str] | None = None
    link_types: list[str] | None = None
    kinds: list[ChangeKind] = Field(default_factory=lambda: list(_ALL_KINDS), min_length=1)
    ops: list[ChangeOp] = Field(default_factory=lambda: list(_ALL_OPS), min_length=1)
    properties: list[str] | None = None
    condition: str | None = Field(default=None, min_length=1, max_length=4_000)


class _RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(default=None, min_length=1, max_length=2_000)
    openlineage: str | None = Field(default=None, min_length=1, max_length=2_000)
    api_key: str | None = Field(default=None, repr=False)
    role: str
    org_unit: str | None = None
    filter: _FilterSpec = Field(default_factory=_FilterSpec)
    payload: Literal["patch", "twin"] = "patch"
    secret: str | None = Field(default=None, repr=False)
    batch: int = Field(default=200, ge=1, le=5_000)


@dataclass(frozen=True)
class RouteFilter:
    """Which changes a route carries (class names resolved to every class under them)."""

    classes: frozenset[str] | None
    link_types: frozenset[str] | None
    kinds: frozenset[str]
    ops: frozenset[str]
    properties: frozenset[str] | None
    condition: RouteCondition | None = None

    def passes(self, view: ChangeView) -> bool:
        """Whether the (already policy-filtered) change is one the route carries."""
        change = view.change
        if change.kind not in self.kinds or change.op not in self.ops:
            return False
        if change.kind == "link":
            if self.link_types is not None and change.link_type not in self.link_types:
                return False
        else:
            if self.classes is not None and change.cls not in self.classes:
                return False
            if self.properties is not None and change.op == "update":
                before, after = change.before or {}, change.after or {}
                if not any(before.get(p) != after.get(p) for p in self.properties):
                    return False
        return self.condition is None or self.condition.holds(change)


@dataclass(frozen=True)
class Route:
    """One configured event route."""

    name: str
    endpoint: str  # the broker/webhook URL, or the OpenLineage HTTP endpoint of an OpenLineage route
    role: str
    org_unit: str | None
    filter: RouteFilter
    payload: Literal["patch", "twin"]
    secret: str | None
    batch: int
    line: int = 0
    kind: Literal["events", "openlineage"] = "events"
    api_key: str | None = None  # OpenLineage routes: the bearer token
    file: str = "routes.yaml"

    def event(self, view: ChangeView, source: str) -> TwinEvent:
        """The CloudEvent of a change: id = its sequence number, type = kind.verb, data = patch or state after."""
        change = view.change
        data: dict[str, Any] = {
            "seq": change.seq,
            "kind": change.kind,
            "op": change.op,
            "actor": change.actor,
            "runId": change.run_id,
            "source": change.source,
        }
        if change.kind in _EVENT_KINDS:  # an anomaly or forecast event: its evidence, as the route's role sees it
            data.update(className=change.cls, event=change.after or {})
            if view.masked:
                data["masked"] = dict(sorted(view.masked.items()))
            return TwinEvent(
                id=str(change.seq),
                source=source,
                type=f"{change.kind}.{_EVENT_VERB[change.kind]}",
                subject=change.uid,
                time=change.at,
                data=data,
            )
        if change.kind == "twin":
            data["className"] = change.cls
        else:
            data.update(linkType=change.link_type, target=change.target)
        if self.payload == "patch":
            data["patch"] = property_patch(change.before or {}, change.after or {})
        else:
            data["state"] = change.after
        if view.masked:
            data["masked"] = dict(sorted(view.masked.items()))
        return TwinEvent(
            id=str(change.seq),
            source=source,
            type=f"{change.kind}.{_VERB[change.op]}",
            subject=change.uid,
            time=change.at,
            data=data,
        )


def property_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The RFC 6902 patch from one property map to the next: add, remove or replace per top-level property."""
    patch: list[dict[str, Any]] = [{"op": "remove", "path": _pointer(key)} for key in before if key not in after]
    for key, value in after.items():
        if key not in before:
            patch.append({"op": "add", "path": _pointer(key), "value": value})
            continue
        old = before[key]
        if old != value or type(old) is not type(value):  # 1 == 1.0 == True, but the JSON differs
            patch.append({"op": "replace", "path": _pointer(key), "value": value})
    return patch


@functools.lru_cache(maxsize=4_096)
def _pointer(key: str) -> str:
    """The JSON Pointer (RFC 6901) of a top-level member (property names repeat: computed once each)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def load_routes(path: Path, ontology: Ontology, secrets: Mapping[str, str] | None = None) -> list[Route]:
    """The routes of `path` (none when the file does not exist); RouteError naming file, line, route and field."""
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_ROUTES_FILE_BYTES:
        raise RouteError(f"{path}: larger than {MAX_ROUTES_FILE_BYTES:,} bytes")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RouteError(
            f"{path}:{mark.line + 1 if mark else 0}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
        ) from None
    routes = document.get("routes") if isinstance(document, dict) else None
    if not isinstance(routes, dict):
        raise RouteError(f"{path}:1: needs a `routes:` mapping of route name -> route")
    lines = _route_lines(root)
    conditions = _condition_lines(root)
    env = os.environ if secrets is None else secrets
    return [
        _route(
            str(name),
            body,
            ontology,
            env,
            lines.get(str(name), 0),
            f"{path}:{lines.get(str(name), 0)}: route {name!r}",
            str(path),
            f"{path}:{conditions.get(str(name), lines.get(str(name), 0))}: route {name!r}",
        )
        for name, body in routes.items()
    ]


def _route_lines(root: yaml.Node | None) -> dict[str, int]:
    """Route name -> the line its definition starts on."""
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == "routes" and isinstance(value, yaml.MappingNode):
            return {k.value: k.start_mark.line + 1 for k, _ in value.value}
    return {}


def _condition_lines(root: yaml.Node | None) -> dict[str, int]:
    """Route name -> the line of its `filter.condition`, for errors in the expression."""
    found: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return found
    for key, value in root.value:
        if key.value != "routes" or not isinstance(value, yaml.MappingNode):
            continue
        for name, body in value.value:
            for field_key, field_value in body.value if isinstance(body, yaml.MappingNode) else ():
                if field_key.value == "filter" and isinstance(field_value, yaml.MappingNode):
                    for condition_key, _ in field_value.value:
                        if condition_key.value == "condition":
                            found[name.value] = condition_key.start_mark.line + 1
    return found


def _route(
    name: str,
    body: Any,
    ontology: Ontology,
    secrets: Mapping[str, str],
    line: int,
    where: str,
    file: str = "routes.yaml",
    condition_where: str | None = None,
) -> Route:
    """One route checked against the ontology, the roles and the secrets it names."""
    try:
        spec = _RouteSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "route"
        raise RouteError(f"{where}: {field}: {first['msg']}") from None
    if spec.role not in ROLE_NAMES:
        raise RouteError(f"{where}: role: unknown role {spec.role!r}; known: {', '.join(sorted(ROLE_NAMES))}")
    if (spec.endpoint is None) == (spec.openlineage is None):
        raise RouteError(
            f"{where}: endpoint: give either `endpoint` (twin change events) or `openlineage` "
            "(run events to an OpenLineage HTTP endpoint), not both or neither"
        )
    if spec.openlineage is not None:
        return _openlineage_route(name, spec, spec.openlineage, secrets, line, where, file)
    assert spec.endpoint is not None
    if spec.api_key is not None:
        raise RouteError(f"{where}: api_key: only OpenLineage routes take an api_key")
    classes = None
    if spec.filter.classes is not None:
        names: set[str] = set()
        for cls in spec.filter.classes:
            try:
                names |= set(_under(ontology, cls))
            except UnknownTerm:
                raise RouteError(f"{where}: filter.classes: unknown class {cls!r}") from None
        classes = frozenset(names)
    known_links = set(ontology.relationship_types())
    for link_type in spec.filter.link_types or ():
        if link_type not in known_links:
            raise RouteError(f"{where}: filter.link_types: unknown relationship {link_type!r}")
    known_properties = {p for c in ontology.classes.values() for p in ontology.properties(c.id)}
    for prop in spec.filter.properties or ():
        if prop not in known_properties:
            raise RouteError(f"{where}: filter.properties: no class has a property {prop!r}")
    condition = None
    if spec.filter.condition is not None:
        try:
            condition = RouteCondition.compile(spec.filter.condition, ontology, classes, name)
        except ConditionError as exc:
            raise RouteError(f"{condition_where or where}: filter.condition: {exc}") from None
    secret = _SECRET.sub(lambda m: _secret(m.group(1), secrets, where), spec.secret) if spec.secret else None
    if spec.endpoint.startswith(("http://", "https://")) and not secret:
        raise RouteError(f"{where}: secret: a webhook route needs a secret to sign its requests (secret: ${{NAME}})")
    return Route(
        name=name,
        endpoint=_SECRET.sub(lambda m: _secret(m.group(1), secrets, where), spec.endpoint),
        role=spec.role,
        org_unit=spec.org_unit,
        filter=RouteFilter(
            classes,
            frozenset(spec.filter.link_types) if spec.filter.link_types is not None else None,
            frozenset(spec.filter.kinds),
            frozenset(spec.filter.ops),
            frozenset(spec.filter.properties) if spec.filter.properties is not None else None,
            condition,
        ),
        payload=spec.payload,
        secret=secret,
        batch=spec.batch,
        line=line,
        file=file,
    )


def _openlineage_route(
    name: str, spec: _RouteSpec, url: str, secrets: Mapping[str, str], line: int, where: str, file: str
) -> Route:
    """An OpenLineage route: run events of every sync run to an OpenLineage HTTP endpoint."""
    for field_name in ("org_unit", "secret"):
        if getattr(spec, field_name) is not None:
            raise RouteError(f"{where}: {field_name}: an OpenLineage route takes no {field_name}")
    if "payload" in spec.model_fields_set:
        raise RouteError(f"{where}: payload: an OpenLineage route sends OpenLineage run events; it takes no payload")
    if spec.filter != _FilterSpec():
        raise RouteError(f"{where}: filter: an OpenLineage route sends every sync run; it takes no filter")
    resolved = _SECRET.sub(lambda m: _secret(m.group(1), secrets, where), url)
    if not resolved.startswith(("http://", "https://")):
        raise RouteError(
            f"{where}: openlineage: expected an http:// or https:// URL of the OpenLineage API "
            f"(e.g. http://127.0.0.1:5000/api/v1/lineage), got {url[:80]!r}"
        )
    api_key = _SECRET.sub(lambda m: _secret(m.group(1), secrets, where), spec.api_key) if spec.api_key else None
    return Route(
        name=name,
        endpoint=resolved,
        role=spec.role,
        org_unit=None,
        filter=RouteFilter(None, None, frozenset(), frozenset(), None),
        payload="patch",
        secret=None,
        batch=min(spec.batch, 500),
        line=line,
        kind="openlineage",
        api_key=api_key,
        file=file,
    )


def _under(ontology: Ontology, cls: str) -> list[str]:
    """The class names of `cls` and every class under it."""
    root = ontology.get(cls)
    return [c.name for c in ontology.classes.values() if ontology.is_a(c.id, root.id)]


def _secret(name: str, secrets: Mapping[str, str], where: str) -> str:
    """A secret from the environment, by name; the error never shows a value."""
    if name not in secrets:
        raise RouteError(f"{where}: secret ${{{name}}} is not set in the environment")
    return secrets[name]
