/**
 * Task `energy-curve`: mean (and std) of E(x_t, y) = -f(x_t)[y] and E(x_t) = -logsumexp f(x_t)
 * over the test images vs t (METHOD.md §3 and §5 item 5, thesis Fig 4.9), y the true label,
 * x_t forward-noised exactly as in noise-accuracy (lib/eval/noised_views.ts).
 *   deno task energy-curve [--classifier <id|path>]... [--t-max 300] [--t-step 10] [--clip]
 *     [--limit n] [--out out/energy-curve/energy.json]
 * @module
 */
import { countCorrect } from "../lib/eval/accuracy.ts";
import { curveGrid } from "../lib/eval/noised_views.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { linePlotSvg } from "../lib/plot/line_svg.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { numberFlag, parseFlags } from "./_args.ts";
import {
  EVAL_FLAGS,
  EVAL_USAGE,
  loadEvalClassifiers,
  loadEvalData,
  outPaths,
  provenance,
  releaseAll,
  seedFlag,
  writeTextAtomic,
} from "./_eval.ts";
import { sweepGrid } from "./_sweep.ts";
import { FED } from "./noise_accuracy.ts";

const FLAGS = {
  ...EVAL_FLAGS,
  clip: { type: "boolean" },
  "t-max": { type: "string" },
  "t-step": { type: "string" },
} as const;

/** Usage text of `energy-curve`. */
export const ENERGY_CURVE_USAGE = `deno task energy-curve [flags]
  The classifier sees (x_t + 1) / 2, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (x0 in [-1, 1],
  eps ~ N(0, I) per image, NOT clipped to [0, 1] unless --clip); y is the true label.
  --t-max <int>         last t (default 300; t = 1000 uses schedule index 999)
  --t-step <int>        t spacing (default 10)
  --clip                clip the classifier input to [0, 1]
${EVAL_USAGE}`;

/** Mean and standard deviation of a sum and sum of squares over n values. */
function meanStd(sum: number, sq: number, n: number): { mean: number; std: number } {
  const mean = sum / n;
  return { mean, std: Math.sqrt(Math.max(0, sq / n - mean * mean)) };
}

/** Runs `energy-curve`: writes the JSON curves and an energy-vs-t SVG. */
export async function energyCurveTask(args: string[]): Promise<void> {
  const f = parseFlags("energy-curve", args, FLAGS);
  if (f.help) {
    console.log(ENERGY_CURVE_USAGE);
    return;
  }
  const clip = f.clip ?? false;
  const schedule = linearSchedule();
  const tMax = numberFlag("t-max", f["t-max"], 300, { int: true, min: 0, max: schedule.T });
  const tStep = numberFlag("t-step", f["t-step"], 10, { int: true, min: 1 });
  const grid = curveGrid(schedule, tMax, tStep);
  const seed = seedFlag(f);
  const paths = outPaths(f, `out/energy-curve/energy${clip ? "-clip" : ""}.json`);
  const data = await loadEvalData(f);
  const classifiers = await loadEvalClassifiers(f);
  const G = grid.length + 1; // slot 0: clean
  // Per classifier and slot: sum and sum of squares of E(x,y) and E(x), and correct count.
  const acc = classifiers.map(() => new Float64Array(G * 5));
  const t0 = performance.now();
  try {
    await sweepGrid("energy-curve", classifiers, data, grid, "noise", { seed, clip }, (
      c,
      p,
      out,
      y,
      n,
    ) => {
      const a = acc[c], o = (p + 1) * 5;
      for (let i = 0; i < n; i++) {
        const exy = out.energyXY[i], ex = out.energyX[i];
        a[o] += exy;
        a[o + 1] += exy * exy;
        a[o + 2] += ex;
        a[o + 3] += ex * ex;
      }
      a[o + 4] += countCorrect(out.logits, y, n, 10);
    });
  } finally {
    await releaseAll(classifiers);
  }
  const count = data.split.count;
  const slot = (ci: number, s: number) => {
    const a = acc[ci], o = s * 5;
    return {
      energyXY: meanStd(a[o], a[o + 1], count),
      energyX: meanStd(a[o + 2], a[o + 3], count),
      accuracy: a[o + 4] / count,
    };
  };
  const curves = classifiers.map((c, ci) => ({
    classifier: c.ref,
    clean: slot(ci, 0),
    points: grid.map((g, p) => ({ t: g.t, ...slot(ci, p + 1) })),
  }));
  const result = {
    task: "energy-curve",
    config: {
      fed: FED.noise + (clip ? ", clipped to [0, 1]" : ", not clipped"),
      energies: "E(x,y) = -f(x)[y] (y the true label), E(x) = -logsumexp_k f(x)[k]",
      clip,
      schedule: schedule.name,
      tMax,
      tStep,
      tIndex: "schedule index = min(t, T - 1): t = 1000 is index 999; t = 0 is index 0",
      noise: "eps ~ N(0, I) from RandomStream(seed + i), reused at every t",
      ...provenance(classifiers, data, seed),
    },
    grid,
    curves,
    elapsedSeconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(paths.json, result);
  const ts = grid.map((g) => g.t);
  await writeTextAtomic(
    paths.svg,
    linePlotSvg(
      curves.flatMap((c, i) => [
        {
          label: `${c.classifier} E(x,y)`,
          x: ts,
          y: c.points.map((p) => p.energyXY.mean),
          color: i,
        },
        {
          label: `${c.classifier} E(x)`,
          x: ts,
          y: c.points.map((p) => p.energyX.mean),
          color: i,
          dashed: true,
        },
      ]),
      {
        title: `Mean energies on forward-noised ${data.config.split} images (n=${count}${
          clip ? ", clipped" : ""
        })`,
        xLabel: "timestep t",
        yLabel: "mean energy",
      },
    ),
  );
  for (const c of curves) {
    const last = c.points[c.points.length - 1];
    console.error(
      `${c.classifier}: clean E(x,y) ${c.clean.energyXY.mean.toFixed(3)} E(x) ${
        c.clean.energyX.mean.toFixed(3)
      }; t=${last.t}: E(x,y) ${last.energyXY.mean.toFixed(3)} E(x) ${last.energyX.mean.toFixed(3)}`,
    );
  }
  console.error(`energy-curve: wrote ${paths.json} and ${paths.svg}`);
}
