/**
 * A self-contained SVG scatter plot whose points carry text labels, for trade-off figures such
 * as the sweep's target accuracy vs Frechet distance (one series per guidance direction, each
 * point labelled with its scale). Same look as {@link ./line_svg.ts}: tab10 colours, round ticks.
 * @module
 */
import { cartesianFrame, COLORS, esc, num } from "./_svg.ts";

/** One labelled point of a {@link ScatterSeries}. */
export interface ScatterPoint {
  x: number;
  y: number;
  /** Text drawn beside the marker (e.g. "s=10"). */
  label?: string;
  /** Marker radius in pixels (default 4.5), e.g. to show a cost. */
  r?: number;
}

/** One series of {@link scatterPlotSvg}. */
export interface ScatterSeries {
  /** Legend text. */
  label: string;
  points: readonly ScatterPoint[];
  /** Colour index into tab10 (default: the series' position). */
  color?: number;
  /** Dashed connecting line. */
  dashed?: boolean;
}

/** Options of {@link scatterPlotSvg}. */
export interface ScatterPlotOptions {
  title?: string;
  xLabel: string;
  yLabel: string;
  /** Fixed y range (default: the data's, widened to round ticks). */
  yRange?: [number, number];
  /** Join each series' points in the given order with a thin line (default true). */
  connect?: boolean;
}

/**
 * An SVG scatter plot: markers (with a `<title>` tooltip) and their labels, optional connecting
 * lines, axes with round ticks and a legend right of the plot. Throws on a plot without points
 * or with non-finite coordinates, naming the series.
 * @example
 * ```ts
 * const svg = scatterPlotSvg([{
 *   label: "joint",
 *   points: [{ x: 6.0, y: 0.62, label: "s=10" }, { x: 9.1, y: 0.81, label: "s=30" }],
 * }], { xLabel: "FD", yLabel: "target accuracy", yRange: [0, 1] });
 * ```
 */
export function scatterPlotSvg(
  series: readonly ScatterSeries[],
  opts: ScatterPlotOptions,
): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) throw new Error("scatterPlotSvg: no points; pass at least one");
  for (const s of series) {
    if (s.points.some((p) => !Number.isFinite(p.x) || !Number.isFinite(p.y))) {
      throw new Error(`scatterPlotSvg: series '${s.label}' holds a non-finite coordinate`);
    }
  }
  const connect = opts.connect ?? true;
  const { out, x, y, left, right, top } = cartesianFrame({
    labels: series.map((s) => s.label),
    xs: all.map((p) => p.x),
    ys: all.map((p) => p.y),
    yRange: opts.yRange,
    pad: 0.06,
    title: opts.title,
    xLabel: opts.xLabel,
    yLabel: opts.yLabel,
  });
  series.forEach((s, i) => {
    const color = COLORS[(s.color ?? i) % COLORS.length];
    const dash = s.dashed ? ` stroke-dasharray="7 4"` : "";
    if (connect && s.points.length > 1) {
      const pts = s.points.map((p) => `${num(x(p.x))},${num(y(p.y))}`).join(" ");
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="1.5" stroke-opacity="0.6"` +
          `${dash} points="${pts}"/>`,
      );
    }
    for (const p of s.points) {
      const px = x(p.x), py = y(p.y);
      const tip = `${s.label}${p.label ? ` ${p.label}` : ""}: (${num(p.x, 4)}, ${num(p.y, 4)})`;
      out.push(
        `<circle cx="${num(px)}" cy="${num(py)}" r="${num(p.r ?? 4.5)}" fill="${color}"` +
          `${p.r === undefined ? "" : ` fill-opacity="0.7"`} stroke="white">` +
          `<title>${esc(tip)}</title></circle>`,
      );
      if (p.label) {
        // Labels go left of points in the right quarter, so they stay inside the frame.
        const flip = px > left + 0.75 * (right - left);
        out.push(
          `<text x="${num(px + (flip ? -7 : 7))}" y="${num(py - 6)}" fill="${color}" ` +
            `text-anchor="${flip ? "end" : "start"}" font-size="11">${esc(p.label)}</text>`,
        );
      }
    }
  });
  const lx = right + 24;
  series.forEach((s, i) => {
    const color = COLORS[(s.color ?? i) % COLORS.length];
    const ly = top + 10 + i * 22;
    const dash = s.dashed ? ` stroke-dasharray="7 4"` : "";
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${color}" ` +
        `stroke-width="1.5"${dash}/>`,
      `<circle cx="${lx + 14}" cy="${ly}" r="4.5" fill="${color}"/>`,
      `<text x="${lx + 34}" y="${ly}" dy="4">${esc(s.label)}</text>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
