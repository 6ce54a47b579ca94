/**
 * Task `energy-stats`: class-wise energy statistics of a classifier on CIFAR-10 (§4.8, Fig 4.12):
 * per class, mean and std of E(x) = -logsumexp f(x) and E(x,y) = -f(x)[y], and the accuracy.
 * The per-class means of E(x) are the Estar_y that `dual` guidance reads.
 *   deno task energy-stats --classifier <id|path> [--data <cifar10>] [--split train|test]
 *     [--limit n] [--out <file.json>]
 * @module
 */
import { CIFAR10_CLASSES, loadCifar10 } from "../lib/data/cifar10.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { progress } from "../lib/progress.ts";
import { defaultModel, weightsBaseFrom } from "../lib/weights.ts";
import { choiceFlag, numberFlag, parseFlags, UsageError, versions } from "./_args.ts";
import { conventionsFromFlags, loadClassifierRef } from "./_models.ts";
import { DEFAULT_CIFAR10 } from "./build_mixture.ts";

/** Class-wise energy statistics, as written by `energy-stats` and read by `dual` guidance. */
export interface EnergyStats {
  task: "energy-stats";
  classifier: { ref: string; sha256: string };
  split: "train" | "test";
  count: number;
  accuracy: number;
  classes: Array<{
    index: number;
    name: string;
    count: number;
    energyX: { mean: number; std: number };
    energyXY: { mean: number; std: number };
    accuracy: number;
  }>;
  /** Estar_y = mean E(x) over the split's images of class y. */
  eStar: number[];
}

/** Reads an energy-stats JSON file, validating the class count. */
export async function readEnergyStats(path: string, numClasses: number): Promise<EnergyStats> {
  let s: EnergyStats;
  try {
    s = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(
      `--stats ${path} cannot be read as JSON (${(e as Error).message}); ` +
        `write it with 'deno task energy-stats --classifier <the guiding classifier> --out ${path}'`,
    );
  }
  if (s.task !== "energy-stats" || !Array.isArray(s.eStar)) {
    throw new UsageError(`--stats ${path} is not an energy-stats file (no eStar array)`);
  }
  if (s.eStar.length !== numClasses) {
    throw new UsageError(
      `--stats ${path} has ${s.eStar.length} classes, the classifier has ${numClasses}`,
    );
  }
  return s;
}

/** Usage text of `energy-stats`. */
export const ENERGY_STATS_USAGE = `deno task energy-stats [flags]
  class-wise mean/std of E(x) and E(x,y) of a classifier on CIFAR-10 (§4.8); the means of E(x)
  are the Estar_y that --direction dual reads
  --classifier <id|path>   classifier or energy head (default: the manifest's default classifier)
  --data <cifar10>         CIFAR-10 archive or folder (default ../shared/data/cifar10/...)
  --split train|test       (default train)
  --limit <n>              only the first n images
  --out <file.json>        (default out/energy-stats/<classifier>-<split>.json)
  --batch <n>              images per model call (default 64)
  --mean r,g,b --std r,g,b --range 01|pm1 --layout nchw|nhwc   conventions of a raw classifier path
  --provider auto|cpu|cuda --weights <dir|url>`;

/** Runs `energy-stats`. */
export async function energyStatsTask(args: string[]): Promise<void> {
  const f = parseFlags("energy-stats", args, {
    help: { type: "boolean" },
    classifier: { type: "string" },
    data: { type: "string" },
    split: { type: "string" },
    limit: { type: "string" },
    out: { type: "string" },
    batch: { type: "string" },
    mean: { type: "string" },
    std: { type: "string" },
    range: { type: "string" },
    layout: { type: "string" },
    provider: { type: "string" },
    weights: { type: "string" },
  });
  if (f.help) {
    console.log(ENERGY_STATS_USAGE);
    return;
  }
  const base = weightsBaseFrom(f.weights);
  const ref = f.classifier ?? await defaultModel("classifier", base);
  const split = choiceFlag("split", f.split, ["train", "test"] as const, "train");
  const limit = f.limit === undefined
    ? undefined
    : numberFlag("limit", f.limit, 0, { int: true, min: 1 });
  const out = f.out ?? `out/energy-stats/${ref.replace(/[^\w.-]+/g, "_")}-${split}.json`;
  const { classifier, resolved } = await loadClassifierRef(ref, base, {
    conventions: conventionsFromFlags(f),
    provider: choiceFlag("provider", f.provider, ["auto", "cpu", "cuda"] as const, "auto"),
    batch: numberFlag("batch", f.batch, 64, { int: true, min: 1 }),
  });
  if (classifier.numClasses !== CIFAR10_CLASSES.length) {
    throw new UsageError(`classifier ${ref} has ${classifier.numClasses} classes; CIFAR-10 has 10`);
  }
  const data = await loadCifar10(f.data ?? DEFAULT_CIFAR10, split, { limit });
  data.notes?.forEach((n) => console.error(`note: ${n}`));
  const per = 3 * 32 * 32, chunk = 256;
  const sum = new Float64Array(10 * 2), sq = new Float64Array(10 * 2), cnt = new Float64Array(10);
  const correct = new Float64Array(10);
  const tick = progress("energy-stats", data.count, "images");
  const x01 = new Float32Array(chunk * per);
  for (let s = 0; s < data.count; s += chunk) {
    const n = Math.min(chunk, data.count - s);
    for (let i = 0; i < n * per; i++) x01[i] = data.images[s * per + i] / 255;
    const y = Array.from(data.labels.subarray(s, s + n));
    const o = await classifier.forward(x01.subarray(0, n * per), n, y);
    for (let i = 0; i < n; i++) {
      const k = y[i];
      cnt[k]++;
      for (const [j, v] of [[0, o.energyX[i]], [1, o.energyXY[i]]] as const) {
        sum[k * 2 + j] += v;
        sq[k * 2 + j] += v * v;
      }
      const row = o.logits.subarray(i * 10, i * 10 + 10);
      if (row.indexOf(Math.max(...row)) === k) correct[k]++;
    }
    tick(s + n);
  }
  const stat = (k: number, j: number) => {
    const m = sum[k * 2 + j] / cnt[k];
    return { mean: m, std: Math.sqrt(Math.max(0, sq[k * 2 + j] / cnt[k] - m * m)) };
  };
  const classes = CIFAR10_CLASSES.map((name, k) => ({
    index: k,
    name,
    count: cnt[k],
    energyX: stat(k, 0),
    energyXY: stat(k, 1),
    accuracy: correct[k] / cnt[k],
  }));
  const stats: EnergyStats & Record<string, unknown> = {
    task: "energy-stats",
    classifier: {
      ref,
      sha256: resolved.sha256,
      ...(resolved.externalData ? { externalData: resolved.externalData } : {}),
    },
    split,
    count: data.count,
    accuracy: correct.reduce((a, b) => a + b) / data.count,
    classes,
    eStar: classes.map((c) => c.energyX.mean),
    versions: versions(),
  };
  await writeJsonAtomic(out, stats);
  console.error(
    `energy-stats: ${data.count} ${split} images, accuracy ${
      (stats.accuracy * 100).toFixed(2)
    }%, wrote ${out}`,
  );
  for (const c of classes) {
    console.error(
      `  ${c.name.padEnd(10)} E(x) ${c.energyX.mean.toFixed(3)} ± ${c.energyX.std.toFixed(3)}   ` +
        `E(x,y) ${c.energyXY.mean.toFixed(3)} ± ${c.energyXY.std.toFixed(3)}   acc ${
          (c.accuracy * 100).toFixed(1)
        }%`,
    );
  }
}
