/**
 * Task `robust-accuracy`: accuracy of each classifier under PGD at a list of eps_test
 * (METHOD.md §5 item 1, thesis Table 4.1: rows eps_test, columns classifiers). Madry /
 * `robustness` conventions (lib/attacks/pgd.ts): eps in [0, 1] pixel units, cross-entropy
 * gradient in [0, 1] pixel space, 20 steps of 2.5 eps / 20, largest-loss iterate.
 *   deno task robust-accuracy [--classifier <id|path>]... [--norm l2|linf] [--eps 0,0.25,0.5,1]
 *     [--limit n] [--out out/robust-accuracy/l2.json]
 * @module
 */
import {
  crossEntropyGradient,
  madryStepSize,
  pgdAttack,
  type ThreatNorm,
} from "../lib/attacks/pgd.ts";
import { binomialSE, countCorrect } from "../lib/eval/accuracy.ts";
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { linePlotSvg } from "../lib/plot/line_svg.ts";
import { progress } from "../lib/progress.ts";
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
  unitChunk,
  writeTextAtomic,
} from "./_eval.ts";

const FLAGS = {
  ...EVAL_FLAGS,
  norm: { type: "string" },
  eps: { type: "string" },
  steps: { type: "string" },
  "step-ratio": { type: "string" },
  "random-start": { type: "boolean" },
} as const;

/** Default eps_test per norm: Table 4.1's L2 list; 2, 4, 8 / 255 for L-inf. */
export const DEFAULT_EPS: Record<ThreatNorm, string> = {
  l2: "0,0.25,0.5,1.0,2.0",
  linf: "0,2/255,4/255,8/255",
};

/** Usage text of `robust-accuracy`. */
export const ROBUST_ACCURACY_USAGE = `deno task robust-accuracy [flags]
  --norm l2|linf        threat model (default l2)
  --eps <list>          eps_test values in [0, 1] pixel units, numbers or fractions
                        (default l2 ${DEFAULT_EPS.l2}; linf ${DEFAULT_EPS.linf})
  --steps <int>         PGD steps (default 20); eps 0 needs none (the clean image)
  --step-ratio <num>    step size = ratio * eps / steps (default 2.5)
  --random-start        start uniformly in the eps ball (image i: RandomStream(seed + i))
${EVAL_USAGE}`;

/** Parses "0,0.25,2/255" into values >= 0 with their labels; throws a usage error otherwise. */
export function parseEpsList(raw: string): { values: number[]; labels: string[] } {
  const labels = raw.split(",").map((s) => s.trim());
  const values = labels.map((s) => {
    const m = /^(\d*\.?\d+(?:e-?\d+)?)(?:\/(\d*\.?\d+))?$/i.exec(s);
    const v = m ? Number(m[1]) / (m[2] === undefined ? 1 : Number(m[2])) : NaN;
    if (!Number.isFinite(v) || v < 0) {
      throw new UsageError(
        `--eps '${raw}' is invalid at '${s}': give comma-separated radii >= 0 in [0, 1] pixel ` +
          `units, e.g. 0,0.25,0.5,1 or 0,2/255,8/255`,
      );
    }
    return v;
  });
  if (new Set(values).size !== values.length) {
    throw new UsageError(`--eps '${raw}' repeats a value; give each once`);
  }
  return { values, labels };
}

/** One cell of the table. */
export interface RobustCell {
  /** The classifier reference (column). */
  classifier: string;
  /** eps_test in [0, 1] pixel units (row). */
  eps: number;
  /** eps_test as given, e.g. "8/255". */
  epsLabel: string;
  /** Accuracy at the largest-loss iterate (the `robustness` convention). */
  accuracy: number;
  /** Share of images classified correctly at every evaluated iterate (<= accuracy). */
  accuracyEveryIterate: number;
  /** Images counted correct at the largest-loss iterate. */
  correct: number;
  /** Images attacked. */
  count: number;
  /** Binomial standard error of `accuracy`. */
  se: number;
}

