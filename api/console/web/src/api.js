// Talks to the twin's own API (same origin): GraphQL at /graphql and REST under /operations, always with the token.

import { currentSession } from "./session.js";

/** An error the API reported (message is safe to show; code is the GraphQL extensions.code or HTTP status). */
export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function headers(extra = {}) {
  const session = currentSession();
  if (!session) throw new ApiError("not signed in", "UNAUTHENTICATED", 401);
  return { Authorization: `Bearer ${session.token}`, Accept: "application/json", ...extra };
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (response.status === 401) {
    const reason = body?.errors?.[0]?.message || body?.detail || "the token is not valid";
    window.dispatchEvent(new CustomEvent("twin:unauthenticated", { detail: String(reason) }));
  }
  return body;
}

function firstError(body, response) {
  const error = body?.errors?.[0];
  if (error) return new ApiError(error.message, error.extensions?.code || "ERROR", response.status);
  const detail = body?.detail;
  const message = typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : response.statusText;
  return new ApiError(message || `HTTP ${response.status}`, String(response.status), response.status);
}

/**
 * Run a GraphQL operation. Resolves to {data, extensions, errors}; rejects with ApiError when there is no data
 * at all. Partial results (data plus errors, e.g. one root field refused by policy) resolve so views can show both.
 */
export async function graphql(query, variables = {}) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ query, variables }),
  });
  const body = await parse(response);
  if (!body || !body.data) throw firstError(body, response);
  return { data: body.data, extensions: body.extensions || {}, errors: body.errors || [] };
}

/** Call a REST operation (JSON in, JSON out); rejects with ApiError on a non-2xx answer. */
export async function rest(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const parsed = await parse(response);
  if (!response.ok) throw firstError(parsed, response);
  return parsed;
}
