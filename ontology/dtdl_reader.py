"""DTDL v2/v3 (and v4) reader: JSON documents -> Ontology, reporting every violation of the language rules.

Rules follow the normative DTDL specifications (github.com/Azure/opendigitaltwins-dtdl, DTDL.Specification.v2.md,
DTDL.Specification.v3.md, DTDL.Specification.v4.md). Each violation names the file, the JSON path and a short rule id:

not-json, not-object, dtmi, context, required-field, unknown-type, unknown-member, unknown-schema, schema-not-allowed,
dangling-extends, dangling-reference, reference-scope, duplicate-id, extends-cycle, extends-depth, extends-count,
contents-count, schema-depth, schema-cycle, component-nesting, multiplicity, name, duplicate-name, enum-value,
localized-text, string-length, value-type.

One ClassDef per Interface: id = DTMI, name = last DTMI segment, parents = extends. The writer's metadata convention
(an element "comment" of the form ``twin:{json}``, see ontology.dtdl_writer) is decoded so that ontologies written
from OWL read back with their original IRIs.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

from ontology.dtmi import INTERFACE_ID_MAX_LENGTH, dtmi_name, dtmi_problem
from ontology.errors import OntologyConflict, OntologyError, Violation
from ontology.model import ClassDef, CommandDef, ComponentDef, LangText, Ontology, PropertyDef, RelationshipDef
from ontology.schema import EnumValue, Field, Schema
from ontology.schema_codec import (
    DTDL_PRIMITIVES,
    DTDL_SCHEMA_TYPES,
    DTDL_V4_PRIMITIVES,
    GEOSPATIAL,
    schema_from_json,
)

TWIN_META_PREFIX = "twin:"
"""An element comment starting with this prefix holds JSON metadata written by ontology.dtdl_writer."""

_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$")
_LANG = re.compile(r"^[a-z]{2,4}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")
CONTENT_TYPES = ("Command", "Component", "Property", "Relationship", "Telemetry")
SCHEMA_TYPES = tuple(DTDL_SCHEMA_TYPES)
_MATERIAL = frozenset(
    {
        "Interface",
        *CONTENT_TYPES,
        *SCHEMA_TYPES,
        "CommandPayload",
        "CommandRequest",
        "CommandResponse",
        "EnumValue",
        "Field",
        "MapKey",
        "MapValue",
    }
)
_COMMON = frozenset({"@context", "@id", "@type", "comment", "description", "displayName"})
_MEMBERS: dict[str, frozenset[str]] = {
    "Interface": _COMMON | {"contents", "extends", "schemas"},
    "Property": _COMMON | {"name", "schema", "writable"},
    "Telemetry": _COMMON | {"name", "schema"},
    "Command": _COMMON | {"name", "commandType", "request", "response"},
    "Relationship": _COMMON | {"name", "maxMultiplicity", "minMultiplicity", "properties", "target", "writable"},
    "Component": _COMMON | {"name", "schema"},
    "Array": _COMMON | {"elementSchema"},
    "Enum": _COMMON | {"enumValues", "valueSchema"},
    "EnumValue": _COMMON | {"name", "enumValue"},
    "Map": _COMMON | {"mapKey", "mapValue"},
    "MapKey": _COMMON | {"name", "schema"},
    "MapValue": _COMMON | {"name", "schema"},
    "Object": _COMMON | {"fields"},
    "Field": _COMMON | {"name", "schema"},
    "CommandPayload": _COMMON | {"name", "schema", "nullable"},
}


@dataclass(frozen=True)
class DtdlVersion:
    """The limits and vocabulary of one DTDL language version."""

    number: int
    primitives: frozenset[str]
    extensions: frozenset[str]
    max_extends_depth: int
    max_extends_direct: int | None
    max_extends_total: int | None
    max_contents: int | None  # Interface contents and Relationship properties
    max_enum_values: int | None
    max_fields: int | None
    min_enum_values: int
    min_fields: int
    max_schema_depth: int
    recursive_schemas: bool
    max_name: int
    max_display_name: int
    max_description: int
    max_max_multiplicity: int | None
    property_allows_array: bool
    max_total_elements: int | None
    nullable_payloads: bool

    @property
    def context(self) -> str:
        """The context specifier of this version."""
        return f"dtmi:dtdl:context;{self.number}"


VERSIONS: dict[int, DtdlVersion] = {
    2: DtdlVersion(
        2,
        DTDL_PRIMITIVES,
        frozenset({"dtmi:iotcentral:context;2"}),
        10,
        2,
        None,
        300,
        100,
        30,
        1,
        1,
        5,
        False,
        64,
        64,
        512,
        500,
        False,
        None,
        False,
    ),
    3: DtdlVersion(
        3,
        DTDL_PRIMITIVES,
        frozenset(
            f"dtmi:dtdl:extension:{e};1"
            for e in ("quantitativeTypes", "historization", "annotation", "overriding", "mqtt")
        )
        | {"dtmi:dtdl:extension:mqtt;2"},
        10,
        None,
        1024,
        None,
        None,
        None,
        0,
        0,
        5,
        False,
        512,
        512,
        512,
        None,
        True,
        100_000,
        False,
    ),
    4: DtdlVersion(
        4,
        DTDL_PRIMITIVES | DTDL_V4_PRIMITIVES,
        frozenset(
            f"dtmi:dtdl:extension:{e};2"
            for e in ("quantitativeTypes", "historization", "annotation", "overriding", "mqtt")
        )
        | {"dtmi:dtdl:extension:mqtt;3", "dtmi:dtdl:extension:requirement;1", "dtmi:dtdl:limit:onvif;1"},
        12,
        None,
        1024,
        None,
        None,
        None,
        0,
        0,
        8,
        True,
        512,
        512,
        512,
        None,
        True,
        100_000,
        True,
    ),
}


# Ancestors an interface may have before the reader stops collecting them: a valid model has at most 1024 extends
# values (v3/v4) or 2 direct extends over 10 levels (v2: 2046 ancestors).
_MAX_ANCESTORS = 2048


class DtdlError(OntologyError):
    """DTDL input is invalid; `violations` lists every problem found across all files."""


@dataclass
class DtdlReport:
    """The result of reading DTDL: the (possibly partial) ontology, counts, and every violation."""

    ontology: Ontology
    files: int = 0
    interfaces: int = 0
    properties: int = 0
    telemetry: int = 0
    relationships: int = 0
    commands: int = 0
    components: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for `twin ontology check --json`)."""
        return {
            "ok": self.ok,
            "files": self.files,
            "interfaces": self.interfaces,
            "properties": self.properties,
            "telemetry": self.telemetry,
            "relationships": self.relationships,
            "commands": self.commands,
            "components": self.components,
            "violations": [
                {"source": v.source, "path": v.path, "rule": v.rule, "message": v.message} for v in self.violations
            ],
        }


# --------------------------------------------------------------------------------------------- entry points


def read_dtdl(paths: Iterable[Path | str], *, require_targets: bool = False) -> Ontology:
    """The ontology held by DTDL files and folders (recursive *.json); DtdlError listing every violation.

    Relationship targets are non-dependent references in DTDL (a model may target interfaces it does not hold);
    `require_targets=True` reports targets missing from the files read as dangling-reference anyway.
    """
    report = read_dtdl_report(paths, require_targets=require_targets)
    if report.violations:
        raise DtdlError(f"invalid DTDL: {len(report.violations)} violation(s)", report.violations)
    return report.ontology


