"""Schemas in and out, the one codec: the JSON form of a Schema that OWL annotations (twin:schema, twin:schemas, the
JSON of commands and components) and the metadata comments of DTDL files carry, and the DTDL vocabulary of schemas
the DTDL reader and writer share (primitive names per version, the four complex schema types, the nearest primitive
of an older version, an enum's value schema).

The JSON form names every part of a Schema: `kind`, `id`, `enumValueKind`, `enumValues` (name, value, display texts),
`fields` (name, schema, display texts), `element`, `mapKey`, `mapValue`, `displayName`, `description`. DTDL comments
hold it without display texts (`texts=False`: the DTDL element itself carries them, and a comment is at most 512
characters). DTDL files written before this codec spelled the compact keys `enum_value_kind`, `enum_values`,
`map_key` and `map_value`; they are still read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ontology.model import LangText
from ontology.schema import COMPLEX_KINDS, GEOSPATIAL_KINDS, PRIMITIVES, EnumValue, Field, Schema

DTDL_PRIMITIVES = frozenset(
    {"boolean", "date", "dateTime", "double", "duration", "float", "integer", "long", "string", "time"}
)
"""The primitive schemas of DTDL v2 and v3."""
DTDL_V4_PRIMITIVES = frozenset(
    {
        "byte",
        "bytes",
        "decimal",
        "short",
        "unsignedByte",
        "unsignedInteger",
        "unsignedLong",
        "unsignedShort",
        "uuid",
        "scaledDecimal",
    }
)
"""The primitive schemas DTDL v4 adds."""
GEOSPATIAL = GEOSPATIAL_KINDS
"""The geospatial schemas (dtmi:standard:schema:geospatial), by their DTDL names, which are also their kinds."""
DTDL_SCHEMA_TYPES: dict[str, str] = {"Array": "array", "Enum": "enum", "Map": "map", "Object": "object"}
"""DTDL's complex schema types and the Schema kind each becomes."""
DTDL_FALLBACK: dict[str, str] = {
    "byte": "integer",
    "short": "integer",
    "unsignedByte": "integer",
    "unsignedShort": "integer",
    "unsignedInteger": "long",
    "unsignedLong": "long",
    "decimal": "double",
    "uuid": "string",
    "bytes": "string",
    "scaledDecimal": "string",
}
"""The nearest DTDL v2/v3 primitive of each v4 primitive (the exact one then travels in the element's comment)."""

_LEGACY_KEYS = {
    "enum_value_kind": "enumValueKind",
    "enum_values": "enumValues",
    "map_key": "mapKey",
    "map_value": "mapValue",
}


def enum_value_kind(values: Iterable[object]) -> str:
    """The value schema of an enum with these values: 'integer' when every one is an int (a bool is not), else
    'string'."""
    values = list(values)
    integer = bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return "integer" if integer else "string"


def schema_to_json(schema: Schema, *, texts: bool = True) -> dict[str, Any]:
    """The JSON form of `schema`; without `texts`, display names and descriptions are left out (the compact form)."""
    out: dict[str, Any] = {"kind": schema.kind}
    if schema.id:
        out["id"] = schema.id
    if schema.enum_value_kind:
        out["enumValueKind"] = schema.enum_value_kind
    if schema.enum_values:
        out["enumValues"] = [
            {"name": v.name, "value": v.value, **_texts(v.display_name, v.description, texts)}
            for v in schema.enum_values
        ]
    if schema.fields:
        out["fields"] = [
            {
                "name": f.name,
                "schema": schema_to_json(f.schema, texts=texts),
                **_texts(f.display_name, f.description, texts),
            }
            for f in schema.fields
        ]
    if schema.element is not None:
        out["element"] = schema_to_json(schema.element, texts=texts)
    if schema.map_key is not None:
        out["mapKey"] = schema.map_key
    if schema.map_value is not None:
        out["mapValue"] = schema.map_value
    if texts:
        out.update(
            {key: value for key, value in _texts(schema.display_name, schema.description, True).items() if value}
        )
    return out


def schema_from_json(data: dict[str, Any]) -> Schema:
    """The Schema of a JSON form written by `schema_to_json` (compact or not, older DTDL comment spelling too);
    KeyError, TypeError or ValueError when `data` does not describe one."""
    if not isinstance(data, dict):
        raise TypeError(f"a schema is described by a JSON object, got {type(data).__name__}")
    data = {_LEGACY_KEYS.get(key, key): value for key, value in data.items()}
    kind = data["kind"]
    if kind not in PRIMITIVES and kind not in COMPLEX_KINDS:
        raise ValueError(f"unknown schema kind {str(kind)[:40]!r}")
    if kind in ("array", "map") and not data.get("element"):
        raise ValueError(f"the {kind} schema has no element")
    return Schema(
        kind=kind,
        id=data.get("id"),
        enum_value_kind=data.get("enumValueKind"),
        enum_values=tuple(
            EnumValue(v["name"], v["value"], lang_from_json(v.get("displayName")), lang_from_json(v.get("description")))
            for v in data.get("enumValues", ())
        ),
        fields=tuple(
            Field(
                f["name"],
                schema_from_json(f["schema"]),
                lang_from_json(f.get("displayName")),
                lang_from_json(f.get("description")),
            )
            for f in data.get("fields", ())
        ),
        element=schema_from_json(data["element"]) if data.get("element") else None,
        map_key=data.get("mapKey"),
        map_value=data.get("mapValue"),
        display_name=lang_from_json(data.get("displayName")),
        description=lang_from_json(data.get("description")),
    )


def lang_to_json(text: LangText) -> list[list[str]]:
    """Language-tagged text as JSON: [[language, text], ...]."""
    return [[lang, value] for lang, value in text]


def lang_from_json(data: Any) -> LangText:
    """Language-tagged text from its JSON form (absent = none)."""
    return tuple((str(lang), str(value)) for lang, value in data or ())


def _texts(display_name: LangText, description: LangText, wanted: bool) -> dict[str, Any]:
    if not wanted:
        return {}
    return {"displayName": lang_to_json(display_name), "description": lang_to_json(description)}
