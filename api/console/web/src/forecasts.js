// Forecasts over GraphQL: the newest stored forecast of a series with its history, 80 % band, model versions
// (champion, challengers and their backtest metrics) and the anomalies found in its history.

import { ApiError, graphql } from "./api.js";
import { schemaOverview } from "./schema.js";

/** The stored forecast of `series` (its whole horizon; its last `historyPoints` periods of history, or all of it), as
 * the caller's policy lets it see. */
export async function getForecast(series, historyPoints = null) {
  const info = await schemaOverview();
  if (!info.queryFields.has("forecast")) throw new ApiError("this API has no `forecast` query field", "UNAVAILABLE", 404);
  const { data } = await graphql(`query ConsoleForecast($series: String!, $historyPoints: Int) {
    forecast(series: $series, historyPoints: $historyPoints) {
      series modelKind modelVersion codeVersion inputDigest createdAt interval level horizon warnings backtests
      history { period value }
      points { period mean low high }
      models { versionId kind status trainedAt trainStart trainEnd approved metrics }
      anomalies { period kind value score expectedLow expectedHigh }
    }
  }`, { series, historyPoints });
  return data.forecast;
}

/** Names of the series with a stored forecast that the caller may read ([] when this API cannot list them). */
export async function listForecastSeries(first = 500) {
  const info = await schemaOverview();
  if (!info.queryFields.has("forecastSeries")) return [];
  const { data } = await graphql(`query ConsoleForecastSeries($first: Int) { forecastSeries(first: $first) }`, { first });
  return data.forecastSeries;
}
