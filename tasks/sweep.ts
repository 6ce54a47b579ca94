/**
 * Task `sweep`: `guide` over a grid of directions x scales x strength schedules x guiding
 * classifiers (METHOD.md §4), each point evaluated by `evaluate` (§6: target accuracy of an
 * independent classifier, FD, IS, precision, recall), collected into one table and a trade-off
 * figure.
 *   deno task sweep --directions joint,logp --scales 10,30 --schedules sqrt,power:2
 *     [--classifiers <id,...>] [--seeds 0-7] [--class all] [--steps 100] [--eta 0.5]
 *     [--evaluator <id>] [--model <id|path>] [--out out/sweep]
 * Writes <out>/runs/<slug>/ (a guide run folder + evaluate.json + point.json per point),
 * <out>/sweep.json, <out>/sweep.md and <out>/tradeoff.svg. Resumable: a point whose
 * evaluate.json exists is skipped, and guide resumes a point interrupted mid-run.
 * @module
 */
import { writeJsonAtomic } from "../lib/io/outputs.ts";
import { writeFileAtomic } from "../lib/io/png.ts";
import { progress } from "../lib/progress.ts";
import { parseSeeds } from "../lib/random.ts";
import { claimRunFolder, fileExists } from "../lib/shard.ts";
import { preflightRefs } from "./_preflight.ts";
import {
  classifierName,
  parseClassifiers,
  parseDirections,
  parseScales,
  parseSchedules,
  type SweepPoint,
  sweepPoints,
} from "../lib/sweep/grid.ts";
import {
  metricNames,
  sweepMarkdown,
  type SweepRow,
  sweepRow,
  tradeoffSvg,
} from "../lib/sweep/results.ts";
import { defaultModel, loadManifest, looksLikePath, weightsBaseFrom } from "../lib/weights.ts";
import { numberFlag, parseFlags, UsageError, versions } from "./_args.ts";
import { evaluateTask } from "./evaluate.ts";
import { guideTask } from "./guide.ts";
import { passFlags, passThroughOptions, readJson } from "./_grid_run.ts";

/** Flags passed to every `guide` run unchanged (when given). */
const GUIDE_PASS = [
  "class",
  "steps",
  "eta",
  "sampler",
  "spacing",
  "variance",
  "clip",
  "batch",
  "activation",
  "lambda",
  "stats",
  "pgd-steps",
  "pgd-gamma",
  "point",
  "form",
  "provider",
  "threads",
  "weights",
] as const;

/** Classifier input size and class names (issue 13), passed to guide when given. */
const SIZE_PASS = ["input-size", "evaluator-input-size", "labels"] as const;

/** Flags passed to every `evaluate` run unchanged (when given). */
const EVALUATE_PASS = [
  "reference",
  "reference-limit",
  "data",
  "cache",
  "k",
  "splits",
  "features",
  "provider",
  "threads",
  "weights",
] as const;

const FLAGS = {
  directions: { type: "string" },
  scales: { type: "string" },
  schedules: { type: "string", multiple: true },
  classifiers: { type: "string" },
  model: { type: "string" },
  seeds: { type: "string" },
  evaluator: { type: "string" },
  out: { type: "string" },
  "input-size": { type: "string" },
  "evaluator-input-size": { type: "string" },
  labels: { type: "string" },
  ...passThroughOptions(GUIDE_PASS, EVALUATE_PASS),
  help: { type: "boolean" },
} as const;

/** Defaults of the grid lists (the thesis's directions and §4.7's schedules). */
export const SWEEP_DEFAULTS = {
  directions: "joint,logp,dual,pgd",
  scales: "3,10,30",
  schedules: "sqrt,power:2",
  seeds: "0-7",
  out: "out/sweep",
} as const;

