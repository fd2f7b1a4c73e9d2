// Experiment charts (Chart.js): the tornado of a sensitivity analysis, the objective against evaluations of a grid
// or an optimisation, the evaluated frontier (objective against the constraint KPI), and the table of every evaluated
// decision.

import {
  BarController, BarElement, CategoryScale, Chart, Filler, Legend, LinearScale, LineController, LineElement,
  PointElement, ScatterController, Tooltip,
} from "chart.js";
import { bestSoFar, tornadoRows } from "./experiments.js";
import { chartTrace } from "./chartTrace.js";
import { formatNumber, h } from "./dom.js";
import { seriesColour, translucent } from "./palette.js";

Chart.register(
  BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, ScatterController,
  Filler, Legend, Tooltip, chartTrace);

const LOW = "#2563eb";
const HIGH = "#d97706";
const BAND_TOP = "95 % CI upper";

function finite(v) {
  return v === null || v === undefined || Number.isNaN(v) ? null : v;
}

/**
 * Tornado chart of a sensitivity analysis: one row per variable, largest effect on top; a bar from the centre
 * decision to the variable's low value and one to its high value (paired differences of the objective).
 */
export function tornadoChart(canvas, result) {
  const rows = tornadoRows(result);
  return new Chart(canvas, {
    type: "bar",
    data: {
      labels: rows.map((r) => r.variable),
      datasets: [
        { label: "at its low value", data: rows.map((r) => [0, r.low_diff]), backgroundColor: translucent(LOW, 0.8), grouped: false },
        { label: "at its high value", data: rows.map((r) => [0, r.high_diff]), backgroundColor: translucent(HIGH, 0.8), grouped: false },
      ],
    },
    options: {
      indexAxis: "y",
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: { labels: { boxWidth: 12 } },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const r = rows[ctx.dataIndex];
              const [value, diff, ci] = ctx.datasetIndex === 0 ? [r.low_value, r.low_diff, r.low_ci] : [r.high_value, r.high_diff, r.high_ci];
              return `${r.variable} = ${formatNumber(value)}: ${formatNumber(diff)} [${formatNumber(ci[0])}, ${formatNumber(ci[1])}]`;
            },
          },
        },
      },
      scales: {
        x: { title: { display: true, text: `change of the objective (${result.statistic}) from the centre decision` }, ticks: { callback: (v) => formatNumber(v) } },
        y: { grid: { display: false } },
      },
    },
  });
}

/**
 * The objective of each evaluated decision in the order it was evaluated (with its 95 % CI), the best feasible
 * objective so far, and the baseline's; infeasible decisions are drawn as crosses.
 */
export function objectiveChart(canvas, result) {
  const evaluations = result.evaluations;
  const colour = seriesColour(0);
  const labels = evaluations.map((_, i) => String(i + 1));
  const baseline = finite(result.baseline?.objective);
  return new Chart(canvas, {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: BAND_TOP, data: evaluations.map((e) => finite(e.ci_high)), borderWidth: 0, pointRadius: 0, fill: false },
        { label: "95 % CI", data: evaluations.map((e) => finite(e.ci_low)), borderWidth: 0, pointRadius: 0, fill: "-1", backgroundColor: translucent(colour, 0.18) },
        {
          label: "objective", data: evaluations.map((e) => finite(e.objective)), showLine: false, borderColor: colour, backgroundColor: colour,
          pointRadius: 4, pointStyle: evaluations.map((e) => (e.feasible ? "circle" : "crossRot")),
        },
        { label: "best so far", data: bestSoFar(result), borderColor: seriesColour(2), stepped: true, pointRadius: 0, borderWidth: 2, fill: false },
        { label: "baseline", data: evaluations.map(() => baseline), borderColor: "#616e7c", borderDash: [5, 4], pointRadius: 0, borderWidth: 1, fill: false },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { labels: { boxWidth: 12, filter: (item) => item.text !== BAND_TOP } },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              if (ctx.dataset.label !== "objective") return null;
              const e = evaluations[ctx.dataIndex];
              const decision = Object.entries(e.decision).map(([k, v]) => `${k}=${formatNumber(v)}`).join(", ");
              return `${decision}: ${formatNumber(e.objective)}${e.feasible ? "" : " (infeasible)"}`;
            },
          },
        },
      },
      scales: {
        x: { title: { display: true, text: "evaluation" } },
        y: { title: { display: true, text: `objective (${result.statistic}, ${result.sense})` }, ticks: { callback: (v) => formatNumber(v) } },
      },
    },
  });
}

/**
 * The KPI the frontier chart puts across (x): the last KPI the experiment's frontier is taken over (a bounded
 * constraint's KPI when there is one, else the objective's second KPI); null when the frontier has one KPI only.
 */
export function frontierAxis(result) {
  const kpis = result.frontier_kpis || [];
  return kpis.length >= 2 ? kpis[kpis.length - 1] : null;
}

/**
 * The evaluated frontier: every evaluated decision's objective (y) against the frontier's constraint KPI (x);
 * feasible decisions as dots, infeasible ones as crosses, the frontier's decisions joined by a line in order of
 * the KPI, the best decision as a star.
 */
