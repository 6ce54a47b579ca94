/**
 * Task `strength-plot`: plots guidance strength schedules per sampling step as an SVG
 * (METHOD.md §4, thesis Fig 4.10/4.11/4.17).
 *   deno task strength-plot [--schedule <spec>]... --steps 100 --activation 0 --scale 1
 *     --out out/strength.svg
 * @module
 */
import {
  formatStrength,
  guidanceFactor,
  parseStrength,
  THESIS_STRENGTHS,
} from "../lib/guidance/strength.ts";
import { type StrengthCurve, strengthPlotSvg } from "../lib/guidance/strength_svg.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { timestepGrid } from "../lib/timesteps.ts";
import { numberFlag, parseFlags } from "./_args.ts";

const FLAGS = {
  schedule: { type: "string", multiple: true },
  steps: { type: "string" },
  activation: { type: "string" },
  scale: { type: "string" },
  out: { type: "string" },
  help: { type: "boolean" },
} as const;

/** Usage text of `strength-plot`. */
export const STRENGTH_PLOT_USAGE = `deno task strength-plot [flags]
  --schedule <spec>     a strength schedule; repeat for several (default: the thesis's
                        ${THESIS_STRENGTHS.join(" ")})
                        forms: sqrt | power:p | sigmoid:y0,t0,k | two-phase:s1,s2[,switch]
                        | linear | constant
  --steps <int>         DDIM steps on the leading grid (default 100: t = 990, ..., 0)
  --activation <frac>   fraction of the first steps with guidance off, in [0, 1] (default 0)
  --scale <num>         guidance scale s multiplying w(t); two-phase ignores it (default 1)
  --out <file.svg>      output file (default out/strength.svg)`;

/**
 * Computes s * w(t) (or the two-phase strength) per step of the thesis grid for each
 * schedule and writes the plot atomically; prints the path.
 */
export async function strengthPlotTask(args: string[]): Promise<void> {
  const f = parseFlags("strength-plot", args, FLAGS);
  if (f.help) {
    console.log(STRENGTH_PLOT_USAGE);
    return;
  }
  const schedule = linearSchedule();
  const steps = numberFlag("steps", f.steps, 100, { int: true, min: 1, max: schedule.T });
  const activation = numberFlag("activation", f.activation, 0, { min: 0, max: 1 });
  const scale = numberFlag("scale", f.scale, 1);
  const out = f.out ?? "out/strength.svg";
  const specs = (f.schedule ?? THESIS_STRENGTHS).map((s) => parseStrength(s, schedule.T));
  const grid = timestepGrid(schedule.T, steps, "leading");

  const curves = mergeEqualCurves(specs.map((spec) => ({
    label: formatStrength(spec),
    values: grid.map((t, i) => guidanceFactor({ spec, activation }, scale, t, i, steps, schedule)),
    axis: spec.kind === "two-phase" ? "right" : "left",
  })));
  const svg = strengthPlotSvg(curves, {
    steps: grid,
    title: `Guidance strength per step: ${steps} DDIM steps, scale ${scale}, ` +
      `activation ${activation}`,
    yLabel: `s \u00b7 w(t), s = ${scale}`,
    yLabelRight: "two-phase strength (absolute)",
  });
  await writeFileAtomic(out, new TextEncoder().encode(svg));
  console.log(out);
}

/**
 * Joins curves that coincide (e.g. sqrt and power:0.5) into one labelled "a = b", so that no
 * curve hides under another in the plot.
 */
export function mergeEqualCurves(curves: StrengthCurve[]): StrengthCurve[] {
  const out: StrengthCurve[] = [];
  for (const c of curves) {
    const same = out.find((o) =>
      o.axis === c.axis &&
      o.values.every((v, i) => Math.abs(v - c.values[i]) <= 1e-12 * Math.max(1, Math.abs(v)))
    );
    if (same) same.label += ` = ${c.label}`;
    else out.push({ ...c });
  }
  return out;
}
