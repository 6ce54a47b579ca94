/**
 * Task `noise-accuracy`: accuracy of each classifier on forward-noised test images (METHOD.md
 * §5 item 3, thesis Fig 4.5) or, with `--darkness`, on darkened ones (item 4, Fig 4.6), vs t,
 * with the first t at which each classifier falls to chance. What the classifier is fed is
 * spelled out in lib/eval/noised_views.ts and recorded in the result's config.
 *   deno task noise-accuracy [--classifier <id|path>]... [--darkness [--darken-in pm1|01]]
 *     [--t-max 1000] [--t-step 10] [--clip] [--limit n] [--out out/noise-accuracy/noise.json]
 * @module
 */
import {
  binomialSE,
  chanceThreshold,
  countCorrect,
  firstAtOrBelow,
  tallyPredictions,
} from "../lib/eval/accuracy.ts";
import { curveGrid, type ViewKind } from "../lib/eval/noised_views.ts";
import { CIFAR10_CLASSES } from "../lib/data/cifar10.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { linePlotSvg } from "../lib/plot/line_svg.ts";
import { linearSchedule } from "../lib/schedule.ts";
import { choiceFlag, numberFlag, parseFlags, UsageError } from "./_args.ts";
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

const FLAGS = {
  ...EVAL_FLAGS,
  darkness: { type: "boolean" },
  "darken-in": { type: "string" },
  clip: { type: "boolean" },
  "t-max": { type: "string" },
  "t-step": { type: "string" },
} as const;

/** Usage text of `noise-accuracy`. */
export const NOISE_ACCURACY_USAGE = `deno task noise-accuracy [flags]
  (default) noise: the classifier sees (x_t + 1) / 2, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
            x0 the test image in [-1, 1], eps ~ N(0, I) per image; NOT clipped to [0, 1]
  --darkness            no noise: the classifier sees (sqrt(abar_t) x0 + 1) / 2 (Fig 4.6)
  --darken-in pm1|01    with --darkness: scale x0 in [-1, 1] (pm1, default: a fade to grey) or
                        the [0, 1] image (01: sqrt(abar_t) (x0 + 1) / 2, a fade to black)
  --clip                clip the classifier input to [0, 1]
  --t-max <int>         last t (default 1000; t = 1000 uses schedule index 999)
  --t-step <int>        t spacing (default 10; 100 with --darkness)
  Schedule: linear betas 1e-4..0.02, T = 1000 (google/ddpm-cifar10-32). t = 0 is index 0
  (abar 0.9999), not the clean image; the clean accuracy is reported beside the curve.
  Chance: the first t whose accuracy is <= 10% + 2 SE, SE = sqrt(0.1 * 0.9 / n).
${EVAL_USAGE}`;

/** What the classifier is fed, in words, per view (recorded in the result). */
export const FED: Record<ViewKind, string> = {
  noise: "(x_t + 1) / 2 with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, x0 = byte/127.5 - 1",
  "darken-pm1": "(sqrt(abar_t) x0 + 1) / 2 with x0 = byte/127.5 - 1 (fade to grey 0.5)",
  "darken-01": "sqrt(abar_t) (x0 + 1) / 2 with x0 = byte/127.5 - 1 (fade to black)",
};

