// The forecast chart (Chart.js): the series' history, the forecast's mean and its prediction band (filled between
// its low and high bounds), and the anomalies of the history marked where they happened.

import {
  CategoryScale, Chart, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip,
} from "chart.js";
import { chartTrace } from "./chartTrace.js";
import { formatNumber } from "./dom.js";
import { seriesColour, translucent } from "./palette.js";

Chart.register(CategoryScale, LinearScale, LineController, LineElement, PointElement, Filler, Legend, Tooltip, chartTrace);

const BAND_TOP = "band high";

/** Draw `forecast` (as getForecast returns it) into `canvas`. */
export function forecastChart(canvas, forecast) {
  const history = forecast.history;
  const points = forecast.points;
  const labels = [...history.map((p) => p.period), ...points.map((p) => p.period)];
  const pad = (n) => Array(n).fill(null);
  const anomalies = new Map(forecast.anomalies.map((a) => [a.period, a]));
  const colour = seriesColour(0);
  const ahead = seriesColour(1);
  const last = history.length ? history[history.length - 1] : null;
  // the forecast line starts at the last observed value so the two lines join
  const mean = [...pad(Math.max(history.length - 1, 0)), ...(last ? [last.value] : []), ...points.map((p) => p.mean)];
  return new Chart(canvas, {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: BAND_TOP, data: [...pad(history.length), ...points.map((p) => p.high)], borderWidth: 0, pointRadius: 0, fill: false },
        {
          label: `${forecast.level} % band (${forecast.interval})`, data: [...pad(history.length), ...points.map((p) => p.low)],
          borderWidth: 0, pointRadius: 0, fill: "-1", backgroundColor: translucent(ahead, 0.25),
        },
        { label: "history", data: [...history.map((p) => p.value), ...pad(points.length)], borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 1.5 },
        { label: `forecast (${forecast.modelKind})`, data: mean, borderColor: ahead, backgroundColor: ahead, borderDash: [6, 3], pointRadius: 0, borderWidth: 2 },
        {
          label: "anomaly", data: [...history.map((p) => (anomalies.has(p.period) ? p.value : null)), ...pad(points.length)],
          showLine: false, pointStyle: "triangle", pointRadius: 7, borderColor: "#b91c1c", backgroundColor: "#b91c1c",
        },
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
              if (ctx.dataset.label === BAND_TOP || ctx.raw === null) return null;
              const i = ctx.dataIndex - history.length;
              if (ctx.datasetIndex === 1 && i >= 0) return `band [${formatNumber(points[i].low)}, ${formatNumber(points[i].high)}]`;
              if (ctx.dataset.label === "anomaly") {
                const a = anomalies.get(labels[ctx.dataIndex]);
                return `${a.kind}: ${formatNumber(a.value)} (expected ${formatNumber(a.expectedLow)}–${formatNumber(a.expectedHigh)})`;
              }
              return `${ctx.dataset.label}: ${formatNumber(ctx.raw)}`;
            },
          },
        },
      },
      scales: {
        x: { ticks: { maxTicksLimit: 12, autoSkip: true } },
        y: { ticks: { callback: (v) => formatNumber(v) } },
      },
    },
  });
}
