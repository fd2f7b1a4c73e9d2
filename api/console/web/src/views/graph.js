// Graph explorer: search a twin, see its properties and neighbourhood, expand, filter, run an impact analysis.

import { h, notice, replace } from "../dom.js";
import { valueView } from "../masking.js";
import { classColour } from "../palette.js";
import { impactOf, loadTwin, searchTwins } from "../twins.js";
import { GraphCanvas } from "./graphCanvas.js";

function twinLabel(twin) {
  return twin.name || twin.uid;
}

function classChip(className) {
  return h("span", { class: "class-chip", style: `--chip:${classColour(className)}` }, className);
}

/** Render the explorer into `root`; `params[0]` is a twin uid to open. Returns a function that tears it down. */
export function graphView(root, params) {
  const loaded = new Map();
  let selected = null;

  const hits = h("ul", { class: "hit-list", id: "search-hits" });
  const searchInput = h("input", { name: "q", type: "search", placeholder: "Search twins by name…", "aria-label": "Search twins", required: true });
  const searchForm = h("form", { id: "graph-search", class: "row", onsubmit: (e) => { e.preventDefault(); runSearch(); } },
    searchInput, h("button", { type: "submit" }, "Search"));
  const relFilter = h("div", { id: "rel-filter", class: "checks" });
  const legend = h("ul", { id: "class-legend", class: "legend" });
  const impactList = h("div", { id: "impact-results" });
  const status = h("span", { id: "graph-status", class: "muted" }, "Search for a twin to start.");
  const depth = h("input", { id: "impact-depth", type: "number", min: 1, max: 6, value: 3, "aria-label": "Impact depth" });
  const impactButton = h("button", { id: "impact-run", class: "small", disabled: true, onclick: () => runImpact() }, "Impact analysis");
  const clearButton = h("button", { class: "secondary small", onclick: () => { canvas.clearImpact(); replace(impactList); refresh(); } }, "Clear impact");
  const fitButton = h("button", { class: "secondary small", onclick: () => canvas.layout() }, "Re-layout");
  const message = h("div", { class: "messages" });
  const details = h("aside", { class: "panel details", id: "twin-details" }, h("p", { class: "muted" }, "Select a twin to see its properties."));
  const cyBox = h("div", { id: "cy", class: "cy" });

  replace(root, h("section", { class: "view graph-view" },
    h("aside", { class: "panel" },
      h("h2", {}, "Graph explorer"), searchForm, hits,
      h("h3", {}, "Relationship types"), relFilter,
      h("h3", {}, "Classes"), legend,
      impactList),
    h("div", { class: "canvas-wrap" },
      h("div", { class: "toolbar" }, status, h("span", { class: "spacer" }),
        h("label", { class: "inline" }, "Depth ", depth), impactButton, clearButton, fitButton),
      message, cyBox),
    details));

  const canvas = new GraphCanvas(cyBox, { onSelect: (uid) => selectTwin(uid), onExpand: (uid) => expand(uid) });

  function fail(error) {
    replace(message, notice("error", error.message));
  }

  function refresh() {
    const { twins, links } = canvas.counts();
    status.textContent = `${twins} twins · ${links} relationships`;
    status.dataset.twins = String(twins);
    status.dataset.links = String(links);
    replace(relFilter, canvas.relationshipTypes().map(([type, count]) => h("label", { class: "check" },
      h("input", { type: "checkbox", checked: !canvas.hiddenTypes.has(type), dataset: { relType: type },
        onchange: (e) => { canvas.setTypeVisible(type, e.target.checked); refresh(); } }),
      ` ${type} `, h("span", { class: "muted" }, `(${count})`))));
    replace(legend, canvas.classes().map(([cls, count]) => h("li", {}, classChip(cls), h("span", { class: "muted" }, ` ${count}`))));
  }

  async function twin(uid) {
    if (!loaded.has(uid)) loaded.set(uid, await loadTwin(uid));
    return loaded.get(uid);
  }

  async function runSearch() {
    replace(message);
    replace(hits, h("li", { class: "muted" }, "Searching…"));
    try {
      const found = await searchTwins(searchInput.value.trim());
      replace(hits, found.length === 0 ? h("li", { class: "muted" }, "No twin matches.") : found.map(({ twin: t }) =>
        h("li", {}, h("button", { class: "link search-hit", dataset: { uid: t.uid }, onclick: () => open(t.uid) },
          twinLabel(t)), " ", classChip(t.className))));
    } catch (error) {
      replace(hits);
      fail(error);
    }
  }

  async function open(uid) {
    await expand(uid);
    await selectTwin(uid);
  }

  async function expand(uid) {
    replace(message);
    try {
      const t = await twin(uid);
      canvas.addNeighbourhood(t);
      canvas.layout();
      refresh();
    } catch (error) {
      fail(error);
    }
  }

  async function selectTwin(uid) {
    replace(message);
    try {
      const t = await twin(uid);
      selected = t;
      canvas.addTwin(t);
      canvas.select(uid);
      impactButton.disabled = false;
      renderDetails(t);
      refresh();
    } catch (error) {
      fail(error);
    }
  }

  async function runImpact() {
    if (!selected) return;
    replace(message);
    replace(impactList, h("p", { class: "muted" }, "Running impact analysis…"));
    try {
      const found = (await impactOf(selected.uid, Number(depth.value) || 3)).sort((a, b) => a.depth - b.depth);
      canvas.showImpact(selected.uid, found);
      canvas.layout();
      refresh();
      replace(impactList, h("h3", {}, `Impact of ${twinLabel(selected)}`),
        h("p", { id: "impact-count" }, `${found.length} twin${found.length === 1 ? "" : "s"} affected`),
        h("ol", { class: "impact-list" }, found.map((hit) => h("li", {},
          h("button", { class: "link", onclick: () => selectTwin(hit.twin.uid) }, twinLabel(hit.twin)),
          " ", classChip(hit.twin.className), h("span", { class: "muted" }, ` depth ${hit.depth} via ${hit.via.join(" → ")}`)))));
    } catch (error) {
      replace(impactList);
      fail(error);
    }
  }

  function renderDetails(t) {
    const rows = t.properties.map((p) => h("tr", { dataset: { field: p.name, mask: p.mode || "" } },
      h("th", { scope: "row", title: p.description }, p.name),
      h("td", {}, valueView(p.value, p.mode)),
      h("td", {}, h("a", { class: "lineage-link", href: `#/lineage/${encodeURIComponent(t.uid)}/${encodeURIComponent(p.name)}`, title: `Where ${p.name} came from` }, "lineage"))));
    const links = t.links.map((link) => h("li", {},
      h("div", { class: "rel-head" }, link.direction === "out" ? `${link.relType} →` : `← ${link.relType}`,
        h("span", { class: "muted" }, ` ${link.totalCount}${link.totalCount > link.nodes.length ? ` (first ${link.nodes.length})` : ""}`)),
      h("ul", {}, link.nodes.map((n) => h("li", {},
        h("button", { class: "link", onclick: () => selectTwin(n.uid) }, twinLabel(n)), " ", classChip(n.className), " ",
        h("button", { class: "small neighbour-expand", dataset: { uid: n.uid }, onclick: () => expand(n.uid) }, "expand"))))));
    replace(details,
      h("h2", {}, twinLabel(t)),
      h("p", {}, classChip(t.className), " ", h("code", { class: "uid" }, t.uid)),
      h("div", { class: "row" },
        h("button", { class: "small", onclick: () => expand(t.uid) }, "Expand neighbourhood"),
        h("a", { class: "small button", href: `#/lineage/${encodeURIComponent(t.uid)}` }, "Lineage")),
      h("h3", {}, "Properties"),
      h("table", { class: "props" }, h("tbody", {}, rows)),
      h("h3", {}, "Neighbours"),
      links.length ? h("ul", { class: "neighbours" }, links) : h("p", { class: "muted" }, "No relationships visible to you."));
  }

  if (params[0]) open(decodeURIComponent(params[0]));
  return () => canvas.destroy();
}
