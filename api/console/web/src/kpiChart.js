// KPI comparison charts (Chart.js): per KPI, each scenario's mean with its 95 % confidence band as a filled range.

import {
  CategoryScale, Chart, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip,
} from "chart.js";
import { formatNumber } from "./dom.js";
import { seriesColour, translucent } from "./palette.js";

Chart.register(CategoryScale, LinearScale, LineController, LineElement, PointElement, Filler, Legend, Tooltip);

const BAND_TOP = "95 % CI upper";

/** Draw one KPI across scenarios into `canvas`: mean line, CI band (filled between upper and lower), P10–P90 marks. */
export function kpiComparisonChart(canvas, kpi, summaries, colourIndex = 0) {
  const colour = seriesColour(colourIndex);
  const rows = summaries.filter((s) => s.kpi === kpi);
  const value = (v) => (v === null || v === undefined || Number.isNaN(v) ? null : v);
  return new Chart(canvas, {
    type: "line",
    data: {
      labels: rows.map((s) => s.scenario),
      datasets: [
        { label: BAND_TOP, data: rows.map((s) => value(s.ciHigh)), borderWidth: 0, pointRadius: 0, fill: false },
        {
          label: "95 % CI", data: rows.map((s) => value(s.ciLow)), borderWidth: 0, pointRadius: 0,
          fill: "-1", backgroundColor: translucent(colour, 0.25),
        },
        {
          label: "mean", data: rows.map((s) => value(s.mean)), borderColor: colour, backgroundColor: colour,
          pointRadius: 4, borderWidth: 2, fill: false,
        },
        {
          label: "P10–P90", data: rows.map((s) => value(s.p10)), borderColor: translucent(colour, 0.5), borderDash: [4, 4],
          pointRadius: 0, borderWidth: 1, fill: false,
        },
        {
          label: "P90", data: rows.map((s) => value(s.p90)), borderColor: translucent(colour, 0.5), borderDash: [4, 4],
          pointRadius: 0, borderWidth: 1, fill: false,
        },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: {
        legend: { labels: { boxWidth: 12, filter: (item) => item.text !== BAND_TOP && item.text !== "P90" } },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const s = rows[ctx.dataIndex];
              if (ctx.dataset.label !== "mean") return null;
              return `mean ${formatNumber(s.mean)} [${formatNumber(s.ciLow)}, ${formatNumber(s.ciHigh)}]`;
            },
          },
        },
      },
      scales: { y: { ticks: { callback: (v) => formatNumber(v) } } },
    },
  });
}
