// Scenario dashboard: list studies and experiments, start one from a bundled or uploaded spec, watch it run, compare
// its KPIs; an experiment shows its tornado (sensitivity), objective against evaluations and every evaluated decision.

import { formatNumber, h, notice, replace } from "../dom.js";
import { evaluationTable, frontierAxis, frontierChart, objectiveChart, sensitivityTable, tornadoChart } from "../experimentCharts.js";
import { experimentRun, isExperimentSpec, listExperiments, startExperiment } from "../experiments.js";
import { kpiComparisonChart } from "../kpiChart.js";
import { bundledSpecs, getStudy, job, listStudies, startStudy, summariesOfJob } from "../studies.js";

const POLL_MS = 800;

function summaryTable(summaries) {
  const head = ["scenario", "KPI", "mean", "95 % CI", "P10", "P90", "vs baseline (95 % CI)", "P(breach)"];
  return h("table", { class: "grid", id: "summary-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, summaries.map((s) => h("tr", {},
      h("td", {}, s.scenario), h("td", {}, s.kpi), h("td", { class: "num" }, formatNumber(s.mean)),
      h("td", { class: "num" }, `[${formatNumber(s.ciLow)}, ${formatNumber(s.ciHigh)}]`),
      h("td", { class: "num" }, formatNumber(s.p10)), h("td", { class: "num" }, formatNumber(s.p90)),
      h("td", { class: "num" }, s.diffMean === null || s.diffMean === undefined ? "–"
        : `${formatNumber(s.diffMean)} [${formatNumber(s.diffLow)}, ${formatNumber(s.diffHigh)}]`),
      h("td", { class: "num" }, s.pBreach === null || s.pBreach === undefined ? "–" : formatNumber(s.pBreach))))));
}

function decisionText(decision) {
  return Object.entries(decision || {}).map(([k, v]) => `${k} = ${formatNumber(v)}`).join(", ");
}

