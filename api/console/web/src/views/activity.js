// Activity view: the enterprise moving — a live feed of the twin's changes and the connectors' status with lag.

import { h, notice, replace } from "../dom.js";
import { connectorStatus, followChanges } from "../live.js";
import { classColour } from "../palette.js";

const KEEP = 100;
const STATUS_EVERY_MS = 2000;

function label(change) {
  if (change.kind === "link") return `${change.linkType} → ${change.target}`;
  const after = change.after || {};
  return after.name || after.title || after.number || "";
}

function changeRow(change) {
  return h("li", { class: `change op-${change.op}`, dataset: { uid: change.uid, seq: String(change.seq), op: change.op } },
    h("span", { class: `pill pill-${change.op}` }, change.op),
    " ", h("span", { class: "class-chip", style: `--chip:${classColour(change.className || change.kind)}` }, change.className || change.kind),
    " ", h("strong", {}, label(change)),
    " ", h("code", { class: "uid" }, change.uid),
    h("span", { class: "muted when" }, new Date().toLocaleTimeString("en-GB")));
}

function lag(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 120 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds / 60)} min`;
}

/** Render the activity view into `root`. Returns a teardown function. */
export function activityView(root) {
  const feed = h("ol", { id: "activity-feed", class: "activity-feed" });
  const state = h("span", { id: "activity-state", class: "pill" }, "connecting…");
  const connectors = h("tbody", {});
  const message = h("div", { class: "messages" });
  let seen = 0;

  replace(root, h("section", { class: "view single activity-view" },
    h("div", { class: "activity-grid" },
      h("div", {},
        h("div", { class: "row" }, h("h2", {}, "Live activity"), state),
        h("p", { class: "muted" }, "Changes to the twin as they are committed (the ones your token may see), newest first."),
        feed,
        h("p", { id: "activity-empty", class: "muted" }, "Waiting for the next change…")),
      h("div", {},
        h("h2", {}, "Connectors"),
        h("p", { class: "muted" }, "Syncs the server runs by itself; lag is how far the twin may be behind the source."),
        message,
        h("table", { class: "grid", id: "connector-status" },
          h("thead", {}, h("tr", {}, ["connector", "schedule", "runs", "failures", "lag", "last error"].map((c) => h("th", {}, c)))),
          connectors)))));

  const stop = followChanges((change) => {
    seen += 1;
    document.getElementById("activity-empty")?.remove();
    feed.prepend(changeRow(change));
    while (feed.children.length > KEEP) feed.lastChild.remove();
    feed.dataset.count = String(seen);
  }, (text, kind) => {
    state.textContent = text;
    state.className = `pill pill-${kind === "ok" ? "allow" : "deny"}`;
  });

  async function refresh() {
    try {
      const status = await connectorStatus();
      const names = Object.keys(status).sort();
      replace(message, names.length ? null : notice("info", "This server runs no scheduled syncs (TWIN_RUNTIME_ENABLED=false or none scheduled)."));
      replace(connectors, names.map((name) => {
        const s = status[name];
        return h("tr", { dataset: { connector: name, runs: String(s.runs) } },
          h("td", {}, name, s.running ? h("span", { class: "muted" }, " (running)") : null), h("td", {}, s.schedule),
          h("td", { class: "num" }, s.runs), h("td", { class: "num" }, s.failures), h("td", { class: "num" }, lag(s.lagSeconds)),
          h("td", { class: "wrap" }, s.lastError || ""));
      }));
    } catch (error) {
      replace(message, notice("error", `Connector status unavailable: ${error.message}`));
    }
  }

  refresh();
  const timer = setInterval(refresh, STATUS_EVERY_MS);
  return () => {
    clearInterval(timer);
    stop();
  };
}
