/**
 * A self-contained SVG line plot of guidance strength per sampling step, in the style of
 * thesis Fig 4.10/4.11 (METHOD.md §4). No dependencies: plain string building.
 * @module
 */
import { COLORS, esc, niceTicks, num } from "../plot/_svg.ts";

/** One curve of {@link strengthPlotSvg}: a value per sampling step. */
export interface StrengthCurve {
  /** Legend text. */
  label: string;
  /** One value per step, aligned with `opts.steps`. */
  values: number[];
  /**
   * Which y axis the curve uses (default "left"). Put absolute strengths (two-phase, 30 then
   * 11) on the right when the left axis shows weights in [0, 1], so neither flattens the other.
   */
  axis?: "left" | "right";
}

/** Options of {@link strengthPlotSvg}. */
export interface StrengthPlotOptions {
  /** The timestep t of each step, in sampling order (e.g. 990, 980, ..., 0). */
  steps: number[];
  /** Title above the plot. */
  title?: string;
  /** Left y-axis label (default "s · w(t)"). */
  yLabel?: string;
  /** Right y-axis label, used when some curve has axis "right" (default "absolute strength"). */
  yLabelRight?: string;
}

/**
 * An SVG line plot of per-step guidance strengths, one `<polyline>` per curve, with axes,
 * ticks, grid lines and a legend. The x axis is the timestep t in sampling order: high t
 * (noise) on the left, t = 0 (clean) on the right, labelled so. Curves with `axis: "right"`
 * are dashed and read on a right-hand y axis. Throws if a curve's length differs from
 * `opts.steps` or holds a non-finite value.
 * @example
 * ```ts
 * const svg = strengthPlotSvg([{ label: "constant", values: [1, 1] }], { steps: [990, 0] });
 * ```
 */
