// Forecasts over GraphQL: the newest stored forecast of a series with its history, 80 % band, model versions
// (champion, challengers and their backtest metrics) and the anomalies found in its history.

import { ApiError, graphql } from "./api.js";
import { schemaOverview } from "./schema.js";

/** The stored forecast of `series` (all its history and horizon), as the caller's policy lets it see. */
export async function getForecast(series) {
  const info = await schemaOverview();
  if (!info.queryFields.has("forecast")) throw new ApiError("this API has no `forecast` query field", "UNAVAILABLE", 404);
  const { data } = await graphql(`query ConsoleForecast($series: String!) {
    forecast(series: $series) {
      series modelKind modelVersion codeVersion inputDigest createdAt interval level horizon warnings backtests
      history { period value }
      points { period mean low high }
      models { versionId kind status trainedAt trainStart trainEnd approved metrics }
      anomalies { period kind value score expectedLow expectedHigh }
    }
  }`, { series });
  return data.forecast;
}