/** Runs `robust-accuracy`: writes the JSON table and an accuracy-vs-eps SVG. */
export async function robustAccuracyTask(args: string[]): Promise<void> {
  const f = parseFlags("robust-accuracy", args, FLAGS);
  if (f.help) {
    console.log(ROBUST_ACCURACY_USAGE);
    return;
  }
  const norm = choiceFlag("norm", f.norm, ["l2", "linf"] as const, "l2");
  const eps = parseEpsList(f.eps ?? DEFAULT_EPS[norm]);
  const steps = numberFlag("steps", f.steps, 20, { int: true, min: 1 });
  const ratio = numberFlag("step-ratio", f["step-ratio"], 2.5, { min: 0 });
  const randomStart = f["random-start"] ?? false;
  const seed = seedFlag(f);
  const paths = outPaths(f, `out/robust-accuracy/${norm}.json`);
  const data = await loadEvalData(f);
  const classifiers = await loadEvalClassifiers(f);
  const t0 = performance.now();
  const cells: RobustCell[] = [];
  try {
    const count = data.split.count, chunk = 128;
    const tick = progress(
      "robust-accuracy",
      classifiers.length * eps.values.length * count,
      "attacks",
    );
    let done = 0;
    for (const c of classifiers) {
      const lossGrad = crossEntropyGradient(c.classifier);
      const correct = new Float64Array(eps.values.length);
      const every = new Float64Array(eps.values.length);
      for (let s = 0; s < count; s += chunk) {
        const n = Math.min(chunk, count - s);
        const x0 = unitChunk(data.split, s, n);
        const y = Int32Array.from(data.split.labels.subarray(s, s + n));
        const seeds = Array.from({ length: n }, (_, i) => seed + s + i);
        for (let e = 0; e < eps.values.length; e++) {
          const ev = eps.values[e];
          // eps 0: the ball is {x0}, so every iterate is x0; evaluate it once.
          const k = ev === 0 ? 0 : steps;
          const r = await pgdAttack(lossGrad, x0, n, y, {
            norm,
            eps: ev,
            steps: k,
            stepSize: madryStepSize(ev, steps, ratio),
            randomStart,
          }, seeds);
          correct[e] += countCorrect(r.logits, y, n, c.classifier.numClasses);
          every[e] += r.correctEveryIterate.reduce((a, b) => a + b, 0);
          tick(done += n);
        }
      }
      eps.values.forEach((ev, e) => {
        const acc = correct[e] / count;
        cells.push({
          classifier: c.ref,
          eps: ev,
          epsLabel: eps.labels[e],
          accuracy: acc,
          accuracyEveryIterate: every[e] / count,
          correct: correct[e],
          count,
          se: binomialSE(acc, count),
        });
      });
    }
  } finally {
    await releaseAll(classifiers);
  }
  const refs = classifiers.map((c) => c.ref);
  const cell = (ref: string, e: number) => cells.find((c) => c.classifier === ref && c.eps === e)!;
  const result = {
    task: "robust-accuracy",
    config: {
      norm,
      eps: eps.values,
      epsLabels: eps.labels,
      steps,
      stepRatio: ratio,
      stepSizes: eps.values.map((e) => madryStepSize(e, steps, ratio)),
      randomStart,
      loss: "cross-entropy -log p(y|x) = E(x,y) - E(x), gradient in [0, 1] pixel space",
      selection: "largest-loss iterate (robustness use_best); eps 0 = clean image",
      ...provenance(classifiers, data, seed),
    },
    table: {
      rows: "eps_test",
      columns: refs,
      eps: eps.values,
      epsLabels: eps.labels,
      accuracy: eps.values.map((e) => refs.map((r) => cell(r, e).accuracy)),
    },
    cells,
    elapsedSeconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(paths.json, result);
  const svg = linePlotSvg(
    refs.map((r) => ({
      label: r,
      x: eps.values,
      y: eps.values.map((e) => cell(r, e).accuracy),
    })),
    {
      title: `Robust accuracy, ${norm === "l2" ? "L2" : "L-inf"} PGD-${steps}, ` +
        `${data.config.count} ${data.config.split} images`,
      xLabel: `eps_test (${norm === "l2" ? "L2" : "L-inf"}, [0, 1] pixel units)`,
      yLabel: "accuracy",
      yRange: [0, 1],
      hlines: [{ y: 0.1, label: "chance" }],
    },
  );
  await writeTextAtomic(paths.svg, svg);
  console.error(formatRobustTable(result.table, data.config.count, norm));
  console.error(`robust-accuracy: wrote ${paths.json} and ${paths.svg}`);
}

/** The table as markdown, accuracies in percent (Table 4.1 layout). */
export function formatRobustTable(
  table: { columns: string[]; epsLabels: string[]; accuracy: number[][] },
  count: number,
  norm: ThreatNorm,
): string {
  const head = `| eps_test (${norm}) | ${table.columns.join(" | ")} |`;
  const rule = `|---|${table.columns.map(() => "---:").join("|")}|`;
  const rows = table.epsLabels.map((l, e) =>
    `| ${l} | ${table.accuracy[e].map((a) => (100 * a).toFixed(2)).join(" | ")} |`
  );
  return [`robust accuracy (%) on ${count} images`, head, rule, ...rows].join("\n");
}
