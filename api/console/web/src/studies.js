// Scenario studies over the API: bundled specs, start a study, follow its job, list and read stored studies.

import { ApiError, graphql, rest } from "./api.js";
import { schemaOverview } from "./schema.js";

const SUMMARY_FIELDS = "scenario kpi n mean ciLow ciHigh p10 p90 diffMean diffLow diffHigh pBreach";

/** The example specs shipped with the twin: [{name, file, description, text}] (served with the console). */
export async function bundledSpecs() {
  const response = await fetch("bundled-scenarios.json");
  if (!response.ok) throw new ApiError("the bundled scenario specs cannot be read", String(response.status), response.status);
  return response.json();
}

/** Start a study from YAML text; resolves to the job {id, status, ...} to follow with `job`. */
export async function startStudy(spec, replications) {
  return rest("/operations/scenarios", { method: "POST", body: { spec, replications: replications || null, executor: "serial" } });
}

/** The state of a started job: {id, status: queued|running|completed|failed, result, error, progress?}. */
export async function job(id) {
  return rest(`/operations/jobs/${encodeURIComponent(id)}`);
}

async function requireField(name) {
  const info = await schemaOverview();
  if (!info.queryFields.has(name)) throw new ApiError(`this API has no \`${name}\` query field`, "UNAVAILABLE", 404);
}

/** Stored studies, newest first: [{id, name, createdAt, replications}]. */
export async function listStudies(first = 50) {
  await requireField("scenarios");
  const { data } = await graphql(
    `query ConsoleStudies($first: Int) { scenarios(first: $first) { id name createdAt replications } }`, { first });
  return data.scenarios;
}

/** One stored study with its KPI summaries: {id, name, createdAt, replications, summaries: [...]}. */
export async function getStudy(id) {
  await requireField("scenarioRun");
  const { data } = await graphql(
    `query ConsoleStudy($id: ID!) {
      scenarioRun(id: $id) { id name createdAt replications summaries { ${SUMMARY_FIELDS} } }
    }`, { id });
  if (!data.scenarioRun) throw new ApiError(`no study ${id}`, "NOT_FOUND", 404);
  return data.scenarioRun;
}

/** KPI summaries from a finished job's result, in the same shape as a stored study's. */
export function summariesOfJob(result) {
  return (result?.summaries || []).map((s) => ({
    scenario: s.scenario, kpi: s.kpi, n: s.n, mean: s.mean, ciLow: s.ci_low, ciHigh: s.ci_high, p10: s.p10, p90: s.p90,
    diffMean: s.diff_mean, diffLow: s.diff_low, diffHigh: s.diff_high, pBreach: s.p_breach,
  }));
}
