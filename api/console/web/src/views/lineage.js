// Lineage view: from one property value back through the mapping to the source record and the sync run.

import { ApiError } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { valueView } from "../masking.js";
import { lineageOf } from "../provenance.js";

function step(kind, title, ...body) {
  return h("li", { class: `chain-step chain-${kind.replace(/ /g, "-")}` }, h("div", { class: "chain-kind" }, kind), h("div", { class: "chain-title" }, title), ...body);
}

function field(label, value) {
  return value === null || value === undefined || value === "" ? null : h("div", { class: "kv" }, h("span", { class: "muted" }, `${label} `), h("code", {}, String(value)));
}

function chain(record) {
  return h("ol", { class: "chain", dataset: { property: record.property, run: record.runId } },
    step("value", `${record.property}`,
      h("div", {}, record.erased ? h("span", { class: "mask-badge" }, "erased") : valueView(record.value, record.mode)),
      field("digest", record.valueDigest ? record.valueDigest.slice(0, 16) + "…" : "—"), field("recorded", record.recordedAt)),
    step("mapping", record.mappingRule || "(direct mapping)", field("transform", record.transform)),
    step("source field", `${record.sourceObject}.${record.sourceField || "?"}`, field("system", record.sourceSystem)),
    step("source record", record.recordKey, field("in", `${record.sourceSystem} / ${record.sourceObject}`)),
    step("sync run", record.runId));
}

/** Render the lineage view; params are [uid, property] from the route. Returns a teardown function. */
export function lineageView(root, params) {
  const uidInput = h("input", { name: "uid", required: true, placeholder: "twin uid", value: decodeURIComponent(params[0] || ""), "aria-label": "Twin uid" });
  const propInput = h("input", { name: "property", placeholder: "property (all when empty)", value: decodeURIComponent(params[1] || ""), "aria-label": "Property" });
  const results = h("div", { id: "lineage-results" });
  const form = h("form", { id: "lineage-form", class: "row", onsubmit: (e) => { e.preventDefault(); go(); } },
    uidInput, propInput, h("button", { type: "submit" }, "Show lineage"));

  replace(root, h("section", { class: "view single" },
    h("h2", {}, "Lineage"),
    h("p", { class: "muted" }, "Where a value came from: the mapping rule, the source field and record, and the sync run that wrote it."),
    form, results));

  function go() {
    const uid = uidInput.value.trim();
    const property = propInput.value.trim();
    location.hash = `#/lineage/${encodeURIComponent(uid)}${property ? `/${encodeURIComponent(property)}` : ""}`;
  }

  async function load(uid, property) {
    replace(results, h("p", { class: "muted" }, "Loading…"));
    try {
      const records = await lineageOf(uid, property);
      if (records.length === 0) {
        replace(results, notice("info", `No lineage recorded for ${uid}${property ? `.${property}` : ""}: it was not written by a connector sync.`));
        return;
      }
      replace(results,
        h("p", { id: "lineage-count" }, `${records.length} provenance record${records.length === 1 ? "" : "s"} for `,
          h("a", { href: `#/graph/${encodeURIComponent(uid)}` }, uid), property ? `.${property}` : ""),
        records.map(chain));
    } catch (error) {
      const hint = error instanceof ApiError && error.code === "FORBIDDEN" ? " (lineage needs the lineage.read permission)" : "";
      replace(results, notice("error", error.message + hint));
    }
  }

  if (params[0]) load(decodeURIComponent(params[0]), params[1] ? decodeURIComponent(params[1]) : null);
  return () => {};
}