export function strengthPlotSvg(curves: StrengthCurve[], opts: StrengthPlotOptions): string {
  const ts = opts.steps;
  if (curves.length === 0) throw new Error("strengthPlotSvg: no curves; pass at least one");
  if (ts.length === 0 || !ts.every(Number.isFinite)) {
    throw new Error(`strengthPlotSvg: opts.steps must be finite timesteps, got [${ts}]`);
  }
  for (const c of curves) {
    if (c.values.length !== ts.length) {
      throw new Error(
        `strengthPlotSvg: curve '${c.label}' has ${c.values.length} values for ` +
          `${ts.length} steps; give one value per step`,
      );
    }
    const bad = c.values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new Error(`strengthPlotSvg: curve '${c.label}' value ${bad} is ${c.values[bad]}`);
    }
  }
  // With no left curve, the right-hand ones take the left axis.
  const hasLeft = curves.some((c) => (c.axis ?? "left") === "left");
  const axisOf = (c: StrengthCurve) => (hasLeft ? c.axis ?? "left" : "left");
  const hasRight = curves.some((c) => axisOf(c) === "right");

  const suffix = (c: StrengthCurve) => (axisOf(c) === "right" ? " (right axis)" : "");
  // Legend width from the longest label (about 7.2 px per character at 12 px).
  const chars = Math.max(...curves.map((c) => (c.label + suffix(c)).length));
  const legendW = Math.max(120, Math.ceil(50 + 7.2 * chars));
  const left = 70, top = 44, bottom = 56, plotW = 560;
  const right = left + plotW;
  const W = right + (hasRight ? 70 : 20) + legendW, H = 480;
  const plotBottom = H - bottom;
  const PAD = 0.03; // margin inside the frame, so curves do not run along it (as matplotlib)

  const tMax = Math.max(...ts), tMin = Math.min(...ts);
  const xs = niceTicks(Math.min(0, tMin), tMax === tMin ? tMin + 1 : tMax, 5);
  const xPad = PAD * (xs.hi - xs.lo);
  // Sampling order: the largest t on the left.
  const x = (t: number) => left + (xs.hi + xPad - t) / (xs.hi - xs.lo + 2 * xPad) * plotW;

  const yScale = (axis: "left" | "right") => {
    const vals = curves.filter((c) => axisOf(c) === axis).flatMap((c) => c.values);
    const nt = niceTicks(Math.min(0, ...vals), Math.max(...vals), 5);
    const pad = PAD * (nt.hi - nt.lo);
    const y = (v: number) =>
      plotBottom - (v - nt.lo + pad) / (nt.hi - nt.lo + 2 * pad) * (plotBottom - top);
    return { ...nt, y };
  };
  const yl = yScale("left");
  const yr = hasRight ? yScale("right") : undefined;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
      `viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" ` +
      `font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  );
  if (opts.title) {
    out.push(
      `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">` +
        `${esc(opts.title)}</text>`,
    );
  }
  // Grid and ticks.
  for (const t of xs.ticks) {
    const px = num(x(t));
    out.push(
      `<line x1="${px}" y1="${top}" x2="${px}" y2="${plotBottom}" stroke="#e6e6e6"/>`,
      `<line x1="${px}" y1="${plotBottom}" x2="${px}" y2="${plotBottom + 5}" stroke="black"/>`,
      `<text x="${px}" y="${plotBottom + 19}" text-anchor="middle">${num(t)}</text>`,
    );
  }
  for (const v of yl.ticks) {
    const py = num(yl.y(v));
    out.push(
      `<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#e6e6e6"/>`,
      `<line x1="${left - 5}" y1="${py}" x2="${left}" y2="${py}" stroke="black"/>`,
      `<text x="${left - 8}" y="${py}" dy="4" text-anchor="end">${num(v, 4)}</text>`,
    );
  }
  if (yr) {
    for (const v of yr.ticks) {
      const py = num(yr.y(v));
      out.push(
        `<line x1="${right}" y1="${py}" x2="${right + 5}" y2="${py}" stroke="black"/>`,
        `<text x="${right + 8}" y="${py}" dy="4" text-anchor="start">${num(v, 4)}</text>`,
      );
    }
  }
  // Frame and axis labels.
  out.push(
    `<rect x="${left}" y="${top}" width="${right - left}" height="${plotBottom - top}" ` +
      `fill="none" stroke="black"/>`,
    `<text x="${(left + right) / 2}" y="${H - 14}" text-anchor="middle">` +
      `timestep t (sampling order: noise \u2192 clean)</text>`,
    `<text transform="translate(18 ${(top + plotBottom) / 2}) rotate(-90)" ` +
      `text-anchor="middle">${esc(opts.yLabel ?? "s \u00b7 w(t)")}</text>`,
  );
  if (yr) {
    out.push(
      `<text transform="translate(${right + 50} ${(top + plotBottom) / 2}) rotate(90)" ` +
        `text-anchor="middle">${esc(opts.yLabelRight ?? "absolute strength")}</text>`,
    );
  }
  // Curves: one polyline each.
  curves.forEach((c, i) => {
    const color = COLORS[i % COLORS.length];
    const y = axisOf(c) === "right" ? yr!.y : yl.y;
    const pts = c.values.map((v, j) => `${num(x(ts[j]))},${num(y(v))}`).join(" ");
    const dash = axisOf(c) === "right" ? ` stroke-dasharray="7 4"` : "";
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash} ` +
        `stroke-linejoin="round" points="${pts}"><title>${esc(c.label)}</title></polyline>`,
    );
  });
  // Legend, right of the plot.
  const lx = W - legendW + 6;
  curves.forEach((c, i) => {
    const color = COLORS[i % COLORS.length];
    const ly = top + 10 + i * 22;
    const dash = axisOf(c) === "right" ? ` stroke-dasharray="7 4"` : "";
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${color}" ` +
        `stroke-width="2"${dash}/>`,
      `<text x="${lx + 34}" y="${ly}" dy="4">${esc(c.label + suffix(c))}</text>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