export function frontierChart(canvas, result, kpi) {
  const point = (e) => ({ x: finite(e.kpis?.[kpi]), y: finite(e.objective), e });
  const drawable = result.evaluations.map(point).filter((p) => p.x !== null && p.y !== null);
  const onFrontier = new Set(result.frontier || []);
  const frontier = drawable.filter((p) => onFrontier.has(p.e.index)).sort((a, b) => a.x - b.x);
  const best = drawable.filter((p) => p.e.index === result.best);
  const colour = seriesColour(0);
  const label = (p) => {
    const decision = Object.entries(p.e.decision).map(([k, v]) => `${k}=${formatNumber(v)}`).join(", ");
    return `${decision}: objective ${formatNumber(p.y)}, ${kpi} ${formatNumber(p.x)}${p.e.feasible ? "" : " (infeasible)"}`;
  };
  return new Chart(canvas, {
    type: "scatter",
    data: {
      datasets: [
        { label: "best", data: best, pointStyle: "star", pointRadius: 10, borderWidth: 2, borderColor: seriesColour(2), backgroundColor: seriesColour(2) },
        {
          label: "frontier", data: frontier, showLine: true, borderColor: HIGH, backgroundColor: HIGH, borderWidth: 2, pointRadius: 6,
        },
        { label: "feasible", data: drawable.filter((p) => p.e.feasible), borderColor: colour, backgroundColor: translucent(colour, 0.5), pointRadius: 4 },
        {
          label: "infeasible", data: drawable.filter((p) => !p.e.feasible), pointStyle: "crossRot", pointRadius: 6, borderWidth: 2,
          borderColor: "#dc2626", backgroundColor: "#dc2626",
        },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: { labels: { boxWidth: 12, usePointStyle: true } },
        tooltip: { callbacks: { label: (ctx) => label(ctx.raw) } },
      },
      scales: {
        x: { type: "linear", title: { display: true, text: kpi }, ticks: { callback: (v) => formatNumber(v) } },
        y: { title: { display: true, text: `objective (${result.statistic}, ${result.sense})` }, ticks: { callback: (v) => formatNumber(v) } },
      },
    },
  });
}

/** Every evaluated decision: its variables, objective with 95 % CI, KPI means, feasibility, frontier and best marks. */
export function evaluationTable(result) {
  const variables = [...new Set(result.evaluations.flatMap((e) => Object.keys(e.decision)))];
  const kpis = [...new Set(result.evaluations.flatMap((e) => Object.keys(e.kpis || {})))];
  const frontier = new Set(result.frontier || []);
  const head = ["#", ...variables, "objective", "95 % CI", ...kpis, "feasible", "frontier"];
  const row = (e, label) => h("tr", {
    class: e.index === result.best ? "best" : "", dataset: { index: String(e.index), feasible: String(e.feasible), frontier: String(frontier.has(e.index)) },
  },
  h("td", {}, label), variables.map((v) => h("td", { class: "num" }, e.decision[v] === undefined ? "–" : formatNumber(e.decision[v]))),
  h("td", { class: "num objective" }, formatNumber(e.objective)),
  h("td", { class: "num" }, `[${formatNumber(e.ci_low)}, ${formatNumber(e.ci_high)}]`),
  kpis.map((k) => h("td", { class: "num" }, formatNumber(e.kpis?.[k]))),
  h("td", {}, e.feasible ? "yes" : "no"), h("td", {}, frontier.has(e.index) ? "●" : ""));
  return h("table", { class: "grid", id: "evaluation-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {},
      result.baseline ? row(result.baseline, "baseline") : null,
      result.evaluations.map((e, i) => row(e, e.index === result.best ? `${i + 1} ★` : String(i + 1)))));
}

/** The sensitivity rows as a table (what the tornado draws, in the same order). */
export function sensitivityTable(result) {
  const sobol = (result.sensitivity || []).some((r) => r.first_order !== null && r.first_order !== undefined);
  const head = ["variable", "low", "effect at low (95 % CI)", "high", "effect at high (95 % CI)", "swing", ...(sobol ? ["Sobol S1", "Sobol ST"] : [])];
  const ci = (d, c) => `${formatNumber(d)} [${formatNumber(c[0])}, ${formatNumber(c[1])}]`;
  return h("table", { class: "grid", id: "sensitivity-table" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, tornadoRows(result).map((r) => h("tr", { dataset: { variable: r.variable } },
      h("td", {}, r.variable), h("td", { class: "num" }, formatNumber(r.low_value)), h("td", { class: "num" }, ci(r.low_diff, r.low_ci)),
      h("td", { class: "num" }, formatNumber(r.high_value)), h("td", { class: "num" }, ci(r.high_diff, r.high_ci)),
      h("td", { class: "num swing" }, formatNumber(r.swing)),
      sobol ? [h("td", { class: "num" }, formatNumber(r.first_order)), h("td", { class: "num" }, formatNumber(r.total_order))] : null))));
}
