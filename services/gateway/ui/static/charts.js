// Small SVG charts: a line over time and horizontal bars. No library: each is a few paths.
const NS = "http://www.w3.org/2000/svg";

function svg(width, height, label) {
  const el = document.createElementNS(NS, "svg");
  el.setAttribute("viewBox", `0 0 ${width} ${height}`);
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", label);
  return el;
}

function node(name, attrs, text) {
  const el = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export function fmt(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits });
}

// A line of `values` (numbers, oldest first); `axes` adds the max and the first/last labels.
export function line(values, { label, width = 320, height = 90, labels = null, color = "#1f5fbf" } = {}) {
  const pad = labels ? 18 : 2;
  const el = svg(width, height, label);
  const max = Math.max(1e-9, ...values);
  const n = values.length;
  const x = (i) => (n <= 1 ? width / 2 : (i * (width - 4)) / (n - 1) + 2);
  const y = (v) => height - pad - (v / max) * (height - pad - 6);
  if (n > 0) {
    const d = values.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join("");
    el.append(node("path", { d: `${d}L${x(n - 1)},${height - pad}L${x(0)},${height - pad}Z`,
      fill: color, "fill-opacity": "0.12", stroke: "none" }));
    el.append(node("path", { d, fill: "none", stroke: color, "stroke-width": "1.5" }));
  }
  if (labels) {
    el.append(node("text", { x: 2, y: 11, "font-size": 11, fill: "#5f6368" }, `max ${fmt(max, 1)}`));
    if (labels.length) {
      el.append(node("text", { x: 2, y: height - 4, "font-size": 11, fill: "#5f6368" }, labels[0]));
      el.append(node("text", { x: width - 2, y: height - 4, "font-size": 11, fill: "#5f6368",
        "text-anchor": "end" }, labels[labels.length - 1]));
    }
  }
  return el;
}

// Horizontal bars: rows of [name, value], the value printed after each bar.
export function bars(rows, { label, width = 320, digits = 2, unit = "" } = {}) {
  const rowH = 22;
  const height = Math.max(rowH, rows.length * rowH);
  const el = svg(width, height, label);
  const max = Math.max(1e-9, ...rows.map((r) => r[1]));
  const nameW = 110;
  const valueW = 70;
  rows.forEach(([name, value], i) => {
    const y = i * rowH;
    const w = Math.max(1, ((width - nameW - valueW) * value) / max);
    el.append(node("text", { x: 0, y: y + 15, "font-size": 12, fill: "#1d1d1b" }, String(name).slice(0, 16)));
    el.append(node("rect", { x: nameW, y: y + 4, width: w.toFixed(1), height: 14, rx: 3, fill: "#1f5fbf" }));
    el.append(node("text", { x: nameW + w + 4, y: y + 15, "font-size": 12, fill: "#5f6368" },
      `${unit}${fmt(value, digits)}`));
  });
  return el;
}

export function figure(caption, chart) {
  const fig = document.createElement("figure");
  fig.className = "chart";
  fig.style.margin = "0";
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(cap, chart);
  return fig;
}
