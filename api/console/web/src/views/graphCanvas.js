// The interactive graph of the explorer: Cytoscape.js nodes coloured by class, typed edges, filters, impact marks.

import cytoscape from "cytoscape";
import { classColour } from "../palette.js";

const STYLE = [
  {
    selector: "node",
    style: {
      "background-color": "data(colour)",
      label: "data(label)",
      "font-size": 10,
      color: "#1f2933",
      "text-valign": "bottom",
      "text-margin-y": 4,
      "text-wrap": "ellipsis",
      "text-max-width": 120,
      width: 22,
      height: 22,
    },
  },
  { selector: "node.expanded", style: { "border-width": 2, "border-color": "#1f2933" } },
  { selector: "node:selected", style: { "border-width": 4, "border-color": "#2563eb", width: 28, height: 28 } },
  {
    selector: "edge",
    style: {
      width: 1.5,
      "line-color": "#9aa5b1",
      "target-arrow-color": "#9aa5b1",
      "target-arrow-shape": "triangle",
      "curve-style": "bezier",
      label: "data(type)",
      "font-size": 8,
      color: "#52606d",
      "text-rotation": "autorotate",
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.8,
    },
  },
  { selector: "edge.impact-only", style: { "line-style": "dashed" } },
  { selector: "node.impacted", style: { "border-width": 4, "border-color": "#dc2626" } },
  { selector: "node.impact-source", style: { shape: "diamond", "border-width": 4, "border-color": "#7f1d1d" } },
  { selector: "edge.impacted", style: { "line-color": "#dc2626", "target-arrow-color": "#dc2626", width: 3 } },
  { selector: ".filtered", style: { display: "none" } },
];

const MAX_FIT_ZOOM = 1.3;

function edgeId(source, type, target) {
  return `${source}|${type}|${target}`;
}

/** The explorer's graph canvas inside `container`; `onSelect(uid)` is called when a node is tapped. */
export class GraphCanvas {
  constructor(container, { onSelect, onExpand }) {
    this.cy = cytoscape({ container, style: STYLE, wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
    this.hiddenTypes = new Set();
    this.cy.on("tap", "node", (event) => onSelect(event.target.id()));
    this.cy.on("dbltap", "node", (event) => onExpand(event.target.id()));
  }

  /** Add (or relabel) a twin node; returns true when it was new. */
  addTwin(twin) {
    const existing = this.cy.getElementById(twin.uid);
    const label = twin.name || twin.uid;
    if (existing.nonempty()) {
      existing.data("label", label);
      return false;
    }
    this.cy.add({ group: "nodes", data: { id: twin.uid, label, className: twin.className, colour: classColour(twin.className) } });
    return true;
  }

  /** Add a directed relationship unless it is already there. */
  addLink(source, type, target, classes = "") {
    const id = edgeId(source, type, target);
    if (this.cy.getElementById(id).nonempty()) return this.cy.getElementById(id);
    return this.cy.add({ group: "edges", data: { id, source, target, type }, classes });
  }

  /** Add a loaded twin's neighbourhood (its links as canonical source->target edges); marks it expanded. */
  addNeighbourhood(twin) {
    this.addTwin(twin);
    for (const link of twin.links) {
      for (const node of link.nodes) {
        this.addTwin(node);
        if (link.direction === "out") this.addLink(twin.uid, link.relType, node.uid);
        else this.addLink(node.uid, link.relType, twin.uid);
      }
    }
    this.cy.getElementById(twin.uid).addClass("expanded");
    this.applyFilter();
  }

  /** Lay the graph out again and fit it into view. */
  layout() {
    const layout = this.cy.layout({
      name: "cose", animate: false, randomize: false, nodeRepulsion: () => 12000, idealEdgeLength: () => 80, padding: 40,
    });
    layout.one("layoutstop", () => {
      if (this.cy.zoom() > MAX_FIT_ZOOM) {
        this.cy.zoom(MAX_FIT_ZOOM);
        this.cy.center();
      }
    });
    layout.run();
  }

  /** Select one node. */
  select(uid) {
    this.cy.nodes().unselect();
    this.cy.getElementById(uid).select();
  }

  /** Relationship types on the canvas, with how many edges each. */
  relationshipTypes() {
    const counts = new Map();
    this.cy.edges().forEach((edge) => counts.set(edge.data("type"), (counts.get(edge.data("type")) || 0) + 1));
    return [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  }

  /** Classes on the canvas, with how many twins each. */
  classes() {
    const counts = new Map();
    this.cy.nodes().forEach((node) => counts.set(node.data("className"), (counts.get(node.data("className")) || 0) + 1));
    return [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  }

  /** Show or hide the edges of one relationship type; twins left without a visible edge are hidden too. */
  setTypeVisible(type, visible) {
    if (visible) this.hiddenTypes.delete(type);
    else this.hiddenTypes.add(type);
    this.applyFilter();
  }

  applyFilter() {
    this.cy.batch(() => {
      this.cy.edges().forEach((edge) => edge.toggleClass("filtered", this.hiddenTypes.has(edge.data("type"))));
      this.cy.nodes().forEach((node) => {
        const anchored = node.hasClass("expanded") || node.selected() || node.hasClass("impact-source");
        const visibleEdges = node.connectedEdges().filter((edge) => !edge.hasClass("filtered"));
        node.toggleClass("filtered", !anchored && node.connectedEdges().nonempty() && visibleEdges.empty());
      });
    });
  }

  /** Mark what fails with `sourceUid`: impacted twins and the edges along each hit's chain. */
  showImpact(sourceUid, hits) {
    this.clearImpact();
    this.cy.getElementById(sourceUid).addClass("impact-source");
    for (const hit of hits) {
      this.addTwin(hit.twin);
      this.cy.getElementById(hit.twin.uid).addClass("impacted");
    }
    for (const hit of hits) {
      for (let i = 0; i + 1 < hit.path.length; i += 1) {
        const [a, b, type] = [hit.path[i], hit.path[i + 1], hit.via[i]];
        if (this.cy.getElementById(a).empty() || this.cy.getElementById(b).empty()) continue;
        const known = this.cy.edges().filter((e) => (e.source().id() === a && e.target().id() === b) || (e.source().id() === b && e.target().id() === a));
        const marked = known.nonempty() ? known : this.addLink(a, type, b, "impact-only");
        marked.addClass("impacted");
      }
    }
    this.applyFilter();
  }

  clearImpact() {
    this.cy.elements(".impacted, .impact-source").removeClass("impacted impact-source");
    this.cy.edges(".impact-only").remove();
  }

  /** How many twins and relationships are visible. */
  counts() {
    return {
      twins: this.cy.nodes().not(".filtered").length,
      links: this.cy.edges().not(".filtered").length,
    };
  }

  destroy() {
    this.cy.destroy();
  }
}