function experimentSummary(run) {
  const result = run.result;
  const best = result.best === null || result.best === undefined ? null : result.evaluations.find((e) => e.index === result.best);
  const vs = result.best_vs_baseline;
  const facts = [
    ["kind", `${result.kind} (${result.sampler}) · ${result.evaluations.length} decisions · ${result.seeds.length} replications each`],
    ["objective", `${result.sense} the ${result.statistic}`],
  ];
  if (best) facts.push(["best decision", decisionText(best.decision)], ["its objective", `${formatNumber(best.objective)} [${formatNumber(best.ci_low)}, ${formatNumber(best.ci_high)}]`]);
  if (vs) facts.push(["vs baseline (paired)", `${formatNumber(vs.mean)} [${formatNumber(vs.low)}, ${formatNumber(vs.high)}]`]);
  return h("dl", { class: "facts", id: "experiment-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, v)]));
}

/** Render the dashboard; params: [studyId], ["job", jobId], ["experiment", id] or ["experiment-run", runId].
 * Returns a teardown function. */
export function scenariosView(root, params) {
  let charts = [];
  let timer = null;
  let alive = true;

  const bundled = h("select", { id: "spec-bundled", name: "bundled", "aria-label": "Bundled spec" }, h("option", { value: "" }, "Loading bundled specs…"));
  const upload = h("input", { id: "spec-upload", type: "file", accept: ".yaml,.yml,text/yaml", "aria-label": "Upload a spec" });
  const replications = h("input", { id: "spec-replications", type: "number", min: 1, max: 1000, value: 5, "aria-label": "Replications" });
  const specText = h("textarea", { id: "spec-text", rows: 9, spellcheck: false, "aria-label": "Study spec (YAML)" });
  const startMessage = h("div", { class: "messages" });
  const studyList = h("ul", { id: "study-list", class: "hit-list" });
  const experimentList = h("ul", { id: "experiment-list", class: "hit-list" });
  const detail = h("div", { id: "study-detail", class: "study-detail" }, h("p", { class: "muted" }, "Pick a study, or start one."));
  let specs = [];

  const form = h("form", { id: "study-form", onsubmit: (e) => { e.preventDefault(); start(); } },
    h("label", { class: "block" }, "Bundled spec", bundled),
    h("label", { class: "block" }, "…or upload a YAML spec", upload),
    h("label", { class: "block" }, "Spec", specText),
    h("label", { class: "inline" }, "Replications ", replications),
    h("button", { type: "submit", id: "study-start" }, "Run"),
    h("p", { class: "muted small" }, "A spec with an experiment: block runs as an experiment (grid, sensitivity or optimisation) with the spec's own replications."),
    startMessage);

  replace(root, h("section", { class: "view scenario-view" },
    h("aside", { class: "panel" }, h("h2", {}, "Scenario studies"), form, h("h3", {}, "Stored studies"), studyList,
      h("h3", {}, "Stored experiments"), experimentList),
    detail));

  bundled.addEventListener("change", () => {
    const spec = specs.find((s) => s.name === bundled.value);
    if (spec) specText.value = spec.text;
  });
  upload.addEventListener("change", async () => {
    const file = upload.files[0];
    if (file) {
      specText.value = await file.text();
      bundled.value = "";
    }
  });

  function clearCharts() {
    charts.forEach((c) => c.destroy());
    charts = [];
  }

  function showResults(header, summaries) {
    clearCharts();
    const kpis = [...new Set(summaries.map((s) => s.kpi))];
    const grid = h("div", { class: "chart-grid", id: "kpi-charts" });
    replace(detail, header, h("h3", {}, "KPIs across scenarios (mean, 95 % confidence band, P10–P90)"), grid,
      h("h3", {}, "Summary"), h("div", { class: "table-scroll" }, summaryTable(summaries)));
    kpis.forEach((kpi, i) => {
      const canvas = h("canvas", { "aria-label": `${kpi} by scenario`, role: "img" });
      grid.append(h("figure", { class: "chart", dataset: { kpi } }, h("figcaption", {}, kpi), h("div", { class: "chart-box" }, canvas)));
      charts.push(kpiComparisonChart(canvas, kpi, summaries, i));
    });
  }

  function showExperiment(run) {
    clearCharts();
    const result = run.result;
    const head = h("header", { class: "study-head" }, h("h2", {}, run.name),
      h("p", { class: "muted" }, `experiment ${run.experimentId || run.id} · ${run.finishedAt || ""}`));
    const parts = [head, experimentSummary(run)];
    const grid = h("div", { class: "chart-grid two", id: "experiment-charts" });
    parts.push(grid);
    if (result.kind === "sensitivity") {
      const canvas = h("canvas", { id: "tornado-canvas", role: "img", "aria-label": "Sensitivity of the objective to each variable" });
      grid.append(h("figure", { class: "chart", id: "tornado-chart", dataset: { variables: String(result.sensitivity.length) } },
        h("figcaption", {}, "Sensitivity (tornado): change of the objective, largest effect first"),
        h("div", { class: "chart-box tall" }, canvas)));
      charts.push(tornadoChart(canvas, result));
      parts.push(h("h3", {}, "Sensitivity"), h("div", { class: "table-scroll" }, sensitivityTable(result)));
    }
    const canvas = h("canvas", { id: "objective-canvas", role: "img", "aria-label": "Objective against evaluations" });
    grid.append(h("figure", { class: "chart", id: "objective-chart", dataset: { evaluations: String(result.evaluations.length) } },
      h("figcaption", {}, "Objective against evaluations (95 % CI, best so far, baseline)"),
      h("div", { class: "chart-box tall" }, canvas)));
    charts.push(objectiveChart(canvas, result));
    const kpi = result.kind === "sensitivity" ? null : frontierAxis(result);
    if (kpi) {
      const frontierCanvas = h("canvas", { id: "frontier-canvas", role: "img", "aria-label": `Objective against ${kpi}, evaluated frontier` });
      grid.append(h("figure", { class: "chart", id: "frontier-chart", dataset: { kpi, frontier: (result.frontier || []).join(",") } },
        h("figcaption", {}, `Evaluated frontier: objective against ${kpi} (★ best, × infeasible)`),
        h("div", { class: "chart-box tall" }, frontierCanvas)));
      charts.push(frontierChart(frontierCanvas, result, kpi));
    }
    parts.push(h("h3", {}, "Evaluated decisions (★ best, ● evaluated frontier)"), h("div", { class: "table-scroll" }, evaluationTable(result)));
    replace(detail, ...parts);
  }

  async function openExperiment(id) {
    replace(detail, h("p", { class: "muted" }, "Loading experiment…"));
    try {
      const run = await experimentRun(id);
      if (!alive) return;
      if (run.status === "completed" && run.result) showExperiment(run);
      else followExperiment(id);
    } catch (error) {
      replace(detail, notice("error", error.message));
    }
  }

  async function followExperiment(runId) {
    try {
      const run = await experimentRun(runId);
      if (!alive) return;
      if (run.status === "completed" && run.result) {
        await refreshList();
        history.replaceState(null, "", `#/scenarios/experiment/${encodeURIComponent(run.experimentId)}`);
        showExperiment(run);
        return;
      }
      replace(detail, progressView(run));
      if (run.status !== "failed") timer = setTimeout(() => followExperiment(runId), POLL_MS);
    } catch (error) {
      replace(detail, notice("error", error.message));
    }
  }

  function studyHeader(study) {
    return h("header", { class: "study-head" }, h("h2", {}, study.name),
      h("p", { class: "muted" }, `study ${study.id} · ${study.replications} replications · ${study.createdAt || ""}`));
  }

  async function openStudy(id) {
    replace(detail, h("p", { class: "muted" }, "Loading study…"));
    try {
      const study = await getStudy(id);
      showResults(studyHeader(study), study.summaries);
    } catch (error) {
      replace(detail, notice("error", error.message));
    }
  }

  async function refreshExperiments() {
    try {
      const found = await listExperiments();
      replace(experimentList, found.length === 0 ? h("li", { class: "muted" }, "No experiments yet.") : found.map((x) =>
        h("li", {}, h("a", { href: `#/scenarios/experiment/${encodeURIComponent(x.id)}`, class: "experiment-link", dataset: { id: x.id } }, x.name),
          h("span", { class: "muted" }, ` ${x.kind} · ${x.evaluations} decisions · ${x.createdAt || ""}`))));
    } catch (error) {
      replace(experimentList, h("li", { class: "muted" }, error.message));
    }
  }

  async function refreshList() {
    refreshExperiments();
    try {
      const studies = await listStudies();
      replace(studyList, studies.length === 0 ? h("li", { class: "muted" }, "No studies yet.") : studies.map((s) =>
        h("li", {}, h("a", { href: `#/scenarios/${encodeURIComponent(s.id)}`, class: "study-link", dataset: { id: s.id } }, s.name),
          h("span", { class: "muted" }, ` ${s.createdAt || ""} · n=${s.replications}`))));
    } catch (error) {
      replace(studyList, h("li", { class: "muted" }, error.message));
    }
  }

  function progressView(state) {
    const progress = state.progress;
    const bar = progress && progress.total
      ? h("progress", { max: progress.total, value: progress.done }, `${progress.done}/${progress.total}`)
      : h("progress", { "aria-label": "running" });
    return h("div", { id: "study-progress", dataset: { status: state.status } },
      h("h2", {}, state.name || "Study"),
      h("p", {}, `Status: `, h("strong", { class: "job-status" }, state.status),
        progress && progress.total ? ` · ${progress.done} of ${progress.total} replications` : ""),
      state.status === "failed" ? notice("error", state.error || "the study failed") : bar);
  }

  async function follow(jobId) {
    try {
      const state = await job(jobId);
      if (!alive) return;
      if (state.status === "completed") {
        const studyId = state.result?.studyId;
        await refreshList();
        if (studyId) {
          history.replaceState(null, "", `#/scenarios/${encodeURIComponent(studyId)}`);
          showResults(studyHeader({ id: studyId, name: state.name, replications: state.result.replications ?? replications.value, createdAt: state.finishedAt }),
            summariesOfJob(state.result));
        }
        return;
      }
      replace(detail, progressView(state));
      if (state.status !== "failed") timer = setTimeout(() => follow(jobId), POLL_MS);
    } catch (error) {
      replace(detail, notice("error", error.message));
    }
  }

  async function start() {
    replace(startMessage);
    const spec = specText.value.trim();
    if (!spec) {
      replace(startMessage, notice("error", "choose a bundled spec, upload one, or write one"));
      return;
    }
    try {
      if (isExperimentSpec(spec)) {
        const run = await startExperiment(spec);
        history.replaceState(null, "", `#/scenarios/experiment-run/${encodeURIComponent(run.id)}`);
        replace(detail, progressView(run));
        followExperiment(run.id);
        return;
      }
      const started = await startStudy(spec, Number(replications.value) || null);
      history.replaceState(null, "", `#/scenarios/job/${encodeURIComponent(started.id)}`);
      replace(detail, progressView(started));
      follow(started.id);
    } catch (error) {
      replace(startMessage, notice("error", error.message));
    }
  }

  (async () => {
    try {
      specs = await bundledSpecs();
      replace(bundled, h("option", { value: "" }, "— choose —"), specs.map((s) => h("option", { value: s.name, title: s.description }, s.name)));
    } catch (error) {
      replace(bundled, h("option", { value: "" }, "(none available)"));
    }
  })();
  refreshList();
  if (params[0] === "job" && params[1]) follow(decodeURIComponent(params[1]));
  else if (params[0] === "experiment-run" && params[1]) followExperiment(decodeURIComponent(params[1]));
  else if (params[0] === "experiment" && params[1]) openExperiment(decodeURIComponent(params[1]));
  else if (params[0]) openStudy(decodeURIComponent(params[0]));

  return () => {
    alive = false;
    clearTimeout(timer);
    clearCharts();
  };
}
