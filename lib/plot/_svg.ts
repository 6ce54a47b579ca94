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