/** Usage text of `sweep`. */
export const SWEEP_USAGE = `deno task sweep [flags]
  The grid (every combination is one guide run + one evaluate run):
  --directions <list>      guidance directions, any of logp,joint,dual,pgd
                           (default ${SWEEP_DEFAULTS.directions})
  --scales <list>          strengths s (default ${SWEEP_DEFAULTS.scales}; negative: --scales=-3,3)
  --schedules <list>       strength schedules w(t) (default ${SWEEP_DEFAULTS.schedules}). Specs hold
                           ':' and ',': separate them with ';' (quote it: 'sqrt;sigmoid:0.1,650,0.01'),
                           or with ',' where a ',' followed by a number continues the spec before
                           it (sqrt,power:2,sigmoid:0.1,650,0.01 is three); the flag may repeat
  --classifiers <list>     guiding classifiers, manifest ids or .onnx paths, comma-separated
                           (default: the manifest's default classifier)
  Fixed for every point (passed to guide):
  --model <id|path>        denoiser (default: the manifest's default denoiser)
  --seeds <list>           per-image seeds, the same for every class (default ${SWEEP_DEFAULTS.seeds})
  --class <name|index|all> requested classes (default all)
  --steps --eta --sampler --spacing --variance --clip --batch --activation --lambda --stats
  --pgd-steps --pgd-gamma --point --form   as in 'deno task guide --help'
  --evaluator <id|path>    independent classifier for target accuracy, IS, FD and precision/recall
                           features (default: the manifest's evaluator); never a guiding one
  --input-size H[,W] --evaluator-input-size H[,W] --labels <file>   classifiers of another input
                           size (a bilinear resize inside their heads) and class names, as in guide;
                           evaluate gets --evaluator-input-size as its --input-size, and --labels
  Passed to evaluate: --reference test|train|<folder> --reference-limit <n> --data <cifar10>
  --cache <dir> --k <n> --splits <n> --features <id|path>
  --out <dir>              sweep folder (default ${SWEEP_DEFAULTS.out}): runs/<slug>/ per point,
                           sweep.json, sweep.md, tradeoff.svg
  --provider auto|cpu|cuda --threads <n> --weights <dir|url>
  Resume: rerun the same command; points with runs/<slug>/evaluate.json are skipped, a point
  killed mid-run continues where it stopped. Adding values to the lists extends a sweep; changing
  a fixed flag is refused (use a new --out).`;

function parseSweepFlags(args: string[]) {
  return parseFlags("sweep", args, FLAGS);
}

/** Checks the classifiers exist (id in the manifest, or a file) and that dual has Estar_y. */
async function checkClassifiers(
  refs: string[],
  base: URL,
  needStats: boolean,
  statsFlag: string | undefined,
): Promise<void> {
  const manifest = await loadManifest(base);
  for (const ref of refs) {
    if (looksLikePath(ref)) {
      if (!(await fileExists(ref))) {
        throw new UsageError(`--classifiers: '${ref}' is not a file; pass an .onnx path or an id`);
      }
      if (needStats && statsFlag === undefined) {
        throw new UsageError(
          `--directions dual with classifier '${ref}' (a path) needs --stats <energy-stats.json> ` +
            `(deno task energy-stats --classifier ${ref})`,
        );
      }
      continue;
    }
    const entry = manifest.models[ref];
    if (!entry || (entry.kind !== "classifier" && entry.kind !== "energy-head")) {
      const known = Object.entries(manifest.models)
        .filter(([, e]) => e.kind === "classifier" || e.kind === "energy-head").map(([k]) => k);
      throw new UsageError(
        `--classifiers: '${ref}' is not a classifier of the manifest; use one of ` +
          `${known.join(", ")} or an .onnx path`,
      );
    }
    if (needStats && statsFlag === undefined && !entry.stats) {
      throw new UsageError(
        `--directions dual with classifier '${ref}' needs class-wise energy statistics: pass ` +
          `--stats <file> (deno task energy-stats --classifier ${ref}) or drop dual`,
      );
    }
  }
}

/** Runs one grid point: guide into its folder, then evaluate; point.json before evaluate.json. */
async function runPoint(
  p: SweepPoint,
  dir: string,
  guideArgs: string[],
  evaluateArgs: string[],
): Promise<void> {
  const t0 = performance.now();
  await guideTask(guideArgs);
  const tGuide = (performance.now() - t0) / 1000;
  const partial = `${dir}/evaluate.partial.json`;
  await evaluateTask([...evaluateArgs, "--images", dir, "--out", partial]);
  const tEval = (performance.now() - t0) / 1000 - tGuide;
  await writeJsonAtomic(`${dir}/point.json`, {
    task: "sweep-point",
    point: p,
    guideArgs,
    evaluateArgs,
    seconds: { guide: tGuide, evaluate: tEval, total: tGuide + tEval },
  });
  // evaluate.json marks the point done: it appears last, in one rename.
  await Deno.rename(partial, `${dir}/evaluate.json`);
}

