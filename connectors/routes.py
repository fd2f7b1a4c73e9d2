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
          kinds: [twin, link]                              # default both
          ops: [create, update, delete]                    # default all
          properties: [name, jobTitle]                     # updates only when one of these changed
        payload: patch                                     # patch (RFC 6902 of the change) | twin (the state after)
        secret: ${PLANT_WEBHOOK_SECRET}                    # webhooks: the HMAC key, from the environment

A change passes the filter when its kind and operation are listed and, for a twin, its class is (under) one of
`classes` (if given) and, for an update, one of `properties` changed (if given); for a link, its type is one of
`link_types` (if given). Errors name the file, the route's line and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jsonpatch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.events.cloudevent import TwinEvent
from governance.change_view import ChangeView
from governance.roles import ROLE_NAMES
from ontology.errors import UnknownTerm
from ontology.model import Ontology

MAX_ROUTES_FILE_BYTES = 1_000_000
_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VERB = {"create": "created", "update": "updated", "delete": "deleted"}


class RouteError(ValueError):
    """A routes file is malformed or names something unknown; the message names file, line, route and field."""


class _FilterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classes: list[str] | None = None
    link_types: list[str] | None = None
    kinds: list[Literal["twin", "link"]] = Field(default_factory=lambda: ["twin", "link"], min_length=1)
    ops: list[Literal["create", "update", "delete"]] = Field(
        default_factory=lambda: ["create", "update", "delete"], min_length=1)
    properties: list[str] | None = None


class _RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=2_000)
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

    def passes(self, view: ChangeView) -> bool:
        """Whether the (already policy-filtered) change is one the route carries."""
        change = view.change
        if change.kind not in self.kinds or change.op not in self.ops:
            return False
        if change.kind == "link":
            return self.link_types is None or change.link_type in self.link_types
        if self.classes is not None and change.cls not in self.classes:
            return False
        if self.properties is not None and change.op == "update":
            before, after = change.before or {}, change.after or {}
            return any(before.get(p) != after.get(p) for p in self.properties)
        return True


@dataclass(frozen=True)
class Route:
    """One configured event route."""

    name: str
    endpoint: str
    role: str
    org_unit: str | None
    filter: RouteFilter
    payload: Literal["patch", "twin"]
    secret: str | None
    batch: int
    line: int = 0

    def event(self, view: ChangeView, source: str) -> TwinEvent:
        """The CloudEvent of a change: id = its sequence number, type = kind.verb, data = patch or state after."""
        change = view.change
        data: dict[str, Any] = {"seq": change.seq, "kind": change.kind, "op": change.op, "actor": change.actor,
                                "runId": change.run_id, "source": change.source}
        if change.kind == "twin":
            data["className"] = change.cls
        else:
            data.update(linkType=change.link_type, target=change.target)
        if self.payload == "patch":
            data["patch"] = jsonpatch.make_patch(change.before or {}, change.after or {}).patch
        else:
            data["state"] = change.after
        if view.masked:
            data["masked"] = dict(sorted(view.masked.items()))
        return TwinEvent(id=str(change.seq), source=source, type=f"{change.kind}.{_VERB[change.op]}",
                         subject=change.uid, time=change.at, data=data)


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
        raise RouteError(f"{path}:{mark.line + 1 if mark else 0}: not valid YAML: "
                         f"{getattr(exc, 'problem', None) or exc}") from None
    routes = document.get("routes") if isinstance(document, dict) else None
    if not isinstance(routes, dict):
        raise RouteError(f"{path}:1: needs a `routes:` mapping of route name -> route")
    lines = _route_lines(root)
    env = os.environ if secrets is None else secrets
    return [_route(str(name), body, ontology, env, lines.get(str(name), 0), f"{path}:{lines.get(str(name), 0)}: "
                   f"route {name!r}") for name, body in routes.items()]


def _route_lines(root: yaml.Node | None) -> dict[str, int]:
    """Route name -> the line its definition starts on."""
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == "routes" and isinstance(value, yaml.MappingNode):
            return {k.value: k.start_mark.line + 1 for k, _ in value.value}
    return {}


def _route(name: str, body: Any, ontology: Ontology, secrets: Mapping[str, str], line: int, where: str) -> Route:
    """One route checked against the ontology, the roles and the secrets it names."""
    try:
        spec = _RouteSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "route"
        raise RouteError(f"{where}: {field}: {first['msg']}") from None
    if spec.role not in ROLE_NAMES:
        raise RouteError(f"{where}: role: unknown role {spec.role!r}; known: {', '.join(sorted(ROLE_NAMES))}")
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
    secret = _SECRET.sub(lambda m: _secret(m.group(1), secrets, where), spec.secret) if spec.secret else None
    if spec.endpoint.startswith(("http://", "https://")) and not secret:
        raise RouteError(f"{where}: secret: a webhook route needs a secret to sign its requests (secret: ${{NAME}})")
    return Route(
        name=name, endpoint=_SECRET.sub(lambda m: _secret(m.group(1), secrets, where), spec.endpoint),
        role=spec.role, org_unit=spec.org_unit,
        filter=RouteFilter(classes, frozenset(spec.filter.link_types) if spec.filter.link_types is not None else None,
                           frozenset(spec.filter.kinds), frozenset(spec.filter.ops),
                           frozenset(spec.filter.properties) if spec.filter.properties is not None else None),
        payload=spec.payload, secret=secret, batch=spec.batch, line=line,
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
