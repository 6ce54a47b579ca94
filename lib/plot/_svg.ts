/**
 * Pieces shared by the SVG plots (line, scatter, strength schedules): colours, escaping,
 * number formatting and axis ticks.
 * @module
 */

/** tab10 colours, as in matplotlib (the thesis's figures). */
export const COLORS: readonly string[] = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/** Escapes text for XML content and attribute values. */
export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/** Shortest readable number for coordinates and tick labels. */
export function num(v: number, digits = 2): string {
  return String(Number(v.toFixed(digits)));
}

/** About `count` round tick values (steps 1, 2, 2.5, 5 x 10^k) covering [lo, hi]. */
export function niceTicks(
  lo: number,
  hi: number,
  count = 5,
): { lo: number; hi: number; ticks: number[] } {
  if (!(hi > lo)) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const a = Math.floor(lo / step + 1e-9) * step, b = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = a; v <= b + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo: a, hi: b, ticks };
}

/** Options of {@link cartesianFrame}. */
export interface FrameOptions {
  /** Series labels (the legend's width follows the longest). */
  labels: readonly string[];
  /** All x and y values to show (ticks cover them). */
  xs: readonly number[];
  ys: readonly number[];
  /** Fixed y range instead of the data's. */
  yRange?: [number, number];
  /** Margin inside the frame, as a fraction of the tick range. */
  pad: number;
  title?: string;
  xLabel: string;
  yLabel: string;
}

/** The drawn frame of a plot and its data-to-pixel maps. */
export interface Frame {
  /** SVG elements so far (open `<svg>`, background, title, grid, ticks, frame, axis labels). */
  out: string[];
  x: (v: number) => number;
  y: (v: number) => number;
  /** Plot area edges, in pixels (for legends and labels). */
  left: number;
  right: number;
  top: number;
}

/**
 * The cartesian frame shared by the line and scatter plots: a 560x340 plot area with a legend
 * column on the right, round ticks, grey grid lines, a black frame, title and axis labels.
 */
export function cartesianFrame(o: FrameOptions): Frame {
  const chars = Math.max(...o.labels.map((l) => l.length));
  const legendW = Math.max(120, Math.ceil(50 + 7.2 * chars));
  const left = 76, top = 44, bottom = 56, plotW = 560;
  const right = left + plotW;
  const W = right + 24 + legendW, H = 440;
  const plotBottom = H - bottom;
  const xt = niceTicks(Math.min(...o.xs), Math.max(...o.xs), 6);
  const yt = o.yRange
    ? niceTicks(o.yRange[0], o.yRange[1], 5)
    : niceTicks(Math.min(...o.ys), Math.max(...o.ys), 5);
  const xPad = o.pad * (xt.hi - xt.lo), yPad = o.pad * (yt.hi - yt.lo);
  const x = (v: number) => left + (v - xt.lo + xPad) / (xt.hi - xt.lo + 2 * xPad) * plotW;
  const y = (v: number) =>
    plotBottom - (v - yt.lo + yPad) / (yt.hi - yt.lo + 2 * yPad) * (plotBottom - top);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" ` +
    `font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  if (o.title) {
    out.push(
      `<text x="${W / 2}" y="24" text-anchor="middle" font-size="14">${esc(o.title)}</text>`,
    );
  }
  for (const t of xt.ticks) {
    const px = num(x(t));
    out.push(
      `<line x1="${px}" y1="${top}" x2="${px}" y2="${plotBottom}" stroke="#e6e6e6"/>`,
      `<line x1="${px}" y1="${plotBottom}" x2="${px}" y2="${plotBottom + 5}" stroke="black"/>`,
      `<text x="${px}" y="${plotBottom + 19}" text-anchor="middle">${num(t, 4)}</text>`,
    );
  }
  for (const v of yt.ticks) {
    const py = num(y(v));
    out.push(
      `<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#e6e6e6"/>`,
      `<line x1="${left - 5}" y1="${py}" x2="${left}" y2="${py}" stroke="black"/>`,
      `<text x="${left - 8}" y="${py}" dy="4" text-anchor="end">${num(v, 4)}</text>`,
    );
  }
  out.push(
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotBottom - top}" ` +
      `fill="none" stroke="black"/>`,
    `<text x="${(left + right) / 2}" y="${H - 14}" text-anchor="middle">` +
      `${esc(o.xLabel)}</text>`,
    `<text transform="translate(18 ${(top + plotBottom) / 2}) rotate(-90)" ` +
      `text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  return { out, x, y, left, right, top };
}
