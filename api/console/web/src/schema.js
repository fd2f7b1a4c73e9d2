// What the generated GraphQL schema offers this caller: class types, their property and relationship fields.
// Read by introspection once per type, so the console follows the ontology without a copy of it.

import { graphql } from "./api.js";

const TYPE_REF = "kind name ofType { kind name ofType { kind name ofType { kind name } } }";
const RELATION_DESCRIPTION = /linked by (outgoing|incoming) (\S+) relationships/;
const SYSTEM_FIELDS = new Set(["uid", "className", "labels"]);

let overview = null;
const typeCache = new Map();

function baseType(ref) {
  let type = ref;
  let list = false;
  while (type.ofType) {
    if (type.kind === "LIST") list = true;
    type = type.ofType;
  }
  return { kind: type.kind, name: type.name, list };
}

/** Names of all schema types, relationship types, ontology classes and root fields (cached for the session). */
export async function schemaOverview() {
  if (overview) return overview;
  const { data } = await graphql(`query ConsoleSchema {
    __schema { types { name kind } }
    relationshipTypes: __type(name: "RelationshipType") { enumValues { name } }
    classes: __type(name: "TwinClass") { enumValues { name } }
    query: __type(name: "Query") { fields { name } }
    mutation: __type(name: "Mutation") { fields { name } }
  }`);
  overview = {
    types: new Set(data.__schema.types.map((t) => t.name)),
    relationshipTypes: (data.relationshipTypes?.enumValues || []).map((v) => v.name),
    classes: (data.classes?.enumValues || []).map((v) => v.name),
    queryFields: new Set((data.query?.fields || []).map((f) => f.name)),
    mutationFields: new Set((data.mutation?.fields || []).map((f) => f.name)),
  };
  return overview;
}

/**
 * The fields of a twin type: properties [{name, scalar, list, description}] and relations
 * [{field, relType, direction}] (direction "out" or "in", relType the ontology relationship).
 */
export async function twinFields(typeName) {
  if (typeCache.has(typeName)) return typeCache.get(typeName);
  const { data } = await graphql(
    `query ConsoleType($name: String!) { __type(name: $name) { name fields { name description type { ${TYPE_REF} } } } }`,
    { name: typeName },
  );
  const properties = [];
  const relations = [];
  for (const field of data.__type?.fields || []) {
    if (SYSTEM_FIELDS.has(field.name)) continue;
    const type = baseType(field.type);
    if (type.kind === "SCALAR") {
      properties.push({ name: field.name, scalar: type.name, list: type.list, description: field.description || "" });
    } else if (type.kind === "OBJECT" && type.name.endsWith("Connection")) {
      const match = RELATION_DESCRIPTION.exec(field.description || "");
      relations.push({
        field: field.name,
        relType: match ? match[2] : field.name,
        direction: match && match[1] === "incoming" ? "in" : "out",
      });
    }
  }
  const fields = { properties, relations };
  typeCache.set(typeName, fields);
  return fields;
}

/** A selection of a twin's display name, when the ontology has a common `name` (core: Entity.name). */
export function nameSelection(info) {
  return info.types.has("Entity") ? "... on Entity { name }" : "";
}

/** Forget cached schema facts (after signing in as someone else). */
export function resetSchemaCache() {
  overview = null;
  typeCache.clear();
}
