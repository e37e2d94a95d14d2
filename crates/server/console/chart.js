// A line chart drawn as SVG from the accounts' history: balances over time, one line per
// account. No library, no inline style (the page's policy forbids it): classes from style.css.

import { h, when } from "./format.js";

const WIDTH = 720;
const HEIGHT = 260;
const MARGIN = { left: 132, right: 16, top: 16, bottom: 40 };
// Most lines drawn in one chart (the palette has this many).
export const SERIES_MAX = 4;

// series: [{ label, points: [{ at, value }] }] with `at` in epoch ms and `value` a number of
// minor units; describe(value) turns a value into text for the axis and the accessible table.
export function lineChart(title, series, describe) {
  const drawn = series.filter((line) => line.points.length > 0).slice(0, SERIES_MAX);
  const all = drawn.flatMap((line) => line.points);
  const figure = h("figure", {});
  if (all.length === 0) {
    figure.append(h("figcaption", {}, `${title}: no movements yet.`));
    return figure;
  }
  let [tMin, tMax] = [Math.min(...all.map((p) => p.at)), Math.max(...all.map((p) => p.at))];
  let [vMin, vMax] = [Math.min(0, ...all.map((p) => p.value)), Math.max(0, ...all.map((p) => p.value))];
  if (tMax === tMin) tMax = tMin + 1;
  if (vMax === vMin) vMax = vMin + 1;
  const x = (t) => MARGIN.left + ((t - tMin) / (tMax - tMin)) * (WIDTH - MARGIN.left - MARGIN.right);
  const y = (v) => HEIGHT - MARGIN.bottom - ((v - vMin) / (vMax - vMin)) * (HEIGHT - MARGIN.top - MARGIN.bottom);
  const svg = h("svg:svg", {
    class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
    "aria-label": `${title}, ${when(tMin)} to ${when(tMax)}`,
  });
  svg.append(h("svg:title", {}, title));
  for (const v of [vMin, 0, vMax]) {
    svg.append(h("svg:line", { class: v === 0 ? "axis" : "grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(v), y2: y(v) }));
    svg.append(h("svg:text", { x: MARGIN.left - 6, y: y(v) + 4, "text-anchor": "end" }, describe(v)));
  }
  svg.append(h("svg:line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }));
  svg.append(h("svg:text", { x: MARGIN.left, y: HEIGHT - 12 }, when(tMin)));
  svg.append(h("svg:text", { x: WIDTH - MARGIN.right, y: HEIGHT - 12, "text-anchor": "end" }, when(tMax)));
  drawn.forEach((line, index) => {
    // A balance holds until the next movement: steps, not slopes.
    const sorted = [...line.points].sort((a, b) => a.at - b.at);
    const path = [];
    sorted.forEach((point, i) => {
      if (i > 0) path.push(`${x(point.at)},${y(sorted[i - 1].value)}`);
      path.push(`${x(point.at)},${y(point.value)}`);
    });
    path.push(`${x(tMax)},${y(sorted[sorted.length - 1].value)}`);
    svg.append(h("svg:polyline", { class: `series-${index}`, points: path.join(" ") }));
  });
  figure.append(svg);
  figure.append(h("figcaption", {}, title,
    h("ul", { class: "legend" }, drawn.map((line, index) =>
      h("li", {}, h("span", { class: `swatch series-${index}`, "aria-hidden": "true" }), line.label)))));
  return figure;
}
