// Charts drawn as plain SVG: grouped bars over categories, and lines over dates. Every bar and point carries a
// <title> with its numbers (shown on hover, read by screen readers); colours and dashes come from CSS classes
// (series-N, stat-NAME), so the page's stylesheet is the only place that styles them.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 960;
const MARGIN = { top: 12, right: 16, bottom: 78, left: 80 };
const MAX_X_LABELS = 24;

function node(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== null) element.textContent = text;
  return element;
}

function titled(element, text) {
  element.append(node("title", {}, text));
  return element;
}

/** Round tick values from 0 to at least `max`: steps of 1, 2 or 5 times a power of ten. */
export function ticks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const rough = max / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const values = [];
  for (let v = 0; v < max + step; v += step) values.push(Number(v.toPrecision(12)));
  return values;
}

/** The frame shared by both charts: an SVG with a y axis of gridlines and labels, and x labels thinned out. */
function frame({ height, yMax, format, xLabels, xTitle, yTitle, label }) {
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": label });
  const plot = { x: MARGIN.left, y: MARGIN.top, w: WIDTH - MARGIN.left - MARGIN.right, h: height - MARGIN.top - MARGIN.bottom };
  const values = ticks(yMax);
  const top = values.at(-1);
  const y = (v) => plot.y + plot.h - (v / top) * plot.h;
  const axis = node("g", { class: "axis" });
  for (const v of values) {
    axis.append(node("line", { x1: plot.x, x2: plot.x + plot.w, y1: y(v), y2: y(v), class: "grid" }));
    axis.append(node("text", { x: plot.x - 8, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const band = plot.w / xLabels.length;
  const every = Math.ceil(xLabels.length / MAX_X_LABELS);
  xLabels.forEach((text, i) => {
    if (i % every) return;
    const x = plot.x + (i + 0.5) * band;
    const at = plot.y + plot.h + 14;
    axis.append(node("text", { x, y: at, transform: `rotate(-40 ${x} ${at})`, "text-anchor": "end" }, text));
  });
  axis.append(node("text", { x: plot.x + plot.w / 2, y: height - 4, "text-anchor": "middle", class: "title" }, xTitle));
  const middle = plot.y + plot.h / 2;
  axis.append(node("text", { x: 16, y: middle, transform: `rotate(-90 16 ${middle})`, "text-anchor": "middle", class: "title" }, yTitle));
  axis.append(node("line", { x1: plot.x, x2: plot.x + plot.w, y1: y(0), y2: y(0), class: "baseline" }));
  svg.append(axis);
  return { svg, plot, y, band };
}

/** Bars per category, one per series side by side. `series`: [{name, values}]. */
export function barChart({ categories, series, format, xTitle, yTitle, label, height = 380 }) {
  const yMax = Math.max(0, ...series.flatMap((s) => s.values));
  const { svg, plot, y, band } = frame({ height, yMax, format, xLabels: categories, xTitle, yTitle, label });
  const width = (band * 0.84) / series.length;
  series.forEach((s, n) => {
    const group = node("g", { class: `bars series-${n % 6}` });
    s.values.forEach((value, i) => {
      const x = plot.x + i * band + band * 0.08 + n * width;
      const bar = node("rect", { x, y: y(value), width: Math.max(width - 1, 0.5), height: y(0) - y(value) });
      group.append(titled(bar, `${s.name}, bucket ${categories[i]}: ${format(value)}`));
    });
    svg.append(group);
  });
  return svg;
}

/** Lines over dates, with a point per value (null: no point, and the line breaks).
 * `lines`: [{name, values, series, stat}] where series picks the colour and stat the dash. */
export function lineChart({ dates, lines, format, xTitle, yTitle, label, height = 340 }) {
  const yMax = Math.max(0, ...lines.flatMap((l) => l.values.filter((v) => v !== null)));
  const { svg, plot, y, band } = frame({ height, yMax, format, xLabels: dates, xTitle, yTitle, label });
  for (const line of lines) {
    const group = node("g", { class: `line series-${line.series % 6} stat-${line.stat}` });
    let path = "";
    let drawing = false;
    line.values.forEach((value, i) => {
      if (value === null) {
        drawing = false;
        return;
      }
      const x = plot.x + (i + 0.5) * band;
      path += `${drawing ? "L" : "M"}${x.toFixed(1)},${y(value).toFixed(1)}`;
      drawing = true;
      group.append(titled(node("circle", { cx: x, cy: y(value), r: 4 }), `${line.name}, ${dates[i]}: ${format(value)}`));
    });
    group.prepend(node("path", { d: path }));
    svg.append(group);
  }
  return svg;
}
