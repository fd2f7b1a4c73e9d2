// Audit view: the tamper-evident audit log with filters and paging, and the result of verifying its hash chain.

import { h, notice, replace } from "../dom.js";
import { auditPage, verifyAuditChain } from "../provenance.js";

const PAGE = 50;

function verificationView(result) {
  const ok = result.ok === true;
  const facts = Object.entries(result).filter(([key]) => key !== "ok" && key !== "message");
  return h("div", { id: "audit-verification", class: `notice notice-${ok ? "ok" : "error"}`, dataset: { ok: String(ok) } },
    h("strong", {}, ok ? "Chain verified" : "Tampering detected"), ": ", result.message || "",
    h("dl", { class: "facts" }, facts.map(([key, value]) => [h("dt", {}, key), h("dd", {}, value === null ? "–" : String(value))])));
}

/** Render the audit view into `root`. Returns a teardown function. */
export function auditView(root) {
  let offset = 0;
  const subject = h("input", { name: "subject", placeholder: "subject", "aria-label": "Subject" });
  const operation = h("input", { name: "operation", placeholder: "operation (exact)", "aria-label": "Operation" });
  const decision = h("select", { name: "decision", "aria-label": "Decision" },
    h("option", { value: "" }, "any decision"), h("option", { value: "allow" }, "allow"), h("option", { value: "deny" }, "deny"));
  const table = h("tbody", {});
  const pager = h("div", { class: "row pager" });
  const message = h("div", { class: "messages" });
  const verification = h("div", {});
  const verifyButton = h("button", { id: "audit-verify", onclick: () => verify() }, "Verify chain");
  const form = h("form", { id: "audit-filters", class: "row", onsubmit: (e) => { e.preventDefault(); offset = 0; load(); } },
    subject, operation, decision, h("button", { type: "submit" }, "Filter"), h("span", { class: "spacer" }), verifyButton);

  replace(root, h("section", { class: "view single" },
    h("h2", {}, "Audit log"),
    h("p", { class: "muted" }, "Every API operation, newest first. Each record is chained to the previous one by its hash."),
    form, verification, message,
    h("div", { class: "table-scroll" }, h("table", { class: "grid", id: "audit-table" },
      h("thead", {}, h("tr", {}, ["seq", "time", "subject", "roles", "operation", "decision", "rows", "hash"].map((c) => h("th", {}, c)))),
      table)),
    pager));

  async function load() {
    replace(message);
    try {
      const filters = { subject: subject.value.trim(), operation: operation.value.trim(), decision: decision.value };
      const rows = await auditPage({ ...filters, first: PAGE, offset });
      Object.assign(table.dataset, filters, { offset: String(offset) });
      replace(table, rows.map((r) => h("tr", { class: `decision-${r.decision}` },
        h("td", {}, r.seq), h("td", {}, r.time), h("td", {}, r.subject), h("td", {}, r.roles.join(", ")),
        h("td", { class: "wrap", title: r.detail }, r.operation), h("td", {}, h("span", { class: `pill pill-${r.decision}` }, r.decision)),
        h("td", {}, r.rowsReturned ?? "–"), h("td", {}, h("code", { title: r.hash }, r.hash.slice(0, 12))))));
      if (rows.length === 0) replace(table, h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No audit records match.")));
      replace(pager,
        h("button", { class: "secondary", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "Newer"),
        h("span", { class: "muted" }, `records ${offset + 1}–${offset + rows.length}`),
        h("button", { class: "secondary", disabled: rows.length < PAGE, onclick: () => { offset += PAGE; load(); } }, "Older"));
    } catch (error) {
      replace(table);
      replace(message, notice("error", error.code === "FORBIDDEN" ? `${error.message} (the audit log is for compliance and admin)` : error.message));
    }
  }

  async function verify() {
    verifyButton.disabled = true;
    replace(verification, h("p", { class: "muted" }, "Verifying…"));
    try {
      replace(verification, verificationView(await verifyAuditChain()));
    } catch (error) {
      replace(verification, notice("error", error.message));
    } finally {
      verifyButton.disabled = false;
    }
  }

  load();
  return () => {};
}
