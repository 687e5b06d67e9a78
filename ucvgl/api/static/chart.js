// Small SVG line charts (no library): one polyline per contiguous run of values per series.

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 420;
const HEIGHT = 240;
const MARGIN = { left: 50, right: 14, top: 12, bottom: 40 };

function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    el.setAttribute(name, String(value));
  }
  if (text !== null) {
    el.textContent = text;
  }
  return el;
}

/** A "nice" tick step (1, 2 or 5 times a power of ten) for about `count` ticks up to `max`. */
export function niceStep(max, count = 4) {
  if (!(max > 0)) {
    return 1;
  }
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) {
    if (raw <= factor * power) {
      return factor * power;
    }
  }
  return 10 * power;
}

function decimalsOf(step) {
  return step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** Runs of consecutive indices whose values are numbers: [[i, v], ...] per run. */
export function segments(values) {
  const runs = [];
  let current = [];
  values.forEach((value, i) => {
    if (isNumber(value)) {
      current.push([i, value]);
    } else if (current.length) {
      runs.push(current);
      current = [];
    }
  });
  if (current.length) {
    runs.push(current);
  }
  return runs;
}

/**
 * Draw a line chart into `container` (replacing what was there).
 * @param {HTMLElement} container
 * @param {{xLabels: string[], series: {key: string, name: string, values: (number|null)[]}[],
 *          yMax?: number, label: string, xTitle?: string, emptyText?: string}} spec
 *   yMax: a fixed top of the y axis (e.g. 100 for percentages); default from the data.
 */
export function lineChart(container, spec) {
  const { xLabels, series, label, xTitle = "round", emptyText = "no data" } = spec;
  container.replaceChildren();
  const all = series.flatMap((s) => s.values.filter(isNumber));
  if (!xLabels.length || !all.length) {
    const empty = document.createElement("p");
    empty.className = "muted chart-empty";
    empty.textContent = emptyText;
    container.append(empty);
    return;
  }
  const dataMax = Math.max(...all, 0);
  const step = niceStep(spec.yMax ?? dataMax);
  const yMax = spec.yMax ?? Math.max(step, Math.ceil(dataMax / step - 1e-9) * step);
  const decimals = decimalsOf(step);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const n = xLabels.length;
  const x = (i) => MARGIN.left + (n === 1 ? plotW / 2 : (i * plotW) / (n - 1));
  const y = (v) => MARGIN.top + plotH - (Math.min(v, yMax) / yMax) * plotH;

  const root = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "line-chart",
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "xMidYMid meet",
  });
  root.append(svg("title", {}, label));

  const grid = svg("g", { class: "axis y-axis" });
  for (let tick = 0; tick <= yMax + step / 2; tick += step) {
    const ty = y(tick);
    grid.append(svg("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: ty, y2: ty }));
    grid.append(
      svg("text", { x: MARGIN.left - 6, y: ty + 4, "text-anchor": "end" }, tick.toFixed(decimals)),
    );
  }
  root.append(grid);

  const xAxis = svg("g", { class: "axis x-axis" });
  const every = Math.max(1, Math.ceil(n / 12));
  xLabels.forEach((text, i) => {
    if (i % every === 0 || i === n - 1) {
      xAxis.append(svg("text", { x: x(i), y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle" }, text));
    }
  });
  xAxis.append(
    svg("text", { x: MARGIN.left + plotW / 2, y: HEIGHT - 6, "text-anchor": "middle", class: "axis-title" }, xTitle),
  );
  root.append(xAxis);

  series.forEach((s, index) => {
    const group = svg("g", { class: `series series-${index}`, "data-series": s.key });
    for (const run of segments(s.values)) {
      const points = run.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      group.append(svg("polyline", { points, fill: "none" }));
      for (const [i, v] of run) {
        const dot = svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3.5 });
        dot.append(svg("title", {}, `${s.name}, ${xTitle} ${xLabels[i]}: ${v.toFixed(decimals + 1)}`));
        group.append(dot);
      }
    }
    root.append(group);
  });
  container.append(root);

  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("li");
    const swatch = svg("svg", { width: 28, height: 10, class: `series series-${index}`, "aria-hidden": "true" });
    swatch.append(svg("line", { x1: 0, y1: 5, x2: 28, y2: 5 }));
    item.append(swatch, document.createTextNode(` ${s.name}`));
    if (!s.values.some(isNumber)) {
      item.append(document.createTextNode(" (not available)"));
      item.classList.add("muted");
    }
    legend.append(item);
  });
  container.append(legend);
}
