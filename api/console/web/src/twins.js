// Reading twins through GraphQL: search, one twin with its properties and neighbourhood, impact analysis.

import { ApiError, graphql } from "./api.js";
import { maskIndex } from "./masking.js";
import { nameSelection, schemaOverview, twinFields } from "./schema.js";

const NEIGHBOURS_PER_RELATION = 25;

function summary(twin) {
  return { uid: twin.uid, className: twin.className, typeName: twin.__typename, name: twin.name ?? null };
}

/** Twins whose names or descriptions match `text`: [{score, twin: {uid, className, typeName, name}}]. */
export async function searchTwins(text, first = 20) {
  const info = await schemaOverview();
  const { data } = await graphql(
    `query ConsoleSearch($text: String!, $first: Int) {
      search(text: $text, first: $first) { score twin { __typename uid className ${nameSelection(info)} } }
    }`,
    { text, first },
  );
  return data.search.map((hit) => ({ score: hit.score, twin: summary(hit.twin) }));
}

/**
 * One twin as this caller may see it: {uid, className, typeName, name, properties: [{name, value, mode}],
 * links: [{relType, direction, field, totalCount, nodes: [summary]}]}. ApiError NOT_FOUND when it is not visible.
 */
export async function loadTwin(uid) {
  const info = await schemaOverview();
  const head = await graphql("query ConsoleTwinType($uid: ID!) { twin(uid: $uid) { __typename uid } }", { uid });
  if (!head.data.twin) throw new ApiError(`no twin ${uid} is visible to you`, "NOT_FOUND", 404);
  const typeName = head.data.twin.__typename;
  const fields = await twinFields(typeName);
  const names = nameSelection(info);
  const relations = fields.relations
    .map((r) => `${r.field}(first: ${NEIGHBOURS_PER_RELATION}) { totalCount nodes { __typename uid className ${names} } }`)
    .join("\n");
  const props = fields.properties.map((p) => p.name).join(" ");
  const body = [props, relations].filter(Boolean).join("\n");
  const fragment = body ? `... on ${typeName} { ${body} }` : "";
  const { data, extensions } = await graphql(
    `query ConsoleTwin($uid: ID!) {
      twin(uid: $uid) { __typename uid className labels ${fragment} }
    }`,
    { uid },
  );
  const twin = data.twin;
  if (!twin) throw new ApiError(`no twin ${uid} is visible to you`, "NOT_FOUND", 404);
  const masks = maskIndex(extensions);
  return {
    ...summary(twin),
    labels: twin.labels,
    properties: fields.properties.map((p) => ({
      name: p.name,
      value: twin[p.name],
      mode: masks.get(`${twin.className}.${p.name}`),
      description: p.description,
    })),
    links: fields.relations
      .filter((r) => twin[r.field] && twin[r.field].totalCount > 0)
      .map((r) => ({ ...r, totalCount: twin[r.field].totalCount, nodes: twin[r.field].nodes.map(summary) })),
  };
}

/** What breaks if `uid` fails: [{depth, path: [uid], via: [relType], twin: summary}]. */
export async function impactOf(uid, maxDepth) {
  const info = await schemaOverview();
  const { data } = await graphql(
    `query ConsoleImpact($uid: ID!, $depth: Int) {
      impact(uid: $uid, maxDepth: $depth) {
        depth path via twin { __typename uid className ${nameSelection(info)} }
      }
    }`,
    { uid, depth: maxDepth },
  );
  return data.impact.map((hit) => ({ depth: hit.depth, path: hit.path, via: hit.via, twin: summary(hit.twin) }));
}