/** Runs `sweep`. */
export async function sweepTask(args: string[]): Promise<void> {
  const f = parseSweepFlags(args);
  if (f.help) {
    console.log(SWEEP_USAGE);
    return;
  }
  const t0 = performance.now();
  // --- validate the grid and the fixed flags before any model runs ---
  const directions = parseDirections(f.directions ?? SWEEP_DEFAULTS.directions);
  const scales = parseScales(f.scales ?? SWEEP_DEFAULTS.scales);
  const schedules = parseSchedules(f.schedules ?? [SWEEP_DEFAULTS.schedules]);
  const seedsText = f.seeds ?? SWEEP_DEFAULTS.seeds;
  try {
    parseSeeds(seedsText);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (f.steps !== undefined) numberFlag("steps", f.steps, 100, { int: true, min: 1 });
  if (f.eta !== undefined) numberFlag("eta", f.eta, 0.5, { min: 0 });
  if (f.k !== undefined) numberFlag("k", f.k, 3, { int: true, min: 1 });
  if (f.splits !== undefined) numberFlag("splits", f.splits, 10, { int: true, min: 1 });
  if (f["reference-limit"] !== undefined) {
    numberFlag("reference-limit", f["reference-limit"], 0, { int: true, min: 1 });
  }
  const out = f.out ?? SWEEP_DEFAULTS.out;
  const base = weightsBaseFrom(f.weights);
  const classifiers = parseClassifiers(f.classifiers ?? await defaultModel("classifier", base));
  await checkClassifiers(classifiers, base, directions.includes("dual"), f.stats);
  const model = f.model ?? await defaultModel("denoiser", base);
  const evaluator = f.evaluator ?? await defaultModel("evaluator", base);
  const notes: string[] = [];
  const guiding = classifiers.filter((c) => classifierName(c) === classifierName(evaluator));
  if (guiding.length) {
    notes.push(
      `the evaluator ${evaluator} also guides (${guiding.join(", ")}): its target accuracy ` +
        `is not independent there (METHOD.md §6)`,
    );
    console.error(`sweep: warning: ${notes[notes.length - 1]}`);
  }
  const points = sweepPoints({ directions, scales, schedules, classifiers });
  // The fixed part of the configuration claims the folder; the lists may grow between runs.
  const fixed = {
    task: "sweep",
    model,
    evaluator,
    seeds: seedsText,
    class: f.class ?? "all",
    ...Object.fromEntries(
      [...GUIDE_PASS, ...EVALUATE_PASS]
        .filter((k) => !["provider", "threads", "weights", "batch", "cache"].includes(k))
        .map((k) => [k, (f as Record<string, unknown>)[k] ?? null]),
    ),
    // issue 13's flags: in the folder's identity only when given (older sweeps stay resumable)
    ...Object.fromEntries(
      SIZE_PASS.filter((k) => f[k] !== undefined).map((k) => [k, f[k]]),
    ),
  };
  // the models against each other before the folder is claimed (tasks/_preflight.ts)
  await preflightRefs({
    model,
    classifiers,
    classifierFlag: "--classifiers",
    evaluator,
    base,
    resize: f["input-size"] !== undefined,
    evaluatorResize: f["evaluator-input-size"] !== undefined,
  });
  await claimRunFolder(out, fixed);
  const guideFixed = [
    `--model=${model}`,
    `--seeds=${seedsText}`,
    `--evaluator=${evaluator}`,
    ...(f.class === undefined ? ["--class=all"] : []),
    ...passFlags(f, GUIDE_PASS),
    ...passFlags(f, SIZE_PASS),
  ];
  const evaluateFixed = [
    `--evaluator=${evaluator}`,
    ...passFlags(f, EVALUATE_PASS),
    ...(f["evaluator-input-size"] ? [`--input-size=${f["evaluator-input-size"]}`] : []),
    ...passFlags(f, ["labels"]),
  ];

  // --- the points still to run ---
  const todo: SweepPoint[] = [];
  for (const p of points) {
    if (!(await fileExists(`${out}/runs/${p.slug}/evaluate.json`))) todo.push(p);
  }
  console.error(
    `sweep: ${points.length} points (${directions.length} directions x ${scales.length} scales x ` +
      `${schedules.length} schedules x ${classifiers.length} classifiers), ` +
      `${points.length - todo.length} done, ${todo.length} to run -> ${out}`,
  );
  const tick = progress("sweep", todo.length, "points");
  for (const [i, p] of todo.entries()) {
    const dir = `${out}/runs/${p.slug}`;
    console.error(
      `sweep: [${i + 1}/${todo.length}] ${p.direction} s=${p.scale} ${p.schedule} ` +
        `${p.classifier} -> ${dir}`,
    );
    const guideArgs = [
      ...guideFixed,
      `--classifier=${p.classifier}`,
      `--direction=${p.direction}`,
      `--scale=${p.scale}`,
      `--schedule=${p.schedule}`,
      `--out=${dir}`,
    ];
    try {
      await runPoint(p, dir, guideArgs, evaluateFixed);
    } catch (e) {
      const msg = `sweep: point ${p.slug} failed: ${(e as Error).message}; ` +
        `finished points are kept, fix the cause and rerun to continue`;
      throw e instanceof UsageError ? new UsageError(msg) : new Error(msg, { cause: e });
    }
    tick(i + 1);
  }

  // --- collect every point of the grid (including ones finished by earlier runs) ---
  const evaluates = [];
  const rows: SweepRow[] = [];
  for (const p of points) {
    const dir = `${out}/runs/${p.slug}`;
    const run = await readJson(`${dir}/run.json`);
    const ev = await readJson(`${dir}/evaluate.json`);
    const point = await readJson(`${dir}/point.json`);
    const seconds = typeof point?.seconds?.total === "number"
      ? point.seconds.total
      : (typeof run?.seconds === "number" && typeof ev?.seconds?.total === "number"
        ? run.seconds + ev.seconds.total
        : null);
    evaluates.push(ev);
    rows.push(sweepRow(p, run, ev, seconds));
  }
  const names = metricNames(evaluates);
  const config = {
    directions,
    scales,
    schedules,
    classifiers,
    model,
    evaluator,
    seeds: seedsText,
    class: f.class ?? "all",
    guide: Object.fromEntries(passFlags(f, GUIDE_PASS).map((a) => a.slice(2).split(/=(.*)/s))),
    evaluate: Object.fromEntries(
      passFlags(f, EVALUATE_PASS).map((a) => a.slice(2).split(/=(.*)/s)),
    ),
    out,
    order: "classifiers > schedules > directions > scales",
  };
  const about = `${model} guided by ${classifiers.join(", ")}, evaluated by ${evaluator}; ` +
    `seeds ${seedsText}, class ${config.class}` +
    (f.steps ? `, ${f.steps} steps` : "") + (f.eta ? `, eta ${f.eta}` : "") +
    `; ${points.length} points.`;
  const result = {
    task: "sweep",
    config,
    metrics: names,
    rows,
    notes,
    ranNow: todo.length,
    skipped: points.length - todo.length,
    versions: { ...versions(), "onnxruntime-node": "1.30.0" },
    seconds: (performance.now() - t0) / 1000,
  };
  await writeJsonAtomic(`${out}/sweep.json`, result);
  const enc = new TextEncoder();
  await writeFileAtomic(`${out}/sweep.md`, enc.encode(sweepMarkdown(rows, names, about)));
  const svg = tradeoffSvg(rows, names, `Guidance trade-off: ${model}, seeds ${seedsText}`);
  if (svg) await writeFileAtomic(`${out}/tradeoff.svg`, enc.encode(svg));
  else console.error(`sweep: no point has both a target accuracy and an FD: no tradeoff.svg`);
  console.error(sweepMarkdown(rows, names, about));
  console.error(
    `sweep: wrote ${out}/sweep.json, sweep.md${svg ? ", tradeoff.svg" : ""} ` +
      `(${todo.length} of ${points.length} points run now, ${
        points.length - todo.length
      } skipped, ` +
      `${result.seconds.toFixed(1)}s)`,
  );
}