def parse_dtdl(documents: list[tuple[str, Any]], *, require_targets: bool = False) -> Ontology:
    """The ontology held by already-loaded DTDL JSON documents given as (source name, data)."""
    report = parse_dtdl_report(documents, require_targets=require_targets)
    if report.violations:
        raise DtdlError(f"invalid DTDL: {len(report.violations)} violation(s)", report.violations)
    return report.ontology


def read_dtdl_report(paths: Iterable[Path | str], *, require_targets: bool = False) -> DtdlReport:
    """Read DTDL files and folders without raising: the partial ontology, counts and all violations."""
    documents: list[tuple[str, Any]] = []
    problems: list[Violation] = []
    for file in _json_files(paths, problems):
        source = str(file)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            problems.append(Violation("$", "not-json", f"cannot read file: {exc.strerror or exc}", source))
            continue
        try:
            documents.append((source, json.loads(raw.decode("utf-8-sig"))))
        except UnicodeDecodeError as exc:
            problems.append(Violation("$", "not-json", f"not UTF-8 text: {exc.reason} at byte {exc.start}", source))
        except json.JSONDecodeError as exc:
            problems.append(
                Violation("$", "not-json", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", source)
            )
        except RecursionError:  # the JSON parser's own nesting bound: far beyond any valid model's depth
            problems.append(
                Violation(
                    "$",
                    "not-json",
                    "JSON nests too deep to read (more than about "
                    f"{sys.getrecursionlimit()} levels); valid DTDL nests far less (extends depth "
                    "at most 10-12, complex schemas 5-8)",
                    source,
                )
            )
    report = parse_dtdl_report(documents, require_targets=require_targets)
    report.files += len(problems)
    report.violations[:0] = problems
    return report


def parse_dtdl_report(documents: list[tuple[str, Any]], *, require_targets: bool = False) -> DtdlReport:
    """Parse loaded DTDL documents without raising: the partial ontology, counts and all violations."""
    return _Reader(documents, require_targets).run()


def _json_files(paths: Iterable[Path | str], problems: list[Violation]) -> Iterator[Path]:
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.json") if p.is_file())
        elif path.is_file():
            yield path
        else:
            problems.append(Violation("$", "not-json", "no such file or folder", str(path)))


# --------------------------------------------------------------------------------------------- internals


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if _NAME.match(key) else f"{path}['{key}']"


def _normalise_term(value: str, prefix: str) -> str:
    """'dtmi:dtdl:class:Property;3' -> 'Property' (for prefix 'dtmi:dtdl:class:')."""
    if value.startswith(prefix) and ";" in value:
        return value[len(prefix) :].split(";", 1)[0]
    return value


def _types(node: dict[str, Any]) -> list[str]:
    raw = node.get("@type")
    values = raw if isinstance(raw, list) else [raw] if raw is not None else []
    return [_normalise_term(v, "dtmi:dtdl:class:") if isinstance(v, str) else v for v in values]


def _members(node: dict[str, Any]) -> dict[str, Any]:
    """The element's members with DTMI member names ('dtmi:dtdl:property:schema;3') turned into terms."""
    if not any(k.startswith("dtmi:dtdl:property:") for k in node):
        return node
    return {_normalise_term(k, "dtmi:dtdl:property:"): v for k, v in node.items()}


@dataclass
class _Element:
    """An element that has an @id: where it is, which partition it belongs to, and its DTDL version."""

    node: dict[str, Any]
    source: str
    path: str
    partition: str
    version: DtdlVersion
    is_interface: bool


@dataclass
class _InterfaceInfo:
    """What the global checks need to know about one parsed interface."""

    cls: ClassDef
    source: str
    path: str
    version: DtdlVersion
    extends: list[tuple[str, str]]  # (dtmi, json path)
    contents: list[tuple[str, str, str]]  # (name, kind, json path) of own contents
    components: list[tuple[str, str]]  # (interface dtmi, json path)
    elements: int = 0
    targets: list[tuple[str, str]] = field(default_factory=list)  # (relationship target dtmi, json path)


class _Reader:
    """One reading session: indexes every identified element, parses interfaces, then checks across files."""

    def __init__(self, documents: list[tuple[str, Any]], require_targets: bool = False) -> None:
        self.documents = documents
        self.require_targets = require_targets
        self.violations: list[Violation] = []
        self.index: dict[str, _Element] = {}
        self.infos: dict[str, _InterfaceInfo] = {}
        self.order: list[str] = []
        self.report = DtdlReport(Ontology(), files=len(documents))
        self._schema_cache: dict[tuple[str, str], Schema | None] = {}
        self.iri_of: dict[str, str] = {}
        self._crowded: set[str] = set()  # interfaces with more ancestors than any valid model has

    # ----------------------------------------------------------------- driver

    def run(self) -> DtdlReport:
        tops: list[tuple[dict[str, Any], str, str, DtdlVersion]] = []
        for source, data in self.documents:
            items = list(enumerate(data)) if isinstance(data, list) else [(None, data)]
            for i, item in items:
                path = "$" if i is None else f"$[{i}]"
                if not isinstance(item, dict):
                    self._add(
                        path, "not-object", f"a top-level DTDL element must be a JSON object, got {_kind(item)}", source
                    )
                    continue
                version = self._context(item, None, path, source, top_level=True)
                if version is None:
                    continue
                if "Interface" not in _types(item):
                    self._add(
                        _key(path, "@type"),
                        "unknown-type",
                        f"a top-level element must be an Interface, got @type {item.get('@type')!r}",
                        source,
                    )
                    continue
                self._index(item, source, path, version, None)
                tops.append((item, source, path, version))
        for item, source, path, version in tops:
            self._interface(item, source, path, version)
        self._global_checks()
        return self._finish()

    def _add(self, path: str, rule: str, message: str, source: str) -> None:
        self.violations.append(Violation(path, rule, message, source))

    # ----------------------------------------------------------------- context

    def _context(
        self, node: dict[str, Any], inherited: DtdlVersion | None, path: str, source: str, *, top_level: bool = False
    ) -> DtdlVersion | None:
        """The DTDL version active for `node` (None when its context is missing or unusable)."""
        where = _key(path, "@context")
        if "@context" not in node:
            if top_level:
                self._add(where, "context", "missing @context; expected 'dtmi:dtdl:context;3' (or ;2)", source)
            return inherited
        raw = node["@context"]
        values = raw if isinstance(raw, list) else [raw]
        if not values or not all(isinstance(v, str) for v in values):
            self._add(where, "context", "@context must be a string or an array of strings", source)
            return None
        version: DtdlVersion | None = None
        seen_extension = False
        extensions: list[str] = []
        for value in values:
            if value.startswith("dtmi:dtdl:context;"):
                number = value.rsplit(";", 1)[1]
                if not number.isdigit() or int(number) not in VERSIONS:
                    self._add(
                        where,
                        "context",
                        f"unknown DTDL context {value!r}; known: " + ", ".join(v.context for v in VERSIONS.values()),
                        source,
                    )
                    return None
                if seen_extension:
                    self._add(where, "context", f"{value!r} must precede the extension contexts", source)
                version = VERSIONS[int(number)]
            else:
                problem = dtmi_problem(value, 3)
                if problem or ";" not in value:
                    self._add(where, "context", f"context {value!r} must be a DTMI with a version", source)
                    return None
                seen_extension = True
                extensions.append(value)
        if version is None:
            version = inherited
        if version is None:
            self._add(where, "context", "@context does not include 'dtmi:dtdl:context;3' (or ;2)", source)
            return None
        for ext in extensions:
            if ext not in version.extensions and not (version.number == 2 and ext.startswith("dtmi:iotcentral:")):
                self._add(
                    where,
                    "context",
                    f"unknown language extension {ext!r} for DTDL v{version.number}; known: "
                    + ", ".join(sorted(version.extensions)),
                    source,
                )
        return version

    # ----------------------------------------------------------------- index

    def _index(self, node: Any, source: str, path: str, version: DtdlVersion, partition: str | None) -> None:
        """Record every element with an @id, with its partition (the enclosing interface); iterative, so documents
        given as Python objects of any depth cannot exhaust the stack."""
        pending: list[tuple[Any, str, DtdlVersion, str | None]] = [(node, path, version, partition)]
        while pending:
            node, path, version, partition = pending.pop()
            if isinstance(node, list):
                pending.extend(
                    (item, f"{path}[{i}]", version, partition) for i, item in reversed(list(enumerate(node)))
                )
            elif isinstance(node, dict):
                pending.extend(reversed(self._index_one(node, source, path, version, partition)))

    def _index_one(
        self, node: dict[str, Any], source: str, path: str, version: DtdlVersion, partition: str | None
    ) -> list[tuple[Any, str, DtdlVersion, str | None]]:
        """Index one object; the nested values still to visit."""
        if "@context" in node and partition is not None:
            raw = node["@context"]
            for v in raw if isinstance(raw, list) else [raw]:
                if isinstance(v, str) and v.startswith("dtmi:dtdl:context;") and v.rsplit(";", 1)[1].isdigit():
                    version = VERSIONS.get(int(v.rsplit(";", 1)[1]), version)
        ident = node.get("@id")
        is_interface = "Interface" in _types(node)
        if is_interface or partition is None:
            partition = ident if isinstance(ident, str) else path
        if isinstance(ident, str):
            existing = self.index.get(ident)
            if existing is None:
                self.index[ident] = _Element(node, source, path, partition, version, is_interface)
            elif existing.node != node:
                self._add(
                    _key(path, "@id"),
                    "duplicate-id",
                    f"{ident} is already defined differently at {existing.source}: {existing.path}",
                    source,
                )
        return [
            (value, _key(path, key), version, partition)
            for key, value in node.items()
            if isinstance(value, (dict, list)) and key not in ("@context", "displayName", "description")
        ]

    # ----------------------------------------------------------------- interfaces

    def _interface(
        self, node: dict[str, Any], source: str, path: str, version: DtdlVersion, inline: tuple[str, ...] = ()
    ) -> str | None:
        """Parse one Interface element into a ClassDef; its DTMI, or None when it has no usable @id.

        `inline` holds the interfaces this one is written inside of (inline `extends` values): the nesting stops at
        the version's extends depth, so an inline chain never recurses without bound.
        """
        node = _members(node)
        ident = node.get("@id")
        if ident is None:
            self._add(path, "required-field", "an Interface needs an @id", source)
            return None
        problem = dtmi_problem(ident, version.number, as_id=True, max_length=INTERFACE_ID_MAX_LENGTH)
        if problem:
            self._add(_key(path, "@id"), "dtmi", problem, source)
            if not isinstance(ident, str):
                return None
        if ident in self.infos:
            return ident
        self._check_members(node, "Interface", path, source, version)
        meta = self._meta(node, path, source)
        info = _InterfaceInfo(ClassDef(id=ident, name=dtmi_name(ident)), source, path, version, [], [], [])
        self.infos[ident] = info  # registered early so inline self-references terminate
        self.order.append(ident)
        if "id" in meta and isinstance(meta["id"], str):
            self.iri_of[ident] = meta["id"]

        parents: list[str] = []
        for value, where in self._many(node.get("extends"), _key(path, "extends")):
            if isinstance(value, dict):
                if len(inline) + 1 > version.max_extends_depth:
                    chain = [*inline, ident, value["@id"] if isinstance(value.get("@id"), str) else "(inline)"]
                    self._add(
                        where,
                        "extends-depth",
                        f"inline extends nest more than {version.max_extends_depth} deep "
                        f"({_chain_text(chain)}); DTDL v{version.number} allows "
                        f"{version.max_extends_depth}; deeper interfaces were not read",
                        source,
                    )
                    continue
                sub_version = self._context(value, version, where, source) or version
                parent = self._interface(value, source, where, sub_version, (*inline, str(ident)))
                if parent:
                    parents.append(parent)
                    info.extends.append((parent, where))
            elif isinstance(value, str):
                problem = dtmi_problem(value, version.number)
                if problem:
                    self._add(where, "dtmi", problem, source)
                    continue
                parents.append(value)
                info.extends.append((value, where))
            else:
                self._add(where, "value-type", f"extends must hold DTMIs or Interfaces, got {_kind(value)}", source)
        if version.max_extends_direct is not None and len(parents) > version.max_extends_direct:
            self._add(
                _key(path, "extends"),
                "extends-count",
                f"DTDL v{version.number} allows at most {version.max_extends_direct} direct extends, got "
                f"{len(parents)}",
                source,
            )

        schemas: list[Schema] = []
        for value, where in self._many(node.get("schemas"), _key(path, "schemas")):
            if isinstance(value, str):
                value = self._resolve(value, where, source, ident, version)
                if value is None:
                    continue
            if not isinstance(value, dict):
                self._add(
                    where, "value-type", f"schemas must hold Array/Enum/Map/Object elements, got {_kind(value)}", source
                )
                continue
            if "@id" not in value:
                self._add(where, "required-field", "a schema in an Interface's 'schemas' needs an @id", source)
            schema = self._schema(value, where, source, ident, version, 0, (), in_property=False)
            if schema is not None:
                schemas.append(schema)

        properties: list[PropertyDef] = []
        relationships: list[RelationshipDef] = []
        commands: list[CommandDef] = []
        components: list[ComponentDef] = []
        contents = list(self._many(node.get("contents"), _key(path, "contents")))
        info.elements += len(contents)
        for value, where in contents:
            if isinstance(value, str):
                value = self._resolve(value, where, source, ident, version)
                if value is None:
                    continue
            if not isinstance(value, dict):
                self._add(where, "value-type", f"contents must hold DTDL elements, got {_kind(value)}", source)
                continue
            item_version = self._context(value, version, where, source) or version
            kind = self._material(value, CONTENT_TYPES, where, source)
            if kind is None:
                continue
            value = _members(value)
            self._check_members(value, kind, where, source, item_version)
            name = self._name(value, where, source, item_version)
            if name is None:
                continue
            info.contents.append((name, kind, where))
            if kind in ("Property", "Telemetry"):
                prop = self._property(value, kind, name, where, source, ident, item_version)
                if prop is not None:
                    properties.append(prop)
            elif kind == "Relationship":
                rel = self._relationship(value, name, where, source, ident, item_version)
                if rel is not None:
                    relationships.append(rel)
                    if isinstance(value.get("target"), str):
                        info.targets.append((value["target"], _key(where, "target")))
            elif kind == "Command":
                commands.append(self._command(value, name, where, source, ident, item_version))
            else:
                component = self._component(value, name, where, source, item_version, info)
                if component is not None:
                    components.append(component)

        if version.max_contents is not None and len(contents) > version.max_contents:
            self._add(
                _key(path, "contents"),
                "contents-count",
                f"DTDL v{version.number} allows at most {version.max_contents} contents, got {len(contents)}",
                source,
            )
        semantic = tuple(t for t in _types(node) if isinstance(t, str) and t != "Interface")
        info.cls = ClassDef(
            id=ident,
            name=str(meta.get("name", dtmi_name(ident))),
            parents=tuple(parents),
            properties=tuple(properties),
            relationships=tuple(relationships),
            commands=tuple(commands),
            components=tuple(components),
            schemas=tuple(schemas),
            display_name=self._text(node, "displayName", path, source, version.max_display_name),
            description=self._text(node, "description", path, source, version.max_description),
            semantic_types=semantic,
            source=source,
        )
        self._text(node, "comment", path, source, 512)
        telemetry = sum(1 for p in properties if p.kind == "telemetry")
        report = self.report
        report.properties += len(properties) - telemetry
        report.telemetry += telemetry
        report.relationships += len(relationships)
        report.commands += len(commands)
        report.components += len(components)
        return ident

    # ----------------------------------------------------------------- contents

    def _property(
        self, node: dict[str, Any], kind: str, name: str, path: str, source: str, owner: str, version: DtdlVersion
    ) -> PropertyDef | None:
        meta = self._meta(node, path, source)
        if "schema" not in node:
            self._add(path, "required-field", f"{kind} {name!r} needs a schema", source)
            return None
        schema = self._schema(
            node["schema"], _key(path, "schema"), source, owner, version, 0, (), in_property=kind == "Property"
        )
        if schema is None:
            return None
        schema = self._meta_schema(meta, schema, path, source)
        writable = self._literal(node, "writable", bool, path, source, default=False) if kind == "Property" else False
        unit = node.get("unit")
        if isinstance(unit, list) and len(unit) == 1:
            unit = unit[0]
        if unit is not None and not isinstance(unit, str):
            self._add(_key(path, "unit"), "value-type", f"unit must be a string, got {_kind(unit)}", source)
            unit = None
        semantic = tuple(t for t in _types(node) if isinstance(t, str) and t != kind)
        return PropertyDef(
            name=str(meta.get("name", name)),
            schema=schema,
            kind="telemetry" if kind == "Telemetry" else "property",
            writable=bool(writable),
            required=bool(meta.get("required", False)),
            classification=meta.get("classification"),
            unit=unit if unit is not None else meta.get("unit"),
            semantic_types=semantic,
            iri=meta.get("iri"),
            display_name=self._text(node, "displayName", path, source, version.max_display_name),
            description=self._text(node, "description", path, source, version.max_description),
        )

    def _relationship(
        self, node: dict[str, Any], name: str, path: str, source: str, owner: str, version: DtdlVersion
    ) -> RelationshipDef | None:
        meta = self._meta(node, path, source)
        target = node.get("target")
        if isinstance(target, list):
            if len(target) > 1:
                self._add(_key(path, "target"), "value-type", "target holds at most one DTMI", source)
            target = target[0] if target else None
        if target is not None:
            problem = dtmi_problem(target, version.number)
            if problem:
                self._add(_key(path, "target"), "dtmi", problem, source)
                target = None
        low = self._literal(node, "minMultiplicity", int, path, source, default=None)
        high = self._literal(node, "maxMultiplicity", int, path, source, default=None)
        if low is not None and low != 0:
            self._add(
                _key(path, "minMultiplicity"),
                "multiplicity",
                f"minMultiplicity must be 0 in DTDL v{version.number}, got {low}",
                source,
            )
        if high is not None:
            if high < 1:
                self._add(
                    _key(path, "maxMultiplicity"), "multiplicity", f"maxMultiplicity must be >= 1, got {high}", source
                )
            elif version.max_max_multiplicity is not None and high > version.max_max_multiplicity:
                self._add(
                    _key(path, "maxMultiplicity"),
                    "multiplicity",
                    f"maxMultiplicity must be <= {version.max_max_multiplicity} in DTDL v{version.number}, got {high}",
                    source,
                )
            elif low is not None and low > high:
                self._add(path, "multiplicity", f"minMultiplicity {low} > maxMultiplicity {high}", source)
        props: list[PropertyDef] = []
        names: dict[str, str] = {}
        items = list(self._many(node.get("properties"), _key(path, "properties")))
        if version.max_contents is not None and len(items) > version.max_contents:
            self._add(
                _key(path, "properties"),
                "contents-count",
                f"DTDL v{version.number} allows at most {version.max_contents} relationship properties",
                source,
            )
        for value, where in items:
            if isinstance(value, str):
                value = self._resolve(value, where, source, owner, version)
            if not isinstance(value, dict):
                continue
            if self._material(value, ("Property",), where, source) is None:
                continue
            value = _members(value)
            self._check_members(value, "Property", where, source, version)
            prop_name = self._name(value, where, source, version)
            if prop_name is None:
                continue
            if prop_name in names:
                self._add(
                    where,
                    "duplicate-name",
                    f"relationship property name {prop_name!r} is already used at {names[prop_name]}",
                    source,
                )
                continue
            names[prop_name] = where
            prop = self._property(value, "Property", prop_name, where, source, owner, version)
            if prop is not None:
                props.append(prop)
        if "min" in meta:
            low = meta["min"]
        if "max" in meta:
            high = meta["max"]
        return RelationshipDef(
            name=str(meta.get("name", name)),
            target=meta.get("target") or target,
            min=low,
            max=high,
            properties=tuple(props),
            writable=bool(self._literal(node, "writable", bool, path, source, default=False)),
            inverse=meta.get("inverse"),
            characteristics=frozenset(meta.get("characteristics", ())),
            iri=meta.get("iri"),
            display_name=self._text(node, "displayName", path, source, version.max_display_name),
            description=self._text(node, "description", path, source, version.max_description),
        )

    def _command(
        self, node: dict[str, Any], name: str, path: str, source: str, owner: str, version: DtdlVersion
    ) -> CommandDef:
        command_type = node.get("commandType")
        if command_type is not None:
            allowed = {"synchronous", "asynchronous"}
            values = command_type if isinstance(command_type, list) else [command_type]
            if len(values) > 1 or any(
                _normalise_term(v, "dtmi:dtdl:instance:CommandType:") not in allowed
                for v in values
                if isinstance(v, str)
            ):
                self._add(
                    _key(path, "commandType"), "value-type", "commandType must be synchronous or asynchronous", source
                )
        payloads: dict[str, tuple[str, Schema] | None] = {"request": None, "response": None}
        for member in payloads:
            raw = node.get(member)
            if raw is None:
                continue
            where = _key(path, member)
            if isinstance(raw, list):
                if len(raw) != 1:
                    self._add(where, "value-type", f"{member} holds at most one element", source)
                    continue
                raw, where = raw[0], f"{where}[0]"
            if isinstance(raw, str):
                raw = self._resolve(raw, where, source, owner, version)
            if not isinstance(raw, dict):
                continue
            raw = _members(raw)
            expected = {"request": "CommandRequest", "response": "CommandResponse"}[member]
            types = _types(raw)
            if types and not ({expected, "CommandPayload"} & set(types)):
                self._add(
                    _key(where, "@type"),
                    "unknown-type",
                    f"{member} @type must be {expected} (or CommandPayload in v2), got {raw.get('@type')!r}",
                    source,
                )
            self._check_members(raw, "CommandPayload", where, source, version)
            if "nullable" in raw and not version.nullable_payloads:
                self._add(
                    _key(where, "nullable"),
                    "unknown-member",
                    f"'nullable' is not a DTDL v{version.number} member (it was added in v4)",
                    source,
                )
            payload_meta = self._meta(raw, where, source)
            payload_name = self._name(raw, where, source, version)
            if "schema" not in raw:
                self._add(where, "required-field", f"command {member} needs a schema", source)
                continue
            schema = self._schema(
                raw["schema"], _key(where, "schema"), source, owner, version, 0, (), in_property=False
            )
            schema = self._meta_schema(payload_meta, schema, where, source)
            if payload_name is not None and schema is not None:
                payloads[member] = (str(payload_meta.get("name", payload_name)), schema)
        return CommandDef(
            name=str(self._meta(node, path, source).get("name", name)),
            request=payloads["request"],
            response=payloads["response"],
            display_name=self._text(node, "displayName", path, source, version.max_display_name),
            description=self._text(node, "description", path, source, version.max_description),
        )

    def _component(
        self, node: dict[str, Any], name: str, path: str, source: str, version: DtdlVersion, info: _InterfaceInfo
    ) -> ComponentDef | None:
        raw = node.get("schema")
        where = _key(path, "schema")
        if isinstance(raw, list) and len(raw) == 1:
            raw, where = raw[0], f"{where}[0]"
        if raw is None:
            self._add(path, "required-field", f"Component {name!r} needs a schema (an Interface DTMI)", source)
            return None
        if isinstance(raw, dict):
            target = self._interface(raw, source, where, self._context(raw, version, where, source) or version)
        elif isinstance(raw, str):
            problem = dtmi_problem(raw, version.number)
            if problem:
                self._add(where, "dtmi", problem, source)
                return None
            target = raw
        else:
            self._add(where, "value-type", f"a Component schema must be an Interface DTMI, got {_kind(raw)}", source)
            return None
        if target is None:
            return None
        info.components.append((target, where))
        return ComponentDef(
            name=str(self._meta(node, path, source).get("name", name)),
            schema=target,
            display_name=self._text(node, "displayName", path, source, version.max_display_name),
            description=self._text(node, "description", path, source, version.max_description),
        )

    # ----------------------------------------------------------------- schemas

    def _schema(
        self,
        raw: Any,
        path: str,
        source: str,
        owner: str,
        version: DtdlVersion,
        depth: int,
        trail: tuple[str, ...],
        *,
        in_property: bool,
    ) -> Schema | None:
        """The Schema for a schema value: a primitive term, a DTMI reference, or an inline complex schema."""
        if isinstance(raw, list):
            if len(raw) != 1:
                self._add(path, "value-type", "a schema array must hold exactly one schema", source)
                return None
            raw, path = raw[0], f"{path}[0]"
        if isinstance(raw, str):
            term = _normalise_term(
                _normalise_term(raw, "dtmi:dtdl:instance:Schema:"), "dtmi:standard:schema:geospatial:"
            )
            if term in version.primitives:
                return Schema(kind=term)
            if term in GEOSPATIAL:
                if in_property and not version.property_allows_array:
                    self._add(
                        path,
                        "schema-not-allowed",
                        f"a DTDL v{version.number} Property may not use geospatial schema {term!r}",
                        source,
                    )
                    return None
                return Schema(kind=term)
            if raw.startswith("dtmi:"):
                if raw in trail:
                    if not version.recursive_schemas:
                        self._add(
                            path,
                            "schema-cycle",
                            f"schema {raw} refers to itself: {' -> '.join(trail[trail.index(raw) :] + (raw,))}",
                            source,
                        )
                    else:
                        self._add(
                            path,
                            "schema-cycle",
                            f"recursive schema {raw} is valid DTDL v4 but cannot be represented",
                            source,
                        )
                    return None
                target = self._resolve(raw, path, source, owner, version, expect=SCHEMA_TYPES)
                if target is None:
                    return None
                key = (raw, str(in_property))
                if key not in self._schema_cache:
                    indexed = self.index[raw]
                    self._schema_cache[key] = self._schema(
                        target,
                        indexed.path,
                        indexed.source,
                        owner,
                        indexed.version,
                        depth,
                        trail,
                        in_property=in_property,
                    )
                return self._schema_cache[key]
            hint = ""
            if term in DTDL_V4_PRIMITIVES:
                hint = f" ({term!r} is a DTDL v4 schema; use '@context': 'dtmi:dtdl:context;4')"
            self._add(path, "unknown-schema", f"unknown schema {raw!r} in DTDL v{version.number}{hint}", source)
            return None
        if not isinstance(raw, dict):
            self._add(path, "unknown-schema", f"a schema must be a string or an object, got {_kind(raw)}", source)
            return None
        version = self._context(raw, version, path, source) or version
        kind = self._material(raw, SCHEMA_TYPES, path, source)
        if kind is None:
            return None
        raw = _members(raw)
        self._check_members(raw, kind, path, source, version)
        ident = raw.get("@id")
        if ident is not None:
            problem = dtmi_problem(ident, version.number, as_id=True)
            if problem:
                self._add(_key(path, "@id"), "dtmi", problem, source)
                ident = None
        if depth > version.max_schema_depth:
            self._add(
                path,
                "schema-depth",
                f"complex schemas nest more than {version.max_schema_depth} deep (DTDL v{version.number} limit)",
                source,
            )
            return None
        if ident:
            trail = trail + (ident,)
        meta = self._meta(raw, path, source)
        if "schema" in meta:  # written by ontology.dtdl_writer for a schema DTDL cannot hold
            return self._meta_schema(meta, None, path, source)
        display = self._text(raw, "displayName", path, source, version.max_display_name)
        description = self._text(raw, "description", path, source, version.max_description)
        sid = meta.get("id", ident) if ident else None

        def nested(value: Any, where: str) -> Schema | None:
            return self._schema(value, where, source, owner, version, depth + 1, trail, in_property=in_property)

        if kind == "Array":
            if in_property and not version.property_allows_array:
                self._add(
                    path, "schema-not-allowed", f"a DTDL v{version.number} Property may not use an Array schema", source
                )
                return None
            if "elementSchema" not in raw:
                self._add(path, "required-field", "an Array needs an elementSchema", source)
                return None
            element = nested(raw["elementSchema"], _key(path, "elementSchema"))
            if element is None:
                return None
            return Schema(kind="array", id=sid, element=element, display_name=display, description=description)
        if kind == "Map":
            key_node, value_node = (
                self._single(raw, "mapKey", path, source),
                self._single(raw, "mapValue", path, source),
            )
            if key_node is None or value_node is None:
                return None
            key_path, value_path = _key(path, "mapKey"), _key(path, "mapValue")
            key_name = self._name(key_node, key_path, source, version)
            key_schema = key_node.get("schema")
            if isinstance(key_schema, list) and len(key_schema) == 1:
                key_schema = key_schema[0]
            if not isinstance(key_schema, str) or _normalise_term(key_schema, "dtmi:dtdl:instance:Schema:") != "string":
                self._add(_key(key_path, "schema"), "unknown-schema", "a mapKey schema must be 'string'", source)
            value_name = self._name(value_node, value_path, source, version)
            if "schema" not in value_node:
                self._add(value_path, "required-field", "a mapValue needs a schema", source)
                return None
            element = nested(value_node["schema"], _key(value_path, "schema"))
            if element is None or key_name is None or value_name is None:
                return None
            return Schema(
                kind="map",
                id=sid,
                element=element,
                map_key=key_name,
                map_value=value_name,
                display_name=display,
                description=description,
            )
        if kind == "Enum":
            return self._enum(raw, path, source, owner, version, sid, display, description)
        fields: list[Field] = []
        seen: dict[str, str] = {}
        items = list(self._many(raw.get("fields"), _key(path, "fields")))
        if "fields" not in raw and version.min_fields:
            self._add(path, "required-field", "an Object needs fields", source)
        self._count(items, version.min_fields, version.max_fields, "fields", path, source, version)
        for value, where in items:
            if isinstance(value, str):
                value = self._resolve(value, where, source, owner, version)
            if not isinstance(value, dict):
                continue
            value = _members(value)
            self._check_members(value, "Field", where, source, version)
            name = self._name(value, where, source, version)
            if name is None:
                continue
            if name in seen:
                self._add(where, "duplicate-name", f"field name {name!r} is already used at {seen[name]}", source)
                continue
            seen[name] = where
            if "schema" not in value:
                self._add(where, "required-field", f"field {name!r} needs a schema", source)
                continue
            schema = nested(value["schema"], _key(where, "schema"))
            if schema is not None:
                fields.append(
                    Field(
                        name,
                        schema,
                        self._text(value, "displayName", where, source, version.max_display_name),
                        self._text(value, "description", where, source, version.max_description),
                    )
                )
        return Schema(kind="object", id=sid, fields=tuple(fields), display_name=display, description=description)

    def _enum(
        self,
        raw: dict[str, Any],
        path: str,
        source: str,
        owner: str,
        version: DtdlVersion,
        sid: str | None,
        display: LangText,
        description: LangText,
    ) -> Schema | None:
        value_schema = raw.get("valueSchema")
        if isinstance(value_schema, list) and len(value_schema) == 1:
            value_schema = value_schema[0]
        value_kind = (
            _normalise_term(value_schema, "dtmi:dtdl:instance:Schema:") if isinstance(value_schema, str) else None
        )
        if value_schema is None:
            self._add(path, "required-field", "an Enum needs a valueSchema ('integer' or 'string')", source)
            return None
        if value_kind not in ("integer", "string"):
            self._add(
                _key(path, "valueSchema"),
                "unknown-schema",
                f"an Enum valueSchema must be 'integer' or 'string', got {value_schema!r}",
                source,
            )
            return None
        if "enumValues" not in raw:
            self._add(path, "required-field", "an Enum needs enumValues", source)
        items = list(self._many(raw.get("enumValues"), _key(path, "enumValues")))
        self._count(items, version.min_enum_values, version.max_enum_values, "enumValues", path, source, version)
        values: list[EnumValue] = []
        names: dict[str, str] = {}
        literals: dict[Any, str] = {}
        for value, where in items:
            if isinstance(value, str):
                value = self._resolve(value, where, source, owner, version)
            if not isinstance(value, dict):
                continue
            value = _members(value)
            self._check_members(value, "EnumValue", where, source, version)
            name = self._name(value, where, source, version)
            literal = self._literal(
                value, "enumValue", int if value_kind == "integer" else str, where, source, default=None
            )
            if "enumValue" not in value:
                self._add(where, "required-field", "an EnumValue needs an enumValue", source)
            if name is None or literal is None:
                continue
            if name in names:
                self._add(where, "duplicate-name", f"enum value name {name!r} is already used at {names[name]}", source)
                continue
            if literal in literals:
                self._add(
                    _key(where, "enumValue"),
                    "enum-value",
                    f"enumValue {literal!r} is already used at {literals[literal]}",
                    source,
                )
                continue
            names[name], literals[literal] = where, where
            values.append(
                EnumValue(
                    name,
                    literal,
                    self._text(value, "displayName", where, source, version.max_display_name),
                    self._text(value, "description", where, source, version.max_description),
                )
            )
        return Schema(
            kind="enum",
            id=sid,
            enum_value_kind=value_kind,
            enum_values=tuple(values),
            display_name=display,
            description=description,
        )

    # ----------------------------------------------------------------- member helpers

    def _resolve(
        self,
        ref: str,
        path: str,
        source: str,
        owner: str,
        version: DtdlVersion,
        expect: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        """The element a dependent reference points to, checking existence and partition scope."""
        problem = dtmi_problem(ref, version.number)
        if problem:
            self._add(path, "dtmi", problem, source)
            return None
        element = self.index.get(ref)
        if element is None:
            self._add(path, "dangling-reference", f"{ref} is not defined in any file read", source)
            return None
        if not element.is_interface and element.partition != owner:
            self._add(
                path,
                "reference-scope",
                f"{ref} is defined inside {element.partition} ({element.source}); elements other than "
                "Interfaces may only be referenced from the Interface that defines them",
                source,
            )
            return None
        if expect and not (set(_types(element.node)) & set(expect)):
            self._add(
                path,
                "unknown-schema",
                f"{ref} is a {element.node.get('@type')!r}, expected one of {', '.join(expect)}",
                source,
            )
            return None
        return element.node

    def _material(self, node: dict[str, Any], allowed: tuple[str, ...], path: str, source: str) -> str | None:
        """The element's DTDL type among `allowed`; an unknown-type violation otherwise."""
        types = _types(node)
        if not types:
            self._add(path, "required-field", f"missing @type; expected one of {', '.join(allowed)}", source)
            return None
        found = [t for t in types if t in allowed]
        bad = [t for t in types if not isinstance(t, str) or (":" in t and not t.startswith("dtmi:"))]
        if bad:
            self._add(_key(path, "@type"), "unknown-type", f"invalid @type value(s) {bad!r}", source)
        if len(found) != 1:
            detail = "more than one" if found else "none"
            self._add(
                _key(path, "@type"),
                "unknown-type",
                f"@type {node.get('@type')!r} must include exactly one of {', '.join(allowed)} ({detail} found)",
                source,
            )
            return None
        return found[0]

    def _check_members(self, node: dict[str, Any], kind: str, path: str, source: str, version: DtdlVersion) -> None:
        allowed = _MEMBERS[kind]
        co_typed = len(_types(node)) > 1
        for key in node:
            if key in allowed:
                continue
            if key.startswith("@"):
                self._add(_key(path, key), "unknown-member", f"keyword {key!r} is not allowed on a {kind}", source)
            elif not co_typed and not key.startswith("dtmi:"):
                self._add(
                    _key(path, key),
                    "unknown-member",
                    f"{key!r} is not a member of {kind} (allowed: {', '.join(sorted(allowed - _COMMON))}); "
                    "add a co-type to @type for extension members",
                    source,
                )

    def _name(self, node: dict[str, Any], path: str, source: str, version: DtdlVersion) -> str | None:
        if "name" not in node:
            self._add(path, "required-field", "missing name", source)
            return None
        name: str | None = self._literal(node, "name", str, path, source, default=None)
        if name is None:
            return None
        if len(name) > version.max_name:
            self._add(
                _key(path, "name"),
                "string-length",
                f"name is {len(name)} characters, more than {version.max_name} (DTDL v{version.number})",
                source,
            )
        if not _NAME.match(name):
            self._add(
                _key(path, "name"),
                "name",
                f"name {name!r} must start with a letter, hold only letters, digits and '_', and not end with '_'",
                source,
            )
            return None
        return name

    def _literal(self, node: dict[str, Any], key: str, kind: type, path: str, source: str, default: Any) -> Any:
        """A representational literal (bare, {"@value": ...}, or a one-element array) of the given type."""
        if key not in node:
            return default
        value = node[key]
        if isinstance(value, list):
            if len(value) != 1:
                self._add(_key(path, key), "value-type", f"{key} must hold exactly one value", source)
                return default
            value = value[0]
        if isinstance(value, dict) and "@value" in value:
            value = value["@value"]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            self._add(_key(path, key), "value-type", f"{key} must be a {kind.__name__}, got {value!r}", source)
            return default
        return value

    def _text(self, node: dict[str, Any], key: str, path: str, source: str, limit: int) -> LangText:
        """A localisable string as ((lang, text), ...); 'en' for plain strings."""
        if key not in node:
            return ()
        value = node[key]
        where = _key(path, key)
        pairs: list[tuple[str, str]] = []
        if isinstance(value, str):
            pairs.append(("en", value))
        elif isinstance(value, dict) and "@value" not in value:
            for lang, text in value.items():
                if not _LANG.match(lang) or not isinstance(text, str):
                    self._add(where, "localized-text", f"bad language entry {lang!r}: {text!r}", source)
                    continue
                pairs.append((lang, text))
        elif isinstance(value, (list, dict)):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    pairs.append(("en", item))
                elif isinstance(item, dict) and isinstance(item.get("@value"), str):
                    lang = item.get("@language", "en")
                    if not isinstance(lang, str) or not _LANG.match(lang):
                        self._add(where, "localized-text", f"bad @language {lang!r}", source)
                        continue
                    pairs.append((lang, item["@value"]))
                else:
                    self._add(where, "localized-text", f"bad localized text entry {item!r}", source)
        else:
            self._add(where, "localized-text", f"{key} must be a string or a language map, got {_kind(value)}", source)
        for lang, text in pairs:
            if len(text) > limit:
                self._add(
                    where, "string-length", f"{key} ({lang}) is {len(text)} characters, more than {limit}", source
                )
        return tuple(pairs)

    def _meta(self, node: dict[str, Any], path: str, source: str) -> dict[str, Any]:
        """The writer's metadata recorded in the element's comment (empty when there is none)."""
        comment = node.get("comment")
        if isinstance(comment, list) and len(comment) == 1:
            comment = comment[0]
        if not isinstance(comment, str) or not comment.startswith(TWIN_META_PREFIX):
            return {}
        try:
            meta = json.loads(comment[len(TWIN_META_PREFIX) :])
        except json.JSONDecodeError as exc:
            # it carries classification and required flags: a broken one must not pass unnoticed
            self._add(f"{path}.comment", "annotation", f"twin metadata is not valid JSON: {exc}", source)
            return {}
        if not isinstance(meta, dict):
            self._add(f"{path}.comment", "annotation", "twin metadata must be a JSON object", source)
            return {}
        return meta

    @overload
    def _meta_schema(self, meta: dict[str, Any], schema: Schema, path: str, source: str) -> Schema: ...

    @overload
    def _meta_schema(self, meta: dict[str, Any], schema: None, path: str, source: str) -> Schema | None: ...

    def _meta_schema(self, meta: dict[str, Any], schema: Schema | None, path: str, source: str) -> Schema | None:
        """The exact schema the writer recorded in the metadata, else `schema` (an annotation violation when the
        recorded one does not describe a schema)."""
        if "schema" not in meta:
            return schema
        try:
            return schema_from_json(meta["schema"])
        except (KeyError, TypeError, ValueError) as exc:
            self._add(
                f"{path}.comment", "annotation", f"twin metadata 'schema' does not describe a schema: {exc}", source
            )
            return schema

    def _many(self, value: Any, path: str) -> Iterator[tuple[Any, str]]:
        if value is None:
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield item, f"{path}[{i}]"
        else:
            yield value, path

    def _single(self, node: dict[str, Any], key: str, path: str, source: str) -> dict[str, Any] | None:
        value = node.get(key)
        where = _key(path, key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is None:
            self._add(path, "required-field", f"missing {key}", source)
            return None
        if not isinstance(value, dict):
            self._add(where, "value-type", f"{key} must be an object", source)
            return None
        return _members(value)

    def _count(
        self, items: list[Any], low: int, high: int | None, what: str, path: str, source: str, version: DtdlVersion
    ) -> None:
        if len(items) < low or (high is not None and len(items) > high):
            bound = f"{low}..{high}" if high is not None else f"at least {low}"
            self._add(
                _key(path, what),
                "contents-count",
                f"DTDL v{version.number} needs {bound} {what}, got {len(items)}",
                source,
            )

    # ----------------------------------------------------------------- cross-file checks

    def _global_checks(self) -> None:
        infos = self.infos
        for ident in self.order:
            info = infos[ident]
            for parent, where in info.extends:
                if parent not in infos:
                    element = self.index.get(parent)
                    message = (
                        f"extends {parent}, which is not an Interface"
                        if element
                        else f"extends {parent}, which is not defined in any file read"
                    )
                    self._add(where, "dangling-extends", message, info.source)
            for target, where in info.components:
                if target not in infos:
                    self._add(
                        where,
                        "dangling-reference",
                        f"component schema {target} is not a defined Interface",
                        info.source,
                    )
            for target, where in info.targets if self.require_targets else ():
                if target not in infos:
                    self._add(
                        where,
                        "dangling-reference",
                        f"relationship target {target} is not a defined Interface",
                        info.source,
                    )
        depth, closure, cyclic = self._hierarchy()
        for ident in self.order:
            info = infos[ident]
            version = info.version
            if depth[ident] > version.max_extends_depth:
                if depth[ident] == version.max_extends_depth + 1:  # deeper ones extend a chain reported here
                    self._add(
                        _key(info.path, "extends"),
                        "extends-depth",
                        f"inheritance chain is {depth[ident]} deep ({_chain_text(self._longest_chain(ident, depth))})"
                        f"; DTDL v{version.number} allows {version.max_extends_depth}; interfaces extending "
                        f"{ident} are deeper still and not listed separately",
                        info.source,
                    )
                continue
            if ident not in closure:
                if ident in self._crowded:
                    self._add(
                        _key(info.path, "extends"),
                        "extends-count",
                        f"more than {_MAX_ANCESTORS} interfaces in the hierarchy of {ident}",
                        info.source,
                    )
                continue
            if version.max_extends_total is not None:
                total = sum(len(infos[a].cls.parents) for a in closure[ident]) + len(info.cls.parents)
                if total > version.max_extends_total:
                    self._add(
                        _key(info.path, "extends"),
                        "extends-count",
                        f"{total} extends values in the hierarchy; DTDL v{version.number} allows "
                        f"{version.max_extends_total}",
                        info.source,
                    )
            if ident in cyclic:
                continue
            self._check_names(info, closure[ident])
            lineage = (ident, *closure[ident])
            if version.max_contents is not None:
                count = sum(len(infos[c].contents) for c in lineage)
                if count > version.max_contents:
                    self._add(
                        _key(info.path, "contents"),
                        "contents-count",
                        f"{count} contents including inherited ones; DTDL v{version.number} allows "
                        f"{version.max_contents}",
                        info.source,
                    )
            if version.max_total_elements is not None:
                count = sum(infos[c].elements for c in lineage)
                if count > version.max_total_elements:
                    self._add(
                        info.path,
                        "contents-count",
                        f"{count} elements in the contents hierarchy; DTDL "
                        f"v{version.number} allows {version.max_total_elements}",
                        info.source,
                    )
        for ident in self.order:
            info = infos[ident]
            for target, where in info.components:
                if target not in infos or target in cyclic or target not in closure:
                    continue
                nested = [c for c in (target, *closure[target]) if infos[c].components]
                if nested:
                    self._add(
                        where,
                        "component-nesting",
                        f"component schema {target} has components itself (via {nested[0]}); "
                        "DTDL does not allow components inside components",
                        info.source,
                    )

    def _hierarchy(self) -> tuple[dict[str, int], dict[str, frozenset[str]], set[str]]:
        """Depth of every interface's inheritance chain, the ancestors of those within their version's limits, and
        the interfaces on a cycle (each cycle reported once). Iterative: a chain of any length is walked in O(n)."""
        infos = self.infos
        depth: dict[str, int] = {}
        closure: dict[str, frozenset[str]] = {}
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        cyclic: set[str] = set()
        for root in self.order:
            if root in state:
                continue
            state[root] = 1
            path = [root]
            walks = [iter(infos[root].cls.parents)]
            while walks:
                cid = path[-1]
                parent = next(walks[-1], None)
                if parent is None:
                    walks.pop()
                    path.pop()
                    state[cid] = 2
                    self._finish_hierarchy(cid, depth, closure)
                    continue
                if parent not in infos:
                    continue
                if state.get(parent) == 1:
                    if parent not in cyclic:
                        cycle = path[path.index(parent) :] + [parent]
                        cyclic.update(cycle)
                        info = infos[cid]
                        where = next(w for p, w in info.extends if p == parent)
                        self._add(where, "extends-cycle", "inheritance cycle: " + _chain_text(cycle), info.source)
                    continue
                if parent not in state:
                    state[parent] = 1
                    path.append(parent)
                    walks.append(iter(infos[parent].cls.parents))
        return depth, closure, cyclic

    def _finish_hierarchy(self, cid: str, depth: dict[str, int], closure: dict[str, frozenset[str]]) -> None:
        """Depth and ancestors of `cid` from its parents' (ancestors only while within the limits: past them the
        interface is reported, and a long chain would otherwise cost quadratic time and memory)."""
        info = self.infos[cid]
        parents = [p for p in info.cls.parents if p in self.infos]
        depth[cid] = max((depth.get(p, 0) + 1 for p in parents), default=0)
        if depth[cid] > info.version.max_extends_depth:
            return
        reach: set[str] = set()
        for parent in parents:
            if parent in depth and parent not in closure:
                return  # a parent past the limits: this one is reported through it
            reach |= {parent} | closure.get(parent, frozenset())
            if len(reach) > _MAX_ANCESTORS:
                self._crowded.add(cid)
                return
        closure[cid] = frozenset(reach)

    def _longest_chain(self, ident: str, depth: dict[str, int]) -> list[str]:
        """`ident` and the ancestors along its deepest inheritance path."""
        chain = [ident]
        while True:
            parents = [p for p in self.infos[chain[-1]].cls.parents if p in depth and p not in chain]
            if not parents:
                return chain
            chain.append(max(parents, key=lambda p: depth[p]))

    def _check_names(self, info: _InterfaceInfo, ancestors: frozenset[str]) -> None:
        seen: dict[str, tuple[str, str]] = {}
        for owner in (info.cls.id, *sorted(ancestors)):
            for name, _kind_name, where in self.infos[owner].contents:
                first = seen.get(name)
                if first is None:
                    seen[name] = (owner, where)
                    continue
                if owner == info.cls.id or first[0] == info.cls.id or first[0] != owner:
                    if owner == info.cls.id and first[0] == info.cls.id:
                        message = f"name {name!r} is already used at {first[1]}"
                    elif first[0] == info.cls.id:
                        message = f"name {name!r} is also defined by ancestor {owner}"
                    else:
                        message = f"name {name!r} is inherited from both {first[0]} and {owner}"
                    if owner == info.cls.id:
                        path = where
                    elif first[0] == info.cls.id:
                        path = first[1]
                    else:
                        path = _key(info.path, "extends")
                    source = info.source
                    self._add(path, "duplicate-name", f"{message} (in {info.cls.id})", source)

    # ----------------------------------------------------------------- result

    def _finish(self) -> DtdlReport:
        ontology = self.report.ontology
        translate = self.iri_of
        for ident in self.order:
            cls = self.infos[ident].cls
            if translate:
                cls = _translate(cls, translate)
            try:
                ontology.add_class(cls)
            except OntologyConflict as exc:
                for v in exc.violations:
                    self._add(self.infos[ident].path, "duplicate-id", v.message, self.infos[ident].source)
            except OntologyError as exc:
                self._add(self.infos[ident].path, "duplicate-id", str(exc), self.infos[ident].source)
        self.report.interfaces = len(self.order)
        self.report.violations = self.violations
        return self.report


def _chain_text(chain: list[str], shown: int = 14) -> str:
    """An inheritance chain for a message, `A -> B -> C`, with the middle of a very long one left out."""
    if len(chain) > shown:
        chain = [*chain[: shown - 3], f"... {len(chain) - shown + 1} more ...", *chain[-2:]]
    return " -> ".join(chain)


def _translate(cls: ClassDef, iri_of: dict[str, str]) -> ClassDef:
    """The class with DTMIs that the writer derived from IRIs turned back into those IRIs."""

    def t(value: str) -> str:
        return iri_of.get(value, value)

    return replace(
        cls,
        id=t(cls.id),
        parents=tuple(t(p) for p in cls.parents),
        relationships=tuple(replace(r, target=t(r.target) if r.target else r.target) for r in cls.relationships),
        components=tuple(replace(c, schema=t(c.schema)) for c in cls.components),
    )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
