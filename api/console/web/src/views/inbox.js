// Inbox view: open alerts and proposed actions of the automations, their evidence (links into the graph explorer and
// the lineage view), and approve / reject buttons for those who may decide (the server checks again on every click).

import { decide, inbox, updateAlert } from "../decisions.js";
import { h, notice, replace } from "../dom.js";
import { classColour } from "../palette.js";

const REFRESH_MS = 2000;

function twinLink(uid) {
  return h("a", { href: `#/graph/${encodeURIComponent(uid)}`, class: "twin-link" }, uid);
}

function evidenceView(evidence) {
  const twins = (evidence && evidence.twins) || [];
  if (twins.length === 0) return h("p", { class: "muted" }, "No evidence recorded.");
  return h("ul", { class: "evidence" }, twins.map((twin) => {
    const masked = twin.masked || {};
    const lineage = new Map((twin.lineage || []).map((ref) => [ref.property, ref]));
    return h("li", { dataset: { uid: twin.uid, hops: String(twin.hops || 0) } },
      twin.hops ? h("span", { class: "muted" }, `${twin.hops} hop${twin.hops === 1 ? "" : "s"} · `) : null,
      h("span", { class: "class-chip", style: `--chip:${classColour(twin.className)}` }, twin.className), " ", twinLink(twin.uid),
      h("ul", { class: "evidence-values" }, Object.keys({ ...(twin.values || {}), ...masked }).sort().map((name) => {
        const value = name in masked ? h("span", { class: "mask-badge" }, masked[name]) : h("code", {}, JSON.stringify(twin.values[name]));
        const ref = lineage.get(name);
        return h("li", { dataset: { property: name } }, `${name} = `, value,
          " ", h("a", { class: "lineage-link", href: `#/lineage/${encodeURIComponent(twin.uid)}/${encodeURIComponent(name)}` },
            ref ? `from ${ref.sourceSystem} ${ref.sourceObject} ${ref.recordKey}` : "lineage"));
      })));
  }));
}

function alertCard(alert, act) {
  return h("article", { class: `card decision alert severity-${alert.severity}`, dataset: { alert: alert.id, state: alert.state } },
    h("div", { class: "row" },
      h("span", { class: `pill pill-${alert.severity === "critical" ? "deny" : "update"}` }, alert.severity),
      h("strong", {}, alert.message),
      h("span", { class: "spacer" }),
      h("span", { class: "pill alert-state" }, alert.state + (alert.snoozed ? " (snoozed)" : ""))),
    h("p", { class: "muted" }, `${alert.automation} · `, twinLink(alert.twin), ` · fired ${alert.fired}× · since ${alert.createdAt}`),
    evidenceView(alert.evidence),
    h("div", { class: "row" },
      alert.state === "open" ? h("button", { class: "secondary small alert-ack", onclick: () => act(() => updateAlert(alert.id, "acknowledge")) }, "Acknowledge") : null,
      h("button", { class: "secondary small alert-resolve", onclick: () => act(() => updateAlert(alert.id, "resolve")) }, "Resolve")));
}

function proposalCard(proposal, act) {
  const reason = h("input", { class: "decision-reason", placeholder: "reason", "aria-label": "Reason" });
  const params = Object.entries(proposal.parameters || {}).map(([k, v]) => h("li", {}, `${k} = `, h("code", {}, JSON.stringify(v))));
  return h("article", { class: `card decision proposal state-${proposal.state}`, dataset: { proposal: proposal.id, state: proposal.state } },
    h("div", { class: "row" },
      h("span", { class: "pill pill-update" }, proposal.actionType),
      h("strong", {}, proposal.reason),
      h("span", { class: "spacer" }),
      h("span", { class: "pill proposal-state" }, proposal.state)),
    h("p", { class: "muted" }, `${proposal.automation} · proposed by ${proposal.proposer} for `, twinLink(proposal.twin),
      ` · expires ${proposal.expiresAt}`),
    h("ul", { class: "parameters" }, params),
    proposal.approvedBy.length ? h("p", { class: "approved-by" }, `Approved by ${proposal.approvedBy.join(", ")}`) : null,
    proposal.result ? h("p", { class: "proposal-result" }, `Result: `, h("code", {}, proposal.result)) : null,
    evidenceView(proposal.evidence),
    proposal.mayApprove ? h("div", { class: "row" }, reason,
      h("button", { class: "small proposal-approve", onclick: () => act(() => decide(proposal.id, "approve", reason.value.trim())) }, "Approve"),
      h("button", { class: "secondary small proposal-reject", onclick: () => {
        if (!reason.value.trim()) { reason.focus(); reason.setAttribute("aria-invalid", "true"); return; }
        act(() => decide(proposal.id, "reject", reason.value.trim()));
      } }, "Reject")) : null);
}

/** Render the inbox into `root`. Returns a teardown function. */
export function inboxView(root) {
  const alerts = h("div", { id: "inbox-alerts" });
  const proposals = h("div", { id: "inbox-proposals" });
  const message = h("div", { class: "messages", id: "inbox-message" });
  let busy = false;

  replace(root, h("section", { class: "view single inbox-view" },
    h("h2", {}, "Inbox"),
    h("p", { class: "muted" }, "Alerts and proposed actions of the automations that your token may see; evidence values are masked by the access policy."),
    message,
    h("div", { class: "inbox-grid" },
      h("div", {}, h("h3", {}, "Proposed actions"), proposals),
      h("div", {}, h("h3", {}, "Alerts"), alerts))));

  async function act(run) {
    busy = true;
    try {
      await run();
      replace(message);
    } catch (error) {
      replace(message, notice("error", error.message));
    } finally {
      busy = false;
    }
    await load();
  }

  async function load() {
    if (busy) return;
    try {
      const found = await inbox();
      if (busy) return;
      replace(proposals, found.proposals.length ? found.proposals.map((p) => proposalCard(p, act)) : h("p", { class: "muted" }, "No proposed actions."));
      replace(alerts, found.alerts.length ? found.alerts.map((a) => alertCard(a, act)) : h("p", { class: "muted" }, "No open alerts."));
      root.querySelector(".inbox-view").dataset.loaded = "true";
    } catch (error) {
      replace(message, notice("error", error.message));
    }
  }

  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}
