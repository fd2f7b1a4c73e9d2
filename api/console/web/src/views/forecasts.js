// Forecast view: a series' history, forecast and prediction band, the anomalies in its history, and the model
// governance behind it (champion and challengers with their backtest metrics, the input digest).

import { formatNumber, h, notice, replace } from "../dom.js";
import { forecastChart } from "../forecastChart.js";
import { getForecast, listForecastSeries } from "../forecasts.js";

const METRICS = [["mase", "MASE"], ["smape", "sMAPE"], ["coverage_80", "80 % coverage"]];

function metricCells(metrics) {
  return METRICS.map(([key]) => h("td", { class: "num", dataset: { metric: key } }, formatNumber(metrics?.[key])));
}

function modelsTable(forecast) {
  const order = { champion: 0, challenger: 1 };
  const models = [...forecast.models].sort((a, b) => (order[a.status] ?? 2) - (order[b.status] ?? 2));
  if (models.length === 0) return h("p", { class: "muted", id: "model-versions" }, "No model version in the registry for this series.");
  return h("table", { class: "grid", id: "model-versions" },
    h("thead", {}, h("tr", {}, ["role", "model", "version", ...METRICS.map(([, t]) => t), "trained on", "approved"].map((c) => h("th", {}, c)))),
    h("tbody", {}, models.map((m) => h("tr", { dataset: { version: m.versionId, status: m.status } },
      h("td", {}, h("span", { class: `pill pill-${m.status === "champion" ? "allow" : "update"}` }, m.status)),
      h("td", {}, m.kind), h("td", {}, h("code", {}, m.versionId)), metricCells(m.metrics),
      h("td", {}, `${m.trainStart} – ${m.trainEnd}`), h("td", {}, m.approved ? "yes" : "no")))));
}

function backtestTable(forecast) {
  const rows = Object.entries(forecast.backtests || {}).sort(([, a], [, b]) => (a.mase ?? Infinity) - (b.mase ?? Infinity));
  return h("table", { class: "grid", id: "backtests" },
    h("thead", {}, h("tr", {}, ["model", ...METRICS.map(([, t]) => t), "band", "windows"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map(([kind, b]) => h("tr", { dataset: { kind }, class: kind === forecast.modelKind ? "best" : "" },
      h("td", {}, kind === forecast.modelKind ? `${kind} (forecasting)` : kind), metricCells(b),
      h("td", {}, b.interval || "–"), h("td", { class: "num" }, String(b.windows ?? "–"))))));
}

function anomalyList(forecast) {
  if (forecast.anomalies.length === 0) return h("p", { class: "muted", id: "anomalies" }, "No anomalies in the history.");
  return h("ul", { id: "anomalies", class: "hit-list" }, forecast.anomalies.map((a) => h("li", { dataset: { period: a.period, kind: a.kind } },
    h("strong", {}, a.period), ` ${a.kind.replace("_", " ")}: ${formatNumber(a.value)} `,
    h("span", { class: "muted" }, `(expected ${formatNumber(a.expectedLow)}–${formatNumber(a.expectedHigh)}, score ${formatNumber(a.score)})`))));
}

/** Render the view; params: [series] (URL-encoded). Returns a teardown function. */
export function forecastsView(root, params) {
  let chart = null;
  let alive = true;
  const known = h("datalist", { id: "forecast-series-list" });
  const series = h("input", { id: "forecast-series", name: "series", list: "forecast-series-list", placeholder: "sample.demand/HP-1000/direct", "aria-label": "Series", size: 40 });
  const shown = h("select", { id: "forecast-history", "aria-label": "History shown" },
    [["", "all history"], ["156", "last 156 periods"], ["104", "last 104 periods"], ["52", "last 52 periods"]].map(([v, t]) => h("option", { value: v }, t)));
  const detail = h("div", { id: "forecast-detail" }, h("p", { class: "muted" }, "Name a series with a stored forecast (`twin forecast run`)."));
  const form = h("form", { id: "forecast-form", class: "row", onsubmit: (e) => {
    e.preventDefault();
    const name = series.value.trim();
    if (name) location.hash = `#/forecasts/${encodeURIComponent(name)}`;
  } }, h("label", { class: "inline" }, "Series ", series), shown, h("button", { type: "submit" }, "Show"));
  shown.addEventListener("change", () => {
    if (params[0]) open(decodeURIComponent(params[0]));
  });
  replace(root, h("section", { class: "view single forecast-view" }, h("h2", {}, "Forecasts"), form, known, detail));
  listForecastSeries().then((names) => {
    replace(known, names.map((name) => h("option", { value: name })));
    known.dataset.count = String(names.length);
  }).catch(() => replace(known));

  async function open(name) {
    series.value = name;
    replace(detail, h("p", { class: "muted" }, "Loading forecast…"));
    try {
      const forecast = await getForecast(name, shown.value ? Number(shown.value) : null);
      if (!alive) return;
      if (chart) chart.destroy();
      chart = null;
      const canvas = h("canvas", { id: "forecast-canvas", role: "img", "aria-label": `${forecast.series}: history and forecast` });
      const champion = forecast.models.find((m) => m.status === "champion");
      replace(detail,
        h("header", { class: "study-head" }, h("h2", { id: "forecast-title" }, forecast.series),
          h("dl", { class: "facts" },
            h("dt", {}, "model"), h("dd", {}, `${forecast.modelKind} · version ${forecast.modelVersion || "–"}${champion && champion.versionId === forecast.modelVersion ? " (champion)" : ""}`),
            h("dt", {}, "band"), h("dd", {}, `${forecast.level} % (${forecast.interval}) · ${forecast.horizon} periods ahead`),
            h("dt", {}, "input digest"), h("dd", {}, h("code", {}, forecast.inputDigest)),
            h("dt", {}, "made"), h("dd", {}, `${forecast.createdAt} · code ${forecast.codeVersion}`))),
        forecast.warnings.length ? forecast.warnings.map((w) => notice("info", w)) : null,
        h("figure", { class: "chart wide", id: "forecast-chart", dataset: { history: String(forecast.history.length), horizon: String(forecast.points.length) } },
          h("figcaption", {}, "History, forecast and band"), h("div", { class: "chart-box tall" }, canvas)),
        h("h3", {}, "Champion and challengers (backtest metrics)"), h("div", { class: "table-scroll" }, modelsTable(forecast)),
        h("h3", {}, "Backtests of this forecast's candidates"), h("div", { class: "table-scroll" }, backtestTable(forecast)),
        h("h3", {}, "Anomalies in the history"), anomalyList(forecast));
      chart = forecastChart(canvas, forecast);
    } catch (error) {
      replace(detail, notice("error", error.message));
    }
  }

  if (params[0]) open(decodeURIComponent(params[0]));
  return () => {
    alive = false;
    if (chart) chart.destroy();
  };
}
