// Field masks as the API reports them: the response's extensions list each masked (class, field, mode).
// The console never unmasks anything; it only labels what the API already masked.

import { h } from "./dom.js";

const MODE_LABELS = {
  redact: "redacted",
  null: "withheld",
  hash: "hashed",
  partial: "partly hidden",
};

/** Map "Class.field" -> masking mode from a GraphQL response's extensions. */
export function maskIndex(extensions) {
  const index = new Map();
  for (const entry of extensions?.masked || []) index.set(`${entry.className}.${entry.field}`, entry.mode);
  return index;
}

/** The masking mode of `field` on a twin of `className`, or undefined when the value is shown as stored. */
export function maskOf(index, className, field) {
  return index.get(`${className}.${field}`);
}

function plain(value) {
  if (value === null || value === undefined) return h("span", { class: "value empty" }, "–");
  if (typeof value === "object") return h("code", { class: "value" }, JSON.stringify(value));
  return h("span", { class: "value" }, String(value));
}

/** A value as an element; a masked value carries a badge naming the masking mode. */
export function valueView(value, mode) {
  if (!mode) return plain(value);
  const label = MODE_LABELS[mode] || mode;
  const badge = h("span", { class: "mask-badge", title: `masked by policy: ${mode}` }, `masked: ${label}`);
  const shown = value === null || value === undefined ? null : plain(value);
  return h("span", { class: "masked", dataset: { mask: mode } }, shown, badge);
}
