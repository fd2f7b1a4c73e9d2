// Class colours: each ontology class gets a stable colour so the same class looks the same in every view.

const COLOURS = [
  "#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2",
  "#65a30d", "#dc2626", "#4f46e5", "#ca8a04", "#0d9488", "#9333ea",
];

/** The colour of a class name (a hash of the name into a fixed palette). */
export function classColour(className) {
  let hash = 0;
  for (const ch of className || "") hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return COLOURS[hash % COLOURS.length];
}

/** A series colour with transparency, for confidence bands. */
export function translucent(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/** The n-th series colour of a chart. */
export function seriesColour(index) {
  return COLOURS[index % COLOURS.length];
}
