// What a chart drew, readable from the page: after every render Chart.js's own element geometry is written to the
// canvas as data-drawn (labels; per dataset its label and each element's pixel position and the value that position
// stands for on the chart's scales, with xValue too when x is a linear scale, as in a scatter). Screen readers get the same numbers from the tables beside each chart; browser
// tests read it to check that the picture shows the API's numbers.

function valueAt(scale, pixel) {
  return scale && Number.isFinite(pixel) ? scale.getValueForPixel(pixel) : null;
}

/** A Chart.js plugin: register it once; every chart then keeps its drawn geometry in canvas.dataset.drawn. */
export const chartTrace = {
  id: "twinChartTrace",
  afterRender(chart) {
    const horizontal = chart.options.indexAxis === "y";
    const valueScale = horizontal ? chart.scales.x : chart.scales.y;
    const datasets = chart.data.datasets.map((dataset, i) => {
      const meta = chart.getDatasetMeta(i);
      return {
        label: dataset.label,
        visible: chart.isDatasetVisible(i),
        elements: meta.data.map((el, j) => {
          const raw = dataset.data[j];
          if (raw === null || raw === undefined || el.skip) return null;
          const at = horizontal ? el.x : el.y;
          const drawn = { x: el.x, y: el.y, value: valueAt(valueScale, at) };
          if (!horizontal && chart.scales.x?.type === "linear") drawn.xValue = valueAt(chart.scales.x, el.x);
          if (el.base !== undefined) {
            drawn.base = el.base;
            drawn.baseValue = valueAt(valueScale, el.base);
          }
          return drawn;
        }),
      };
    });
    chart.canvas.dataset.drawn = JSON.stringify({ labels: chart.data.labels, datasets });
  },
};