/** Runs `noise-accuracy`: writes the JSON curves and an accuracy-vs-t SVG. */
export async function noiseAccuracyTask(args: string[]): Promise<void> {
  const f = parseFlags("noise-accuracy", args, FLAGS);
  if (f.help) {
    console.log(NOISE_ACCURACY_USAGE);
    return;
  }
  const darkness = f.darkness ?? false;
  if (!darkness && f["darken-in"] !== undefined) {
    throw new UsageError(`--darken-in needs --darkness (without it the images are noised)`);
  }
  const darkenIn = choiceFlag("darken-in", f["darken-in"], ["pm1", "01"] as const, "pm1");
  const kind: ViewKind = darkness ? `darken-${darkenIn}` : "noise";
  const clip = f.clip ?? false;
  const schedule = linearSchedule();
  const tMax = numberFlag("t-max", f["t-max"], 1000, { int: true, min: 0, max: schedule.T });
  const tStep = numberFlag("t-step", f["t-step"], darkness ? 100 : 10, { int: true, min: 1 });
  const grid = curveGrid(schedule, tMax, tStep);
  const seed = seedFlag(f);
  const name = darkness ? `darkness-${darkenIn}` : "noise";
  const paths = outPaths(f, `out/noise-accuracy/${name}${clip ? "-clip" : ""}.json`);
  const data = await loadEvalData(f);
  const classifiers = await loadEvalClassifiers(f);
  const K = CIFAR10_CLASSES.length;
  const G = grid.length + 1; // slot 0: clean
  const correct = classifiers.map(() => new Float64Array(G));
  const predicted = classifiers.map(() => Array.from({ length: G }, () => new Float64Array(K)));
  const t0 = performance.now();
  try {
    await sweepGrid(name, classifiers, data, grid, kind, { seed, clip }, (c, p, out, y, n) => {
      correct[c][p + 1] += countCorrect(out.logits, y, n, K);
      tallyPredictions(out.logits, n, K, predicted[c][p + 1]);
    });
  } finally {
    await releaseAll(classifiers);
  }
  const count = data.split.count;
  const threshold = chanceThreshold(count, K);
  const ts = grid.map((g) => g.t);
  const curves = classifiers.map((c, ci) => {
    const accuracy = grid.map((_, p) => correct[ci][p + 1] / count);
    const mode = (p: number) => {
      const h = predicted[ci][p + 1];
      const k = h.indexOf(Math.max(...h));
      return { class: k, name: CIFAR10_CLASSES[k], share: h[k] / count };
    };
    return {
      classifier: c.ref,
      cleanAccuracy: correct[ci][0] / count,
      accuracy,
      se: accuracy.map((a) => binomialSE(a, count)),
      // The most frequent prediction at each t: a collapsed classifier sits at its class share.
      mostPredicted: grid.map((_, p) => mode(p)),
      chanceT: firstAtOrBelow(ts, accuracy, threshold),
    };
  });
  const result = {
    task: "noise-accuracy",
    config: {
      mode: darkness ? "darkness" : "noise",
      view: kind,
      fed: FED[kind] + (clip ? ", clipped to [0, 1]" : ", not clipped"),
      clip,
      schedule: schedule.name,
      tMax,
      tStep,
      tIndex: "schedule index = min(t, T - 1): t = 1000 is index 999; t = 0 is index 0",
      noise: darkness ? "none" : "eps ~ N(0, I) from RandomStream(seed + i), reused at every t",
      chance: "first t with accuracy <= 1/K + 2 sqrt((1/K)(1 - 1/K)/n)",
      ...provenance(classifiers, data, seed),
    },
    grid,
    chanceThreshold: threshold,
    curves,
    elapsedSeconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(paths.json, result);
  const what = darkness
    ? `darkened (${darkenIn === "pm1" ? "sqrt(abar_t) x0 in [-1, 1]" : "sqrt(abar_t) x in [0, 1]"})`
    : "forward-noised x_t";
  await writeTextAtomic(
    paths.svg,
    linePlotSvg(
      curves.map((c) => ({
        label: `${c.classifier} (chance at t=${c.chanceT ?? "never"})`,
        x: ts,
        y: c.accuracy,
      })),
      {
        title: `Accuracy on ${what} ${data.config.split} images (n=${count}${
          clip ? ", clipped" : ""
        })`,
        xLabel: "timestep t",
        yLabel: "accuracy",
        yRange: [0, 1],
        hlines: [{ y: threshold, label: `chance + 2 SE (${(100 * threshold).toFixed(1)}%)` }],
      },
    ),
  );
  for (const c of curves) {
    console.error(
      `${c.classifier}: clean ${(100 * c.cleanAccuracy).toFixed(2)}%, t=0 ${
        (100 * c.accuracy[0]).toFixed(2)
      }%, at chance (<= ${(100 * threshold).toFixed(2)}%) from t = ${c.chanceT ?? "never"}`,
    );
  }
  console.error(`noise-accuracy: wrote ${paths.json} and ${paths.svg}`);
}
