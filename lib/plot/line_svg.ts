/**
 * A self-contained SVG line plot (x increasing to the right) for the experiment figures:
 * accuracy vs t (thesis Fig 4.5/4.6), energies vs t (Fig 4.9), accuracy vs eps (Table 4.1).
 * No dependencies: plain string building, matplotlib's tab10 colours.
 * @module
 */
import { cartesianFrame, COLORS, esc, num } from "./_svg.ts";

/** One curve of {@link linePlotSvg}. */
export interface LineSeries {
  /** Legend text. */
  label: string;
  /** x values, one per point. */
  x: readonly number[];
  /** y values, one per point. */
  y: readonly number[];
  /** Dashed stroke (e.g. E(x) beside a solid E(x,y)). */
  dashed?: boolean;
  /** Colour index into tab10 (default: the series' position). */
  color?: number;
}

/** A horizontal reference line (e.g. chance accuracy). */
export interface HLine {
  /** Height of the line, in data units. */
  y: number;
  /** Text at its right end. */
  label: string;
}

/** Options of {@link linePlotSvg}. */
export interface LinePlotOptions {
  /** Title above the plot. */
  title?: string;
  /** x-axis label. */
  xLabel: string;
  /** y-axis label. */
  yLabel: string;
  /** Fixed y range (default: the data's, widened to round ticks). */
  yRange?: [number, number];
  /** Horizontal reference lines, drawn grey and dotted, labelled at the right end. */
  hlines?: HLine[];
  /** Draw point markers (default: when every series has at most 30 points). */
  markers?: boolean;
}

/**
 * An SVG line plot: one `<polyline>` per series (with a `<title>` naming it), axes with round
 * ticks, grid lines, optional reference lines and a legend right of the plot. Throws on an
 * empty plot, mismatched x/y lengths or non-finite values.
 * @example
 * ```ts
 * const svg = linePlotSvg([{ label: "resnet4b", x: [0, 100], y: [0.78, 0.2] }], {
 *   xLabel: "t", yLabel: "accuracy", yRange: [0, 1], hlines: [{ y: 0.1, label: "chance" }],
 * });
 * ```
 */
export function linePlotSvg(series: readonly LineSeries[], opts: LinePlotOptions): string {
  if (series.length === 0) throw new Error("linePlotSvg: no series; pass at least one");
  for (const s of series) {
    if (s.x.length !== s.y.length || s.x.length === 0) {
      throw new Error(
        `linePlotSvg: series '${s.label}' has ${s.x.length} x and ${s.y.length} y values; ` +
          `give as many of each, at least one`,
      );
    }
    const bad = [...s.x, ...s.y].findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`linePlotSvg: series '${s.label}' holds a non-finite value`);
  }
  const markers = opts.markers ?? series.every((s) => s.x.length <= 30);
  const { out, x, y, left, right, top } = cartesianFrame({
    labels: series.map((s) => s.label),
    xs: series.flatMap((s) => [...s.x]),
    ys: [...series.flatMap((s) => [...s.y]), ...(opts.hlines ?? []).map((h) => h.y)],
    yRange: opts.yRange,
    pad: 0.03,
    title: opts.title,
    xLabel: opts.xLabel,
    yLabel: opts.yLabel,
  });
  for (const h of opts.hlines ?? []) {
    const py = num(y(h.y));
    out.push(
      `<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#777" ` +
        `stroke-dasharray="2 3"/>`,
      `<text x="${right - 4}" y="${py}" dy="-4" text-anchor="end" fill="#555">` +
        `${esc(h.label)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const color = COLORS[(s.color ?? i) % COLORS.length];
    const dash = s.dashed ? ` stroke-dasharray="7 4"` : "";
    const pts = s.x.map((v, j) => `${num(x(v))},${num(y(s.y[j]))}`).join(" ");
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} ` +
        `stroke-linejoin="round" points="${pts}"><title>${esc(s.label)}</title></polyline>`,
    );
    if (markers) {
      for (let j = 0; j < s.x.length; j++) {
        out.push(
          `<circle cx="${num(x(s.x[j]))}" cy="${num(y(s.y[j]))}" r="3" fill="${color}"/>`,
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
        `stroke-width="2"${dash}/>`,
      `<text x="${lx + 34}" y="${ly}" dy="4">${esc(s.label)}</text>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
