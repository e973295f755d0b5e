// Small hand-written SVG charts: a time-series of used against total, and a sparkline.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function path(xs, ys, x, y) {
  let d = "";
  for (let i = 0; i < xs.length; i++) d += (i ? "L" : "M") + x(xs[i]).toFixed(1) + "," + y(ys[i]).toFixed(1);
  return d;
}

// Used (filled) and total (dashed) over `times` (seconds); `fmt` labels the top of the scale.
export function usageChart(times, used, total, fmt, width = 260, height = 90) {
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", height, role: "img" });
  const top = 12, bottom = height - 12;
  const max = Math.max(1e-9, ...total, ...used);
  if (times.length < 2) {
    const t = el("text", { x: 4, y: height / 2, class: "axis" });
    t.textContent = "collecting samples…";
    svg.append(t);
    return svg;
  }
  const t0 = times[0], t1 = times[times.length - 1];
  const x = (t) => ((t - t0) / Math.max(1e-9, t1 - t0)) * (width - 2) + 1;
  const y = (v) => bottom - (v / max) * (bottom - top);
  const line = path(times, used, x, y);
  svg.append(el("path", { d: `${line}L${x(t1).toFixed(1)},${bottom}L${x(t0).toFixed(1)},${bottom}Z`, class: "used" }));
  svg.append(el("path", { d: path(times, total, x, y), class: "total" }));
  const label = el("text", { x: 2, y: 9, class: "axis" });
  label.textContent = fmt(max);
  const span = el("text", { x: 2, y: height - 2, class: "axis" });
  span.textContent = `last ${Math.round((t1 - t0) / 60 * 10) / 10} min`;
  svg.append(label, span);
  return svg;
}

// A tiny line of `values` scaled to `max` (a node's CPU use, say).
export function sparkline(values, max, width = 120, height = 22) {
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height });
  if (values.length < 2 || max <= 0) return svg;
  const x = (i) => (i / (values.length - 1)) * (width - 2) + 1;
  const y = (v) => height - 2 - (v / max) * (height - 4);
  const idx = values.map((_, i) => i);
  const line = path(idx, values, x, y);
  svg.append(el("path", { d: `${line}L${x(values.length - 1)},${height}L1,${height}Z`, class: "used" }));
  return svg;
}
