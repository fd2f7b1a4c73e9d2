"""DTDL v2/v3/v4 writer: any Ontology (from DTDL or OWL) -> DTDL Interface documents that read back to the same model.

Identifiers: a class id that is already a DTMI valid for the target version is kept. Any other id (an OWL IRI) gets
a DTMI from ontology.dtmi.iri_to_dtmi (reversed host, path segments, fragment; e.g.
https://enterprise-twin.dev/ontology/core#Employee -> dtmi:dev:enterprise_twin:ontology:core:Employee;1), made
unique by a numeric suffix when two IRIs collide.

What DTDL cannot express (the original IRI, a class name other than the DTMI's last segment, PropertyDef.required /
classification / iri, RelationshipDef.inverse / characteristics / iri / min > 0, names that are not DTDL names,
schemas using primitives the target version lacks) is recorded in the element's "comment" as
``twin:<compact JSON>``. A comment is valid on every DTDL element and ignored by other tools; ontology.dtdl_reader
decodes it, so ``read(write(model)) == model``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ontology.dtdl_reader import TWIN_META_PREFIX, VERSIONS, DtdlError, DtdlVersion, parse_dtdl_report
from ontology.dtmi import INTERFACE_ID_MAX_LENGTH, dtmi_name, dtmi_problem, iri_to_dtmi, parse_dtmi, to_segment
from ontology.errors import Violation
from ontology.model import ClassDef, CommandDef, LangText, Ontology, PropertyDef, RelationshipDef
from ontology.schema import Schema
from ontology.schema_codec import DTDL_FALLBACK, GEOSPATIAL, enum_value_kind, schema_to_json

_QUANTITATIVE = {3: "dtmi:dtdl:extension:quantitativeTypes;1", 4: "dtmi:dtdl:extension:quantitativeTypes;2"}
_COMMENT_LIMIT = 512


def write_dtdl(ontology: Ontology, version: int = 3, *, validate: bool = True) -> list[dict[str, Any]]:
    """One DTDL Interface document per class; with `validate`, the output is re-read and DtdlError lists problems."""
    if version not in VERSIONS:
        raise DtdlError(f"cannot write DTDL v{version}; supported versions: {', '.join(map(str, VERSIONS))}")
    writer = _Writer(ontology, VERSIONS[version])
    documents = [writer.interface(cls) for cls in ontology.classes.values()]
    if writer.problems:
        raise DtdlError(f"the ontology cannot be written as DTDL v{version}", writer.problems)
    if validate:
        report = parse_dtdl_report([(f"<write_dtdl v{version}>", documents)])
        if report.violations:
            raise DtdlError(f"the ontology does not make valid DTDL v{version}", report.violations)
    return documents


def dump_dtdl(ontology: Ontology, path: Path | str, version: int = 3) -> list[Path]:
    """Write the ontology as DTDL: one JSON array file when `path` ends in .json, else one file per interface."""
    documents = write_dtdl(ontology, version)
    target = Path(path)
    if target.suffix == ".json":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(documents, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [target]
    written: list[Path] = []
    used: set[Path] = set()
    for doc in documents:
        dtmi = parse_dtmi(doc["@id"], version)
        file = target.joinpath(*dtmi.segments[:-1], f"{dtmi.name}.json")
        if file in used:
            file = file.with_name(f"{dtmi.name}.v{dtmi.version or 0}.json")
        used.add(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(file)
    return written


def _holds_array(schema: Schema) -> bool:
    """True when an Array or a geospatial schema occurs anywhere in `schema`."""
    if schema.kind == "array" or schema.kind in GEOSPATIAL:
        return True
    return any(_holds_array(s) for s in (*(f.schema for f in schema.fields), *filter(None, [schema.element])))


class _Writer:
    """One writing session: the class-id -> DTMI map and the schemas already emitted with an @id."""

    def __init__(self, ontology: Ontology, version: DtdlVersion) -> None:
        self.ontology = ontology
        self.version = version
        self.problems: list[Violation] = []
        self.dtmi_of: dict[str, str] = {}
        self.emitted_schema_ids: set[str] = set()
        taken: set[str] = set()
        ids = list(ontology.classes)
        for cid in ids:  # ids that are valid DTMIs keep their value and have priority
            if self._usable(cid, INTERFACE_ID_MAX_LENGTH):
                self.dtmi_of[cid] = cid
                taken.add(cid)
        for cid in sorted(i for i in ids if i not in self.dtmi_of):
            self.dtmi_of[cid] = self._fresh(cid, taken)
            taken.add(self.dtmi_of[cid])

    def _usable(self, ident: str, limit: int = 2048) -> bool:
        return dtmi_problem(ident, self.version.number, as_id=True, max_length=limit) is None

    def _fresh(self, ident: str, taken: set[str]) -> str:
        candidate = iri_to_dtmi(ident)
        stem, _, version = candidate.rpartition(";")
        n = 2
        while candidate in taken:
            candidate = f"{stem}{n};{version}"
            n += 1
        return candidate

    def _ref(self, class_id: str) -> tuple[str, bool]:
        """The DTMI for a class id and whether it differs from the id (so the original must be recorded)."""
        if class_id in self.dtmi_of:
            return self.dtmi_of[class_id], self.dtmi_of[class_id] != class_id
        if self._usable(class_id):
            return class_id, False
        return iri_to_dtmi(class_id), True

    # ----------------------------------------------------------------- elements

    def interface(self, cls: ClassDef) -> dict[str, Any]:
        dtmi = self.dtmi_of[cls.id]
        meta: dict[str, Any] = {}
        if dtmi != cls.id:
            meta["id"] = cls.id
        if cls.name != dtmi_name(dtmi):
            meta["name"] = cls.name
        doc: dict[str, Any] = {
            "@context": self.version.context,
            "@id": dtmi,
            "@type": ["Interface", *cls.semantic_types] if cls.semantic_types else "Interface",
        }
        self._texts(doc, cls.display_name, cls.description)
        if cls.parents:
            parents = [self._ref(p)[0] for p in cls.parents]
            doc["extends"] = parents[0] if len(parents) == 1 else parents
        local = {s.id for s in cls.schemas if s.id}
        contents: list[dict[str, Any]] = []
        for prop in cls.properties:
            contents.append(self.property(prop, local, cls.id))
        for rel in cls.relationships:
            contents.append(self.relationship(rel, local, cls.id))
        for command in cls.commands:
            contents.append(self.command(command, local, cls.id))
        for component in cls.components:
            component_meta: dict[str, Any] = {}
            element: dict[str, Any] = {
                "@type": "Component",
                "name": self._name(component.name, component_meta),
                "schema": self._ref(component.schema)[0],
            }
            self._texts(element, component.display_name, component.description)
            self._comment(element, component_meta, f"{cls.id}/{component.name}")
            contents.append(element)
        if contents:
            doc["contents"] = contents
        if cls.schemas:
            schemas = []
            for schema in cls.schemas:
                assert schema.id is not None
                self.emitted_schema_ids.add(schema.id)
                schemas.append(self.schema(schema, set(), cls.id, top=True))
            doc["schemas"] = schemas
        if any(p.unit or p.semantic_types for p in cls.properties) and self.version.number in _QUANTITATIVE:
            doc["@context"] = [self.version.context, _QUANTITATIVE[self.version.number]]
        self._comment(doc, meta, cls.id)
        return doc

    def property(self, prop: PropertyDef, local: set[str], owner: str) -> dict[str, Any]:
        kind = "Telemetry" if prop.kind == "telemetry" else "Property"
        meta: dict[str, Any] = {}
        element: dict[str, Any] = {
            "@type": [kind, *prop.semantic_types] if prop.semantic_types else kind,
            "name": self._name(prop.name, meta),
        }
        if kind == "Property" and not self.version.property_allows_array and _holds_array(prop.schema):
            element["schema"] = "string"  # DTDL v2 Properties cannot hold arrays or geospatial values
            meta["schema"] = schema_to_json(prop.schema, texts=False)
        else:
            element["schema"] = self._schema_value(prop.schema, local, owner, meta)
        if prop.unit and prop.semantic_types:
            element["unit"] = prop.unit
        elif prop.unit:  # DTDL allows a unit only with a semantic-type co-type (e.g. OWL-sourced properties lack one)
            meta["unit"] = prop.unit
        if kind == "Property" and prop.writable:
            element["writable"] = True
        if prop.required:
            meta["required"] = True
        if prop.classification:
            meta["classification"] = prop.classification
        if prop.iri:
            meta["iri"] = prop.iri
        self._texts(element, prop.display_name, prop.description)
        self._comment(element, meta, f"{owner}/{prop.name}")
        return element

    def relationship(self, rel: RelationshipDef, local: set[str], owner: str) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        element: dict[str, Any] = {"@type": "Relationship", "name": self._name(rel.name, meta)}
        if rel.target:
            target, changed = self._ref(rel.target)
            element["target"] = target
            if changed and rel.target not in self.dtmi_of:
                meta["target"] = rel.target
        if rel.min is not None:
            if rel.min == 0:
                element["minMultiplicity"] = 0
            else:
                meta["min"] = rel.min
        if rel.max is not None:
            limit = self.version.max_max_multiplicity
            if rel.max >= 1 and (limit is None or rel.max <= limit):
                element["maxMultiplicity"] = rel.max
            else:
                meta["max"] = rel.max
        if rel.properties:
            element["properties"] = [self.property(p, local, f"{owner}/{rel.name}") for p in rel.properties]
        if rel.writable:
            element["writable"] = True
        if rel.inverse:
            meta["inverse"] = rel.inverse
        if rel.characteristics:
            meta["characteristics"] = sorted(rel.characteristics)
        if rel.iri:
            meta["iri"] = rel.iri
        self._texts(element, rel.display_name, rel.description)
        self._comment(element, meta, f"{owner}/{rel.name}")
        return element

    def command(self, command: CommandDef, local: set[str], owner: str) -> dict[str, Any]:
        command_meta: dict[str, Any] = {}
        element: dict[str, Any] = {"@type": "Command", "name": self._name(command.name, command_meta)}
        for member, payload in (("request", command.request), ("response", command.response)):
            if payload is None:
                continue
            meta: dict[str, Any] = {}
            name, schema = payload
            body: dict[str, Any] = {"name": self._name(name, meta)}
            body["schema"] = self._schema_value(schema, local, owner, meta)
            self._comment(body, meta, f"{owner}/{command.name}.{member}")
            element[member] = body
        self._texts(element, command.display_name, command.description)
        self._comment(element, command_meta, f"{owner}/{command.name}")
        return element

    # ----------------------------------------------------------------- schemas

    def _schema_value(self, schema: Schema, local: set[str], owner: str, meta: dict[str, Any]) -> Any:
        """A schema member value: a reference to a schema of this interface, a primitive term, or an inline schema."""
        if schema.id and schema.id in local:
            return self._schema_id(schema.id)
        if schema.is_primitive and not self._representable(schema):
            meta["schema"] = schema_to_json(schema, texts=False)
        return self.schema(schema, local, owner)

    def _representable(self, schema: Schema, *, top: bool = False) -> bool:
        """True when writing `schema` in the target version reads back as an equal Schema."""
        if schema.is_primitive:
            return schema.kind in self.version.primitives or schema.kind in GEOSPATIAL
        if schema.id and (not self._usable(schema.id) or (not top and schema.id in self.emitted_schema_ids)):
            return False
        if schema.kind == "map" and (schema.map_key is None or schema.map_value is None):
            return False
        if schema.kind == "enum" and (
            schema.enum_value_kind not in ("integer", "string")
            or any(to_segment(v.name) != v.name for v in schema.enum_values)
        ):
            return False
        names = [f.name for f in schema.fields] + [n for n in (schema.map_key, schema.map_value) if n]
        if any(to_segment(n) != n for n in names):
            return False
        children = [f.schema for f in schema.fields] + ([schema.element] if schema.element else [])
        return all(self._representable(c) for c in children)

    def _schema_id(self, ident: str) -> str:
        return ident if self._usable(ident) else iri_to_dtmi(ident)

    def schema(self, schema: Schema, local: set[str], owner: str, *, top: bool = False) -> Any:
        """A schema written in the target version (unsupported primitives fall back to the nearest one)."""
        if schema.is_primitive:
            if schema.kind in self.version.primitives or schema.kind not in DTDL_FALLBACK:
                return schema.kind
            return DTDL_FALLBACK[schema.kind]
        if schema.id and schema.id in local and not top:
            return self._schema_id(schema.id)
        element: dict[str, Any] = {}
        exact = self._representable(schema, top=top)
        if schema.id and (top or schema.id not in self.emitted_schema_ids):
            element["@id"] = self._schema_id(schema.id)
            self.emitted_schema_ids.add(schema.id)
        if schema.kind == "enum":
            kind = schema.enum_value_kind or enum_value_kind(v.value for v in schema.enum_values)
            element.update(
                {
                    "@type": "Enum",
                    "valueSchema": kind,
                    "enumValues": [
                        self._texts(
                            {"name": to_segment(v.name), "enumValue": v.value if kind == "integer" else str(v.value)},
                            v.display_name,
                            v.description,
                        )
                        for v in schema.enum_values
                    ],
                }
            )
        elif schema.kind == "object":
            element.update(
                {
                    "@type": "Object",
                    "fields": [
                        self._texts(
                            {"name": to_segment(f.name), "schema": self.schema(f.schema, local, owner)},
                            f.display_name,
                            f.description,
                        )
                        for f in schema.fields
                    ],
                }
            )
        elif schema.kind == "map":
            assert schema.element is not None
            element.update(
                {
                    "@type": "Map",
                    "mapKey": {"name": to_segment(schema.map_key or "key"), "schema": "string"},
                    "mapValue": {
                        "name": to_segment(schema.map_value or "value"),
                        "schema": self.schema(schema.element, local, owner),
                    },
                }
            )
        elif schema.kind == "array":
            assert schema.element is not None
            element.update({"@type": "Array", "elementSchema": self.schema(schema.element, local, owner)})
        else:
            self.problems.append(Violation(owner, "unknown-schema", f"schema kind {schema.kind!r} has no DTDL form"))
        self._texts(element, schema.display_name, schema.description)
        self._comment(element, {} if exact else {"schema": schema_to_json(schema, texts=False)}, owner)
        return element

    # ----------------------------------------------------------------- members

    def _name(self, name: str, meta: dict[str, Any]) -> str:
        safe = to_segment(name)[: self.version.max_name]
        if safe != name:
            meta["name"] = name
        return safe

    def _texts(self, element: dict[str, Any], display: LangText, description: LangText) -> dict[str, Any]:
        for key, value in (("displayName", display), ("description", description)):
            if not value:
                continue
            if len(value) == 1 and value[0][0] == "en":
                element[key] = value[0][1]
            else:
                element[key] = dict(value)
        return element

    def _comment(self, element: dict[str, Any], meta: dict[str, Any], where: str) -> None:
        if not meta:
            return
        comment = TWIN_META_PREFIX + json.dumps(meta, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        if len(comment) > _COMMENT_LIMIT:
            self.problems.append(
                Violation(
                    where,
                    "string-length",
                    f"the metadata needed to read this element back is {len(comment)} characters, more than the "
                    f"{_COMMENT_LIMIT} a DTDL comment may hold",
                )
            )
        element["comment"] = comment


def ontology_dtmis(ontology: Ontology, version: int = 3) -> dict[str, str]:
    """The class id -> DTMI map write_dtdl uses for `ontology` (identity for ids that are DTMIs already)."""
    return dict(_Writer(ontology, VERSIONS[version]).dtmi_of)
