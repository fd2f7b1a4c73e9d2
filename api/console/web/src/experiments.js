// Experiments over GraphQL (runExperiment, experimentRun, experiments): start one from a spec with an `experiment:`
// block, follow it, read a stored one with every evaluated decision, its sensitivity rows and frontier.

import { ApiError, graphql } from "./api.js";
import { schemaOverview } from "./schema.js";

const RUN_FIELDS = "id name status startedAt finishedAt error experimentId bestDecision result";

/** Whether a spec's YAML text has a top-level `experiment:` block (then it runs as an experiment, not a study). */
export function isExperimentSpec(text) {
  return /^experiment\s*:/m.test(text || "");
}

async function requireField(kind, name) {
  const info = await schemaOverview();
  const fields = kind === "mutation" ? info.mutationFields : info.queryFields;
  if (!fields.has(name)) throw new ApiError(`this API has no \`${name}\` ${kind} field`, "UNAVAILABLE", 404);
}

/** Start an experiment from YAML text; resolves to its run {id, status, ...} to follow with `experimentRun`. */
export async function startExperiment(spec) {
  await requireField("mutation", "runExperiment");
  const { data } = await graphql(
    `mutation ConsoleRunExperiment($spec: String!) { runExperiment(spec: $spec) { ${RUN_FIELDS} } }`, { spec });
  return data.runExperiment;
}

/** A running experiment (by run id) or a stored one (by id): status and, once done, its result. */
export async function experimentRun(id) {
  await requireField("query", "experimentRun");
  const { data } = await graphql(`query ConsoleExperiment($id: ID!) { experimentRun(id: $id) { ${RUN_FIELDS} } }`, { id });
  if (!data.experimentRun) throw new ApiError(`no experiment ${id}`, "NOT_FOUND", 404);
  return data.experimentRun;
}

/** Stored experiments, newest first: [{id, name, kind, createdAt, evaluations}]. */
export async function listExperiments(first = 50) {
  await requireField("query", "experiments");
  const { data } = await graphql(
    `query ConsoleExperiments($first: Int) { experiments(first: $first) { id name kind createdAt evaluations } }`, { first });
  return data.experiments;
}

/** Sensitivity rows ordered by effect size (swing of the objective from the variable's low to its high value). */
export function tornadoRows(result) {
  return [...(result?.sensitivity || [])].sort((a, b) => Math.abs(b.swing) - Math.abs(a.swing));
}

/** The best objective found after each evaluation, in evaluation order (feasible decisions only; null before one). */
export function bestSoFar(result) {
  const better = result.sense === "maximize" ? (a, b) => a > b : (a, b) => a < b;
  let best = null;
  return result.evaluations.map((e) => {
    if (e.feasible && e.objective !== null && (best === null || better(e.objective, best))) best = e.objective;
    return best;
  });
}
